"""An ``events`` table made by an earlier version (``ReplacingMergeTree``, whose merges keep
the last inserted copy of an id while reports keep the first) is moved to ``MergeTree`` at
the first start, once, without doubling a row when a start stops half-way; and on the new
engine a merge changes no report. On the real server (18.16) and on chDB."""

from __future__ import annotations

import contextlib

import pytest

from miniport.analytics import clickhouse_migrate as migrate
from miniport.analytics.clickhouse_store import ClickHouseEventStore
from miniport.analytics.event_store import StoredEvent
from tests.analytics.test_clickhouse_store import DAY, SLOTS, T0, ev, query

# the table as versions before the move made it
_OLD_EVENTS = (
    "CREATE TABLE events (appid String, uid String, event String, user_id String,"
    " ts_ms Int64, received_ms Int64, time_estimated UInt8, page Nullable(String),"
    " trigger Nullable(String), action Nullable(String), test_id Nullable(String),"
    " visible UInt8, uid_hash UInt64 MATERIALIZED cityHash64(uid), i2 Nullable(Int32),"
    " s0 Nullable(String)) ENGINE = ReplacingMergeTree"
    " PARTITION BY toYYYYMM(toDateTime(intDiv(received_ms, 1000))) ORDER BY (appid, uid)"
)
_COLUMNS = "appid, uid, event, user_id, ts_ms, received_ms, time_estimated, visible, i2, s0"
MONTH = 31 * DAY


@pytest.fixture
def fresh(one_store: ClickHouseEventStore) -> ClickHouseEventStore:
    """A store (on the real server, then on chDB) not yet set up: its database holds what the
    test puts there first."""
    one_store._t.execute(
        f"CREATE DATABASE IF NOT EXISTS {one_store._t.database}", in_database=False
    )
    return one_store


def _row(uid: str, ts: int, *, color: str = "red", visible: int = 1) -> str:
    return f"shop\t{uid}\tview\tu1\t{ts}\t{ts}\t0\t{visible}\t1\t{color}\n"


def old_database(s: ClickHouseEventStore) -> None:
    """Events in two months, one id with two copies (listed), the way an earlier version
    stored them."""
    s._t.execute(_OLD_EVENTS)
    s._t.execute(
        "CREATE TABLE event_dups (appid String, uid String,"
        " uid_hash UInt64 MATERIALIZED cityHash64(uid))"
        " ENGINE = ReplacingMergeTree ORDER BY (appid, uid)"
    )
    s._t.execute("INSERT INTO event_dups (appid, uid) FORMAT TabSeparated", b"shop\ttwice\n")
    rows = [_row(f"a{i}", T0 - MONTH) for i in range(3)] + [_row(f"b{i}", T0) for i in range(4)]
    # the two copies in two months: the old engine never merges across them (in one, it
    # could have merged them before the move)
    rows += [_row("twice", T0 - MONTH, color="first"), _row("twice", T0, color="second")]
    for row in rows:  # one part each, as inserts over time would make them
        s._t.execute(f"INSERT INTO events ({_COLUMNS}) FORMAT TabSeparated", row.encode())


def engine(s: ClickHouseEventStore, table: str) -> str | None:
    return migrate._engine(s._t, table)


def test_an_old_table_is_moved_to_merge_tree_once(fresh: ClickHouseEventStore) -> None:
    s = fresh
    old_database(s)
    assert s.count("shop") == 8  # the first use sets the store up, which moves the table
    assert engine(s, "events") == "MergeTree" and engine(s, "events_replacing") is None
    assert s._scalar("SELECT count() FROM events") == 9  # every stored copy, no marker
    assert s.event_analysis("shop", query(), SLOTS) == [{"bucket": "all", "count": 8, "users": 1}]
    assert s._keys.count() == 8  # the index was filled from the moved events
    assert migrate.keep_every_copy(s._t, contextlib.nullcontext(), lambda: None) == 0


def test_a_move_that_stopped_half_way_attaches_no_month_twice(
    fresh: ClickHouseEventStore,
) -> None:
    """Stopped after a month was attached and before it left the old table: the next start
    finds that month's marker in the new table and only drops it from the old one."""
    s = fresh
    old_database(s)
    t = s._t
    t.execute("CREATE TABLE events_merge AS events" + migrate._ENGINE)
    t.execute("RENAME TABLE events TO events_replacing, events_merge TO events")
    first = migrate._partitions(t, "events_replacing")[0]
    migrate._mark(t, first)
    t.execute(f"ALTER TABLE events ATTACH PARTITION {first} FROM events_replacing")
    assert s.count("shop") == 8
    assert engine(s, "events_replacing") is None
    assert s._scalar("SELECT count() FROM events") == 9


def test_a_merge_changes_no_report(fresh: ClickHouseEventStore) -> None:
    """Two copies of a listed id: the one received first is read. ReplacingMergeTree's merge
    kept the last inserted one, moving the event to the later copy's day."""
    s = fresh
    first = ev("x", ts=T0)
    later = StoredEvent("shop", "x", "view", "u1", T0 + DAY, T0 + DAY, False, None, None, None,
                        {2: 1}, {})
    s.append([ev("y", ts=T0)])
    s._mark_repeated([("shop", "x")])
    s._insert([first])
    s._insert([later])
    by_day = query(granularity="day", from_ms=T0 - DAY, to_ms=T0 + 2 * DAY)
    before = s.event_analysis("shop", by_day, SLOTS)
    assert [(r["bucket"], r["count"]) for r in before] == [("2026-11-01", 2)]
    s._t.execute("OPTIMIZE TABLE events FINAL")
    assert s.event_analysis("shop", by_day, SLOTS) == before
