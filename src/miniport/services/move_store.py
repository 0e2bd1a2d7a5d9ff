"""``miniport analytics move-store``: copy a DuckDB event store into ClickHouse.

Rows are read in ``(appid, uid)`` order and copied in blocks with their ``visible`` flag
(a synced test's events stay visible, an unsynced one's stay invisible). Each block first
asks ClickHouse which of its keys are already there and copies only the others (claiming
their ids in the state database's index of ids, as the servers do), so a copy
that was interrupted can simply run again: what is already there is counted as skipped,
never stored twice (and reads deduplicate per event id anyway). The forgotten users and
each user's first day go along. The run ends with the number of events per app and UTC day
on both sides."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

from ..analytics.clickhouse_store import ClickHouseEventStore
from ..analytics.event_store import DuckDBEventStore, StoredEvent
from ..analytics.reports import CORE_COLUMNS, TABLE
from ..analytics.system_props import EXTRA_COLUMNS

__all__ = ["move_store"]

Progress = Callable[[int, int], None]
"""``progress(done, total)`` after each block."""
_EPOCH = date(1970, 1, 1)
_DAY_MS = 86_400_000


def _source_rows(
    source: DuckDBEventStore, appid: str | None, block_rows: int
) -> Iterator[list[tuple[StoredEvent, bool]]]:
    slots = sorted(c for c in source.columns if c not in CORE_COLUMNS)
    where = "WHERE appid = ?" if appid is not None else ""
    sql = f"SELECT {', '.join([*CORE_COLUMNS, *slots])} FROM {TABLE} {where} ORDER BY appid, uid"
    cursor = source._cursor()  # a read cursor of its own (the store's documented reader)
    try:
        result = cursor.execute(sql, [appid] if appid is not None else [])
        while chunk := result.fetchmany(block_rows):
            yield [_row(r, slots) for r in chunk]
    finally:
        cursor.close()


def _row(r: tuple[Any, ...], slots: list[str]) -> tuple[StoredEvent, bool]:
    values = dict(zip(slots, r[len(CORE_COLUMNS) :], strict=True))
    event = StoredEvent(
        appid=r[0],
        uid=r[1],
        event=r[2],
        user=r[3],
        ts_ms=r[4],
        received_ms=r[5],
        time_estimated=bool(r[6]),
        page=r[7],
        trigger=r[8],
        action=r[9],
        ints={
            int(c[1:]): v
            for c, v in values.items()
            if c[0] == "i" and c not in EXTRA_COLUMNS and v is not None
        },
        strs={
            int(c[1:]): v
            for c, v in values.items()
            if c[0] == "s" and c not in EXTRA_COLUMNS and v is not None
        },
        test_id=r[10],
        extra={c: v for c, v in values.items() if c in EXTRA_COLUMNS and v is not None},
        floats={int(c[1:]): float(v) for c, v in values.items() if c[0] == "f" and v is not None},
        bools={int(c[1:]): bool(v) for c, v in values.items() if c[0] == "b" and v is not None},
    )
    return event, bool(r[11])


def _source_days(source: DuckDBEventStore, appid: str | None) -> dict[tuple[str, int], int]:
    where = "WHERE appid = ?" if appid is not None else ""
    sql = f"SELECT appid, ts_ms // {_DAY_MS}, count(*) FROM {TABLE} {where} GROUP BY 1, 2"
    rows = source._query(sql, [appid] if appid is not None else [])
    return {(str(a), int(str(d))): int(str(n)) for a, d, n in rows}


def compare_days(
    source: DuckDBEventStore, target: ClickHouseEventStore, appid: str | None
) -> list[dict[str, Any]]:
    """``[{"appid", "days": [{"day", "source", "target"}]}]`` sorted by app and day."""
    left, right = _source_days(source, appid), target.counts_by_day(appid)
    apps: dict[str, list[dict[str, Any]]] = {}
    for app, day in sorted(set(left) | set(right)):
        apps.setdefault(app, []).append(
            {
                "day": (_EPOCH + timedelta(days=day)).isoformat(),
                "source": left.get((app, day), 0),
                "target": right.get((app, day), 0),
            }
        )
    return [{"appid": app, "days": days} for app, days in apps.items()]


def move_store(
    source: DuckDBEventStore,
    target: ClickHouseEventStore,
    *,
    appid: str | None = None,
    block_rows: int = 20_000,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Copy ``source``'s events (one app's with ``appid``) into ``target``; returns
    ``{"copied", "skipped", "apps": [{"appid", "days": [{"day", "source", "target"}]}]}``."""
    total = source.count(appid, include_tests=True) if appid is not None else _total(source)
    _copy_forgotten(source, target, appid)  # first: what the nodes store meanwhile is checked
    copied = skipped = 0
    for block in _source_rows(source, appid, block_rows):
        result = target.copy_in(block)
        copied += result.inserted
        skipped += result.duplicates
        if progress is not None:
            progress(copied + skipped, total)
    _copy_first_seen(source, target, appid)
    return {"copied": copied, "skipped": skipped, "apps": compare_days(source, target, appid)}


def _total(source: DuckDBEventStore) -> int:
    rows = source._query(f"SELECT count(*) FROM {TABLE}", [])
    return int(str(rows[0][0])) if rows else 0


def _copy_forgotten(
    source: DuckDBEventStore, target: ClickHouseEventStore, appid: str | None
) -> None:
    """The forgotten users go along (their earlier events, sent again by a device after the
    move, stay out of ClickHouse as they stayed out of DuckDB)."""
    where = "WHERE appid = ?" if appid is not None else ""
    rows = source._query(
        f"SELECT appid, user_id, forgotten_ms FROM forgotten {where}",
        [appid] if appid is not None else [],
    )
    target.remember_forgotten((str(a), str(u), int(str(t))) for a, u, t in rows)


def _copy_first_seen(
    source: DuckDBEventStore, target: ClickHouseEventStore, appid: str | None
) -> None:
    """Each user's first day ($new_user) goes along; a day already in the target stays."""
    where = "WHERE appid = ?" if appid is not None else ""
    rows = source._query(
        f"SELECT appid, user_id, first_day FROM first_seen {where}",
        [appid] if appid is not None else [],
    )
    by_app: dict[str, dict[str, int]] = {}
    for app, user, day in rows:
        by_app.setdefault(str(app), {})[str(user)] = int(str(day))
    for app, days in by_app.items():
        target.first_days(app, days)
