"""ClickHouse event store against the real server (18.16 in CI): retention, forgetting a
user, two stores (two nodes) writing the same events at once, slot columns added by
another node, and appends combined into one insert."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from miniport.analytics.clickhouse_store import ClickHouseEventStore
from miniport.analytics.event_store import AppendResult, EventStore, StoredEvent
from miniport.analytics.reports import EventQuery, FieldSlots

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
DAY = 86_400_000
SLOTS: FieldSlots = {"price": ("int", 2), "color": ("string", 0), "late": ("string", 9)}


def ev(uid: str, *, ts: int = T0, user: str = "u1", **strs: str) -> StoredEvent:
    slots = {0: strs["color"]} if "color" in strs else {}
    if "late" in strs:
        slots[9] = strs["late"]
    return StoredEvent("shop", uid, "view", user, ts, ts, False, None, None, None, {2: 1}, slots)


def query(**kw: object) -> EventQuery:
    base: dict[str, object] = {
        "event": "view",
        "from_ms": T0 - 40 * DAY,
        "to_ms": T0 + DAY,
        "not_before_ms": 0,
        "metrics": ["count", "users"],
        "granularity": "all",
    }
    base.update(kw)
    return EventQuery.parse(**base)  # type: ignore[arg-type]


@pytest.fixture
def stores(clickhouse_url: str) -> Iterator[tuple[ClickHouseEventStore, ClickHouseEventStore]]:
    a, b = (
        ClickHouseEventStore.from_url(clickhouse_url),
        ClickHouseEventStore.from_url(clickhouse_url),
    )
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_is_an_event_store(stores: tuple[ClickHouseEventStore, ClickHouseEventStore]) -> None:
    assert isinstance(stores[0], EventStore)


def test_retention_and_forgetting_a_user(
    stores: tuple[ClickHouseEventStore, ClickHouseEventStore],
) -> None:
    s, _ = stores
    s.append([ev("old", ts=T0 - 35 * DAY), ev("mid", ts=T0 - 2 * DAY), ev("new")])
    s.append([ev("bob1", user="bob"), ev("bob2", user="bob", ts=T0 - DAY)])
    assert s.delete_older_than(T0 - 30 * DAY) == 1
    assert s.count("shop") == 4
    assert s.event_analysis("shop", query(), SLOTS) == [{"bucket": "all", "count": 4, "users": 2}]
    assert s.forget_user("shop", "bob") == 2
    assert s.event_analysis("shop", query(), SLOTS) == [{"bucket": "all", "count": 2, "users": 1}]
    assert s.forget_user("shop", "bob") == 0
    assert s.delete_older_than(0) == 0


def test_two_nodes_writing_the_same_events_at_once_count_once(
    stores: tuple[ClickHouseEventStore, ClickHouseEventStore],
) -> None:
    barrier = threading.Barrier(8)
    results: list[AppendResult] = []

    def send(store: ClickHouseEventStore, k: int) -> None:
        batch = [ev(f"e{(k * 17 + i) % 120}", user=f"u{i % 4}") for i in range(60)]
        barrier.wait()
        results.append(store.append(batch))

    threads = [threading.Thread(target=send, args=(stores[k % 2], k // 2)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = {f"e{(k * 17 + i) % 120}" for k in range(4) for i in range(60)}
    for s in stores:
        assert s.count("shop") == len(expected)
        assert s.event_analysis("shop", query(), SLOTS) == [
            {"bucket": "all", "count": len(expected), "users": 4}
        ]
    # each call answered for its own rows; racing nodes may both say "inserted"
    assert all(r.inserted + r.duplicates == 60 for r in results)
    assert sum(r.inserted for r in results) >= len(expected)


def test_a_column_added_by_another_node_is_read(
    stores: tuple[ClickHouseEventStore, ClickHouseEventStore],
) -> None:
    a, b = stores
    a.append([ev("1", color="red")])
    assert "s9" not in b.columns  # b has looked at the table before a adds s9
    a.append([ev("2", late="x")])
    assert "s9" not in b.columns
    assert b.event_analysis("shop", query(group_by=["late"]), SLOTS) == [
        {"bucket": "all", "late": None, "count": 1, "users": 1},
        {"bucket": "all", "late": "x", "count": 1, "users": 1},
    ]
    assert "s9" in b.columns


def test_concurrent_appends_share_inserts(
    stores: tuple[ClickHouseEventStore, ClickHouseEventStore],
) -> None:
    s, _ = stores
    inserts: list[int] = []
    real = s._insert

    def counting(rows: object, visible: object = None) -> None:
        inserts.append(1)
        real(rows, visible)  # type: ignore[arg-type]

    s._insert = counting  # type: ignore[method-assign]
    barrier = threading.Barrier(12)

    def send(k: int) -> None:
        barrier.wait()
        s.append([ev(f"c{k}-{i}") for i in range(20)])

    threads = [threading.Thread(target=send, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.count("shop") == 240
    assert len(inserts) < 12  # calls that arrived during an insert went out together


def test_an_insert_that_raced_another_node_is_listed_before_it_is_acknowledged(
    stores: tuple[ClickHouseEventStore, ClickHouseEventStore],
) -> None:
    """Node a checked its keys before node b's insert of the same events landed (the race
    that a check before inserting cannot close): a's insert stores second copies, and a
    lists the ids as repeated before returning, so every report counts them once."""
    a, b = stores
    batch = [ev(f"r{i}", user=f"u{i % 3}", color="red") for i in range(6)]
    assert b.append(batch) == AppendResult(6, 0)
    looked_up = a._existing

    def checked_before_b_inserted(
        keys: object, *, repeated: bool = False
    ) -> set[tuple[str, str]]:
        return looked_up(keys, repeated=True) if repeated else set()  # type: ignore[arg-type]

    a._existing = checked_before_b_inserted  # type: ignore[method-assign]
    assert a.append(batch) == AppendResult(6, 0)  # both nodes say "inserted"
    assert a._scalar("SELECT count() FROM events WHERE appid = 'shop'") == 12
    assert a._scalar("SELECT count() FROM event_dups WHERE appid = 'shop'") == 6
    for s in stores:
        assert s.count("shop") == 6
        assert s.event_analysis("shop", query(group_by=["color"]), SLOTS) == [
            {"bucket": "all", "color": "red", "count": 6, "users": 3}
        ]


def test_ids_stored_once_are_not_listed(
    stores: tuple[ClickHouseEventStore, ClickHouseEventStore],
) -> None:
    a, b = stores
    a.append([ev("x1"), ev("x2")])
    assert b.append([ev("x2"), ev("x3")]) == AppendResult(1, 1)  # a retry to another node
    assert a._scalar("SELECT count() FROM events WHERE appid = 'shop'") == 3
    assert a._scalar("SELECT count() FROM event_dups WHERE appid = 'shop'") == 0
    assert a.count("shop") == 3


def test_a_database_made_before_the_id_hash_column_gains_it(clickhouse_url: str) -> None:
    old = ClickHouseEventStore.from_url(clickhouse_url)
    try:
        old._t.execute(f"CREATE DATABASE IF NOT EXISTS {old._t.database}", in_database=False)
        old._t.execute(
            "CREATE TABLE events (appid String, uid String, event String, user_id String,"
            " ts_ms Int64, received_ms Int64, time_estimated UInt8, page Nullable(String),"
            " trigger Nullable(String), action Nullable(String), test_id Nullable(String),"
            " visible UInt8) ENGINE = ReplacingMergeTree ORDER BY (appid, uid)"
        )
        old._t.execute(
            "CREATE TABLE event_dups (appid String, uid String)"
            " ENGINE = ReplacingMergeTree ORDER BY (appid, uid)"
        )
        old._t.execute(
            "INSERT INTO events VALUES ('shop', 'e0', 'view', 'u1', "
            f"{T0}, {T0}, 0, NULL, NULL, NULL, NULL, 1)"
        )
    finally:
        old.close()
    with ClickHouseEventStore.from_url(clickhouse_url) as store:
        store.append([ev("e1"), ev("e0")])
        assert store.count("shop") == 2
        assert store.event_analysis("shop", query(), SLOTS) == [
            {"bucket": "all", "count": 2, "users": 1}
        ]


AWKWARD_IDS = ["plain", "tab\there", "new\nline", "back\\slash", "quote'\"", "\r\0", "é✓", " "]


@pytest.mark.parametrize("kind", ["server", "chdb"])
def test_dedup_checks_read_awkward_ids_and_several_apps_exactly(
    kind: str, clickhouse_url: str, tmp_path: Path
) -> None:
    """The dedup checks send the keys as external data (TabSeparated): ids with characters
    TSV escapes, and the same id in two apps, are found exactly, on the server and on
    chDB (a temporary table of the session there)."""
    store = (
        ClickHouseEventStore.from_url(clickhouse_url)
        if kind == "server"
        else ClickHouseEventStore.in_process(str(tmp_path / "chdb"))
    )
    with store:
        rows = [
            StoredEvent(app, uid, "view", "u1", T0, T0, False, None, None, None, {}, {})
            for app in ("shop", "shop2")
            for uid in AWKWARD_IDS
        ]
        n = len(rows)
        assert store.append(rows[: n // 2]) == AppendResult(n // 2, 0)
        assert store.append(rows) == AppendResult(n - n // 2, n // 2)
        assert store.append(list(reversed(rows))) == AppendResult(0, n)
        keys = {(r.appid, r.uid) for r in rows}
        assert store._existing(keys) == keys
        assert store._existing(keys, repeated=True) == set()
        store._insert(rows[:3])  # second copies, as a racing node leaves them
        assert store._existing(keys, repeated=True) == {(r.appid, r.uid) for r in rows[:3]}
        assert store._existing({("shop", "absent"), ("shop3", "plain")}) == set()
        store._list_repeated((r.appid, r.uid) for r in rows[:3])
        assert store.count("shop") == store.count("shop2") == len(AWKWARD_IDS)


@pytest.mark.parametrize("kind", ["server", "chdb"])
def test_calls_queued_during_a_write_are_looked_up_with_its_check_after_inserting(
    kind: str, clickhouse_url: str, tmp_path: Path
) -> None:
    """A batch queued while another is being inserted is looked up in the same query as
    the check after that insert (no lookup of its own before its insert): an id of both
    batches counts once, and an id another node inserts between that lookup and this
    node's insert is still listed before the batch is acknowledged."""
    a = (
        ClickHouseEventStore.from_url(clickhouse_url)
        if kind == "server"
        else ClickHouseEventStore.in_process(str(tmp_path / "chdb"))
    )
    b = (
        ClickHouseEventStore(a._t)
        if kind == "chdb"
        else ClickHouseEventStore.from_url(clickhouse_url)
    )
    lookups: list[tuple[int, bool]] = []
    looked_up, inserted = a._existing, a._insert
    queued: list[object] = []

    def existing(keys: object, *, repeated: bool = False) -> set[tuple[str, str]]:
        keys = list(keys)  # type: ignore[call-overload]
        lookups.append((len(keys), repeated))
        return looked_up(keys, repeated=repeated)

    def insert(rows: list[StoredEvent], visible: object = None) -> None:
        if not queued:  # the first batch is being inserted: the second one queues up
            queued.append(a.submit([ev("x2"), ev("x3")]))
        else:  # the second one: another node inserts x3 first
            assert b.append([ev("x3")]) == AppendResult(1, 0)
        inserted(rows, visible)  # type: ignore[arg-type]

    a._existing = existing  # type: ignore[method-assign]
    a._insert = insert  # type: ignore[method-assign]
    try:
        assert a.submit([ev("x1"), ev("x2")]).result(timeout=30) == AppendResult(2, 0)
        second = queued[0]
        assert second.result(timeout=30) == AppendResult(1, 1)  # type: ignore[attr-defined]
        # one lookup before the first insert, none before the second (done with the first
        # insert's check after), one check after the second
        assert lookups == [(2, False), (1, True)]
        assert a._scalar("SELECT count() FROM events WHERE appid = 'shop'") == 4
        assert a._scalar("SELECT count() FROM event_dups WHERE appid = 'shop'") == 1
        for s in (a, b):
            assert s.count("shop") == 3
    finally:
        a.close()
        if kind == "server":
            b.close()
