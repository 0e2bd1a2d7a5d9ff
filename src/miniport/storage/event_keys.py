"""The index of event ids stored in ClickHouse, kept in the state database (table
``event_keys``): the point lookup that the ClickHouse event store claims ids in before it
inserts them, so that only an id met before is looked up in ClickHouse (see
:mod:`miniport.analytics.clickhouse_store`).

A row is a 64-bit hash of ``(appid, uid)`` (:func:`key_hash`), not the id itself: 16 bytes a
row plus the primary key's entry, whatever the ids look like. Two ids with one hash are safe:
the second one finds its hash claimed and is looked up exactly in ClickHouse, which costs a
lookup and nothing else (at 10^8 stored ids the chance of any such pair is ~3 in 10,000).

One claim is one statement in its own transaction (committed before the rows go to
ClickHouse): ``INSERT ... ON CONFLICT DO NOTHING RETURNING key`` over the batch's keys, sorted
so that two nodes claiming overlapping batches on PostgreSQL take the row locks in one order
(no deadlock). PostgreSQL gets the keys as two arrays (``unnest``), SQLite as one JSON text
(``json_each``): a statement whatever the batch size."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Iterable, Iterator
from typing import Final

from sqlalchemy import Connection, Engine, delete, insert, select, text
from sqlalchemy.exc import InterfaceError, OperationalError

from ..errors import AnalyticsUnavailable
from . import migrate
from . import schema as t
from .db import make_engine

__all__ = ["EventKeyIndex", "key_hash"]

_TOKEN_KEY: Final = "event_keys.token"
_PG_CLAIM: Final = text(
    "INSERT INTO event_keys (key, ts_ms)"
    " SELECT * FROM unnest(CAST(:keys AS bigint[]), CAST(:ts AS bigint[]))"
    " ON CONFLICT DO NOTHING RETURNING key"
)
_SQLITE_CLAIM: Final = text(
    "INSERT INTO event_keys (key, ts_ms)"
    " SELECT value ->> 0, value ->> 1 FROM json_each(:pairs) WHERE true"
    " ON CONFLICT DO NOTHING RETURNING key"
)


@contextlib.contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except (OperationalError, InterfaceError) as exc:  # not reached, locked, dropped
        raise AnalyticsUnavailable(
            "the state database (which holds the index of stored event ids) cannot be"
            " reached: nothing was stored, send it again"
        ) from exc


def key_hash(appid: str, uid: str) -> int:
    """The signed 64-bit key of an event id (the app's and the client's id, NUL-separated:
    an app id holds no NUL, so no two pairs give one text)."""
    digest = hashlib.blake2b(f"{appid}\0{uid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class EventKeyIndex:
    """The ``event_keys`` table of one state database. Thread-safe (an engine's pool)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"

    @classmethod
    def open(cls, url: str) -> EventKeyIndex:
        """On the state database at ``url``, migrated to the newest schema first (as every
        process does on start)."""
        engine = make_engine(url)
        with _reachable():
            migrate.upgrade(engine)
        return cls(engine)

    def _begin(self) -> Connection:
        conn = self._engine.connect()
        if self._sqlite:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        return conn

    def claim(self, keys: Iterable[tuple[int, int]]) -> set[int]:
        """Record ``(key, ts_ms)`` pairs; returns the keys that were not recorded before (this
        call claimed them). Raises AnalyticsUnavailable when the database cannot be reached."""
        pairs = sorted(dict(keys).items())
        if not pairs:
            return set()
        if self._sqlite:
            params: dict[str, object] = {"pairs": json.dumps(pairs)}
            statement = _SQLITE_CLAIM
        else:
            params = {"keys": [k for k, _ in pairs], "ts": [ts for _, ts in pairs]}
            statement = _PG_CLAIM
        with _reachable(), self._begin() as conn, conn.begin():
            return {int(row[0]) for row in conn.execute(statement, params)}

    def add(self, keys: Iterable[tuple[int, int]]) -> None:
        """Record ``(key, ts_ms)`` pairs, whether or not they were (filling the index)."""
        self.claim(keys)

    def delete_older_than(self, cutoff_ms: int) -> int:
        """Drop the keys of events older than ``cutoff_ms`` (retention deleted them)."""
        with _reachable(), self._begin() as conn, conn.begin():
            rowcount: int = conn.execute(
                delete(t.event_keys).where(t.event_keys.c.ts_ms < cutoff_ms)
            ).rowcount
            return rowcount

    def token(self) -> str:
        """This index's random name, made on first use: a ClickHouse database records the
        names of the indexes filled from its events (a new or lost index is filled again)."""
        with _reachable(), self._begin() as conn, conn.begin():
            found = conn.execute(select(t.kv.c.value).where(t.kv.c.key == _TOKEN_KEY)).scalar()
            if found is not None:
                return str(found)
            token = secrets.token_hex(16)
            conn.execute(insert(t.kv).values(key=_TOKEN_KEY, value=token))
            return token

    def count(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM event_keys")).scalar_one())

    def close(self) -> None:
        self._engine.dispose()
