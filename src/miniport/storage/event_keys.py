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
import threading
from collections.abc import Collection, Iterable, Iterator
from typing import Final

from sqlalchemy import Connection, Engine, delete, select, text
from sqlalchemy.exc import InterfaceError, OperationalError

from ..errors import AnalyticsUnavailable
from . import migrate
from . import schema as t
from .db import dialect_insert, make_engine

__all__ = ["EventKeyIndex", "key_hash"]

_TOKEN_KEY: Final = "event_keys.token"
_LOCK_KEY: Final = 0x6D706B65  # "mpke": the advisory lock of ``exclusive``
# arrays as text ('{1,2}'): built by one join, where psycopg's list dumper cost ~2 % of a
# node's CPU in bench/clickhouse_ingest.py
_PG_INSERT: Final = (
    "INSERT INTO event_keys (key, ts_ms)"
    " SELECT * FROM unnest(CAST(:keys AS bigint[]), CAST(:ts AS bigint[]))"
    " ON CONFLICT DO NOTHING"
)
_SQLITE_INSERT: Final = (
    "INSERT INTO event_keys (key, ts_ms)"
    " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')"
    " FROM json_each(:pairs) WHERE true"
    " ON CONFLICT DO NOTHING"
)
_RETURNING: Final = " RETURNING key"


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
    """The ``event_keys`` table of one state database. Thread-safe: its calls take turns on
    one connection of its own, held between calls (a pool checkout with its ping before each
    claim cost ~8 % of a node's CPU and a round trip); a connection that fails is dropped, and
    a claim whose connection had died is sent once more on a new one."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        insert_sql = _SQLITE_INSERT if self._sqlite else _PG_INSERT
        self._insert, self._claim = text(insert_sql), text(insert_sql + _RETURNING)

    @classmethod
    def open(cls, url: str) -> EventKeyIndex:
        """On the state database at ``url``, migrated to the newest schema first (as every
        process does on start)."""
        engine = make_engine(url)
        with _reachable():
            migrate.upgrade(engine)
        return cls(engine)

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A transaction on the held connection (under the lock); raises AnalyticsUnavailable
        when the database cannot be reached."""
        with self._lock, _reachable():
            conn = self._conn
            if conn is None or conn.closed or conn.invalidated:
                conn = self._engine.connect()
                if self._sqlite:
                    conn = conn.execution_options(sqlite_begin="IMMEDIATE")
                self._conn = conn
            try:
                with conn.begin():
                    yield conn
            except (OperationalError, InterfaceError):
                self._conn = None
                with contextlib.suppress(Exception):
                    conn.close()
                raise

    def _params(self, keys: Iterable[tuple[int, int]]) -> dict[str, str] | None:
        latest: dict[int, int] = {}
        for key, ts in keys:  # a key given twice keeps its latest time: never dropped early
            if ts > latest.get(key, ts - 1):
                latest[key] = ts
        pairs = sorted(latest.items())
        if not pairs:
            return None
        if self._sqlite:
            return {"pairs": json.dumps(pairs)}
        return {
            "keys": "{" + ",".join(str(k) for k, _ in pairs) + "}",
            "ts": "{" + ",".join(str(ts) for _, ts in pairs) + "}",
        }

    def claim(self, keys: Iterable[tuple[int, int]]) -> set[int]:
        """Record ``(key, ts_ms)`` pairs; returns the keys that were not recorded before (this
        call claimed them). Raises AnalyticsUnavailable when the database cannot be reached.
        (Sent again after a dead connection, a claim that had committed returns nothing: the
        caller then looks those ids up, which is exact, only slower.)"""
        params = self._params(keys)
        if params is None:
            return set()
        for attempt in (1, 2):
            try:
                with self._begin() as conn:
                    return {int(row[0]) for row in conn.execute(self._claim, params)}
            except AnalyticsUnavailable as exc:
                cause = exc.__cause__
                if attempt == 2 or not getattr(cause, "connection_invalidated", False):
                    raise
        raise AssertionError("unreachable")

    def add(self, keys: Iterable[tuple[int, int]]) -> None:
        """Record ``(key, ts_ms)`` pairs, whether or not they were (filling the index)."""
        params = self._params(keys)
        if params is not None:
            with self._begin() as conn:
                conn.execute(self._insert, params)

    def release(self, keys: Collection[int]) -> None:
        """Forget keys that this node claimed and certainly did not insert (ClickHouse was
        never reached): the client's retry then claims them again as new, with no lookup
        and nothing listed. Only the claimer may release a key (see ``clickhouse_store``)."""
        ordered = sorted(keys)
        if not ordered:
            return
        with self._begin() as conn:
            for start in range(0, len(ordered), 5000):  # SQLite allows 32,766 parameters
                chunk = ordered[start : start + 5000]
                conn.execute(delete(t.event_keys).where(t.event_keys.c.key.in_(chunk)))

    def delete_older_than(self, cutoff_ms: int) -> int:
        """Drop the keys of events older than ``cutoff_ms`` (retention deleted them). On a
        connection of its own, not the claims' one: the delete reads the whole table (no
        index on ``ts_ms``, which every claim would have to write), and claims must not wait
        for it (on PostgreSQL they do not; SQLite takes its write lock for the delete)."""
        with _reachable(), self._engine.connect() as conn:
            if self._sqlite:
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                rowcount: int = conn.execute(
                    delete(t.event_keys).where(t.event_keys.c.ts_ms < cutoff_ms)
                ).rowcount
                return rowcount

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """A lock that the nodes sharing this state database hold one at a time (a one-time
        change to the ClickHouse database they share): a PostgreSQL advisory lock held by a
        transaction, SQLite's write lock (nothing else may write the index meanwhile)."""
        with _reachable(), self._engine.connect() as conn:
            if self._sqlite:
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                if not self._sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
                yield

    def token(self) -> str:
        """This index's random name, made on first use: a ClickHouse database records the
        names of the indexes filled from its events (a new or lost index is filled again)."""
        query = select(t.kv.c.value).where(t.kv.c.key == _TOKEN_KEY)
        with self._begin() as conn:
            found = conn.execute(query).scalar()
            if found is not None:
                return str(found)
            # two nodes making it at once: one row wins, both read it back
            made = dialect_insert(self._sqlite)(t.kv).values(
                key=_TOKEN_KEY, value=secrets.token_hex(16)
            )
            conn.execute(made.on_conflict_do_nothing(index_elements=["key"]))
            return str(conn.execute(query).scalar_one())

    def count(self) -> int:
        with self._begin() as conn:
            return int(conn.execute(text("SELECT count(*) FROM event_keys")).scalar_one())

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
        self._engine.dispose()
