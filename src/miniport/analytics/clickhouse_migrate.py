"""Moving an ``events`` table made by an earlier version to the engine that keeps every copy.

Earlier versions made ``events`` a ``ReplacingMergeTree``: a merge keeps the LAST inserted
copy of an id, while reports keep a visible copy before an invisible one, then the copy
received first (what DuckDB keeps). So a merge could change a report: a synced test event
whose stalled claimer's invisible copy landed last dropped out of visible reports, an event
whose time was estimated moved to the day of its later copy. ``MergeTree`` never drops a
copy (only listed ids have more than one, so the space is the same), and reports pick one.

The move is done once, at the start of the first node of this version (under a lock that
the nodes sharing the state database take in turn), and costs no copy of the data:

1. a ``MergeTree`` table of the same columns is made, and swapped in by one ``RENAME``: from
   then on inserts go to the new table (an insert running meanwhile ends in the old one);
2. the old table (``events_replacing``) is moved over a partition (month) at a time with
   ``ATTACH PARTITION ... FROM`` (hard links), then the partition is dropped from it;
3. the old table is dropped.

A node that dies in step 2 must not attach a partition twice (its ids would count twice): a
marker row (app id ``\\0migration``, which no app holds, so no report reads it) goes into the
old table's partition before it is attached, and travels with it; a partition whose marker
is already in the new table was attached, and is only dropped. The markers are deleted at
the end. Reports read the new table only: one made while the move runs (seconds, as no data
is copied; the other nodes of this version wait for the lock before they serve) misses the
months not moved yet."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from .clickhouse_transport import Transport
from .sql_dialects import clickhouse_literal

__all__ = ["MARKER_APPID", "keep_every_copy"]

MARKER_APPID: Final = "\x00migration"
_OLD: Final = "events_replacing"
_NEW: Final = "events_merge"
_ENGINE: Final = (
    " ENGINE = MergeTree PARTITION BY toYYYYMM(toDateTime(intDiv(received_ms, 1000)))"
    " ORDER BY (appid, uid)"
)


def _rows(t: Transport, sql: str) -> list[list[object]]:
    data: list[list[object]] = json.loads(t.execute(sql + " FORMAT JSONCompact"))["data"]
    return data


def _in_database(t: Transport, table: str, column: str = "table") -> str:
    """The condition on a system table's rows of ``table`` in the store's database."""
    db, name = clickhouse_literal(t.database, "String"), clickhouse_literal(table, "String")
    return f"database = {db} AND {column} = {name}"


def _engine(t: Transport, table: str) -> str | None:
    rows = _rows(t, f"SELECT engine FROM system.tables WHERE {_in_database(t, table, 'name')}")
    return str(rows[0][0]) if rows else None


def _columns(t: Transport, table: str) -> dict[str, str]:
    rows = _rows(
        t,
        f"SELECT name, type FROM system.columns WHERE {_in_database(t, table)}"
        " AND default_kind = ''",
    )
    return {str(name): str(kind) for name, kind in rows}


def _partitions(t: Transport, table: str) -> list[str]:
    rows = _rows(
        t,
        f"SELECT DISTINCT partition FROM system.parts WHERE {_in_database(t, table)}"
        " AND active ORDER BY partition",
    )
    return [str(r[0]) for r in rows]


def _has_marker(t: Transport, table: str, partition: str) -> bool:
    uid = clickhouse_literal(partition, "String")
    marker = clickhouse_literal(MARKER_APPID, "String")
    return bool(_rows(t, f"SELECT 1 FROM {table} WHERE appid = {marker} AND uid = {uid} LIMIT 1"))


def _mark(t: Transport, partition: str) -> None:
    """A marker row in the old table's ``partition`` (month YYYYMM of ``received_ms`` in the
    server's time zone: the 15th at noon UTC is in that month in every zone)."""
    year, month = int(partition[:4]), int(partition[4:])
    ms = int(datetime(year, month, 15, 12, tzinfo=UTC).timestamp() * 1000)
    line = "\t".join(("\\0migration", partition, "", "", str(ms), str(ms), "0", "0")) + "\n"
    t.execute(
        f"INSERT INTO {_OLD} (appid, uid, event, user_id, ts_ms, received_ms, time_estimated,"
        " visible) FORMAT TabSeparated",
        line.encode(),
    )


def _align(t: Transport) -> None:
    """The same columns on both sides (ATTACH PARTITION FROM wants one structure): a slot
    column added to either table meanwhile is added to the other (metadata only)."""
    old, new = _columns(t, _OLD), _columns(t, "events")
    for name, kind in new.items():
        if name not in old:
            t.execute(f"ALTER TABLE {_OLD} ADD COLUMN {name} {kind}")
    for name, kind in old.items():
        if name not in new:
            t.execute(f"ALTER TABLE events ADD COLUMN {name} {kind}")


def keep_every_copy(
    t: Transport,
    exclusive: contextlib.AbstractContextManager[None],
    wait_for_mutations: Callable[[], None],
) -> int:
    """Move a ``ReplacingMergeTree`` ``events`` table (or the rest of a move that stopped) to
    ``MergeTree``, under ``exclusive``; returns how many partitions were moved."""
    with exclusive:
        if _engine(t, "events") == "ReplacingMergeTree":
            t.execute(f"DROP TABLE IF EXISTS {_NEW}")  # a start that stopped before the swap
            t.execute(f"CREATE TABLE {_NEW} AS events" + _ENGINE)
            t.execute(f"RENAME TABLE events TO {_OLD}, {_NEW} TO events")
        moved = 0
        if _engine(t, _OLD) is not None:
            for partition in _partitions(t, _OLD):
                if not partition.isdigit() or len(partition) != 6:
                    raise RuntimeError(f"unexpected partition {partition!r} in {_OLD}")
                if not _has_marker(t, "events", partition):
                    if not _has_marker(t, _OLD, partition):
                        _mark(t, partition)
                    _align(t)
                    t.execute(f"ALTER TABLE events ATTACH PARTITION {partition} FROM {_OLD}")
                t.execute(f"ALTER TABLE {_OLD} DROP PARTITION {partition}")
                moved += 1
            t.execute(f"DROP TABLE {_OLD}")
        marker = clickhouse_literal(MARKER_APPID, "String")
        if _rows(t, f"SELECT 1 FROM events WHERE appid = {marker} LIMIT 1"):
            t.execute(f"ALTER TABLE events DELETE WHERE appid = {marker}")
            wait_for_mutations()
        return moved
