"""Forgetting a user holds whatever was on its way when it ran, on every event store (DuckDB,
a ClickHouse server, chDB): the user's events queued on a node for its next write, in an
insert in flight on this node or another, or sent again by a device after the forget (a
batch whose answer was lost, a queue kept offline), even across a restart, are never
stored; the user's events from after the forget are, and other users are untouched."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from miniport.analytics.clickhouse_store import SWEEP_MARGIN_MS, ClickHouseEventStore
from miniport.analytics.event_store import (
    FORGOTTEN_KEPT_MS,
    AppendResult,
    DuckDBEventStore,
    EventStore,
    StoredEvent,
    now_ms,
)
from miniport.analytics.reports import EventQuery
from tests.conftest import event_keys_at
from tests.support.clickhouse import record_deletes_and_waits, waited_after_the_last_delete

KINDS = ["duckdb", "clickhouse", "chdb"]
T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
AT = T0 + 60_000  # the forget
DAY = 86_400_000

Opener = Callable[[], EventStore]


def ev(uid: str, user: str = "bob", ts: int = T0, received: int | None = None) -> StoredEvent:
    received = ts if received is None else received
    return StoredEvent("shop", uid, "view", user, ts, received, False, None, None, None, {}, {})


@pytest.fixture(params=KINDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the store of one node, again after a restart (same files, same database)."""
    kind = request.param
    if kind == "duckdb":
        return lambda: DuckDBEventStore(tmp_path / "analytics.duckdb", threads=1)
    if kind == "chdb":
        return lambda: ClickHouseEventStore.in_process(str(tmp_path / "chdb"))
    url = request.getfixturevalue("clickhouse_url")
    return lambda: ClickHouseEventStore.from_url(url, event_keys_at(tmp_path / "k.db"))


@pytest.fixture
def store(opener: Opener) -> Iterator[EventStore]:
    s = opener()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def nodes(clickhouse_url: str, tmp_path: Path) -> Iterator[list[ClickHouseEventStore]]:
    """Two nodes on one ClickHouse database and one index of ids."""
    both = [
        ClickHouseEventStore.from_url(clickhouse_url, event_keys_at(tmp_path / "keys.db"))
        for _ in range(2)
    ]
    try:
        yield both
    finally:
        for s in both:
            s.close()


def uids(store: EventStore, user: str) -> list[str]:
    """The user's stored events (with ClickHouse, once its deletes are done)."""
    if isinstance(store, ClickHouseEventStore):
        store._wait_for_mutations()
    page = store.user_events("shop", user, {}, limit=100, before=None, not_before_ms=0)
    return sorted(str(e["id"]) for e in page.events)


def users(store: EventStore) -> int:
    query = EventQuery.parse(
        event="view",
        from_ms=T0 - DAY,
        to_ms=T0 + DAY,
        not_before_ms=0,
        metrics=["count", "users"],
        granularity="all",
    )
    (row,) = store.event_analysis("shop", query, {})
    assert row["count"] == store.count("shop")
    return int(str(row["users"]))


def held(store: EventStore) -> threading.Event:
    """Hold the store's writes: what is submitted stays queued until the event is set."""
    commit = store._group_commit  # type: ignore[attr-defined]
    lead, gate = commit._lead, threading.Event()

    def waiting() -> None:
        gate.wait(30)
        lead()

    commit._lead = waiting
    return gate


def test_events_queued_on_the_node_when_the_user_is_forgotten_are_never_stored(
    store: EventStore,
) -> None:
    store.append([ev("b0"), ev("a0", user="ann")])
    gate = held(store)
    queued = store.submit([ev("b1"), ev("b2", ts=AT + 5, received=AT - 5), ev("a1", user="ann")])
    assert store.forget_user("shop", "bob", AT) == 1
    gate.set()
    # bob's rows are not stored (counted with the duplicates: not stored, nothing to resend)
    assert queued.result(30) == AppendResult(1, 2)
    assert uids(store, "bob") == []
    assert uids(store, "ann") == ["a0", "a1"]
    assert users(store) == 1


def test_events_from_before_the_forget_sent_again_after_a_restart_are_never_stored(
    opener: Opener,
) -> None:
    store = opener()
    try:
        assert store.append([ev("b1"), ev("a1", user="ann")]) == AppendResult(2, 0)
        assert store.forget_user("shop", "bob", AT) == 1
    finally:
        store.close()
    store = opener()  # the node restarts: it still knows bob was forgotten
    try:
        again = [
            ev("b1"),  # a retry of a batch whose answer was lost
            ev("b2", ts=AT, received=AT + 9_000),  # a device's offline queue, sent later
            ev("b3", ts=AT + 1, received=AT),  # received by the forget, time after it
        ]
        assert store.append(again) == AppendResult(0, 3)
        assert (store.forgotten_at("shop", "bob"), store.forgotten_at("shop", "ann")) == (AT, None)
        # the device went on using the app: events after the forget are new, and kept
        assert store.append([ev("b4", ts=AT + 1, received=AT + 2)]) == AppendResult(1, 0)
        assert store.append([ev("a2", user="ann", ts=T0 - 5)]) == AppendResult(1, 0)
        assert uids(store, "bob") == ["b4"]
        assert uids(store, "ann") == ["a1", "a2"]
        assert users(store) == 2
    finally:
        store.close()


def test_a_forget_is_remembered_for_a_day_past_the_retention_window(store: EventStore) -> None:
    store.append([ev("a1", user="ann", ts=AT + 2 * DAY)])
    store.forget_user("shop", "bob", AT)
    store.delete_older_than(AT + FORGOTTEN_KEPT_MS)  # bob's events up to AT + 1 day may come
    assert store.append([ev("b1", ts=AT + 10, received=AT)]) == AppendResult(0, 1)
    store.delete_older_than(AT + FORGOTTEN_KEPT_MS + 1)  # every one of them is out of the window
    if isinstance(store, ClickHouseEventStore):
        store._read_forgotten()
    assert store._forgotten == {}  # type: ignore[attr-defined]
    assert uids(store, "ann") == ["a1"]


def paused_insert(store: ClickHouseEventStore) -> tuple[threading.Event, threading.Event]:
    """Pause the store's next insert into ``events`` once its rows are checked and claimed:
    (set when it waits, set to let it go on)."""
    insert, waiting, go = store._insert, threading.Event(), threading.Event()

    def paused(rows: Sequence[StoredEvent], visible: Sequence[bool] | None = None) -> None:
        waiting.set()
        go.wait(30)
        insert(rows, visible)

    store._insert = paused  # type: ignore[method-assign]
    return waiting, go


def test_an_insert_in_flight_on_another_node_is_deleted_once_it_lands(
    nodes: list[ClickHouseEventStore],
) -> None:
    a, b = nodes
    a.append([ev("a0", user="ann")])
    waiting, go = paused_insert(b)
    queued = b.submit([ev("b1"), ev("a1", user="ann")])  # b acknowledges it once it lands
    assert waiting.wait(30)
    assert a.forget_user("shop", "bob", AT) == 0
    go.set()
    assert queued.result(30) == AppendResult(1, 1)  # bob's row: deleted, not counted stored
    assert uids(a, "bob") == uids(b, "bob") == []
    assert uids(b, "ann") == ["a0", "a1"]
    # b read the forget with its insert's check: bob's old events are not even sent now
    assert b.append([ev("b2", ts=AT - 1, received=AT + 1)]) == AppendResult(0, 1)
    assert b.append([ev("b3", ts=AT + 1, received=AT + 2)]) == AppendResult(1, 0)
    assert uids(a, "bob") == ["b3"]


def test_an_insert_in_flight_on_the_forgetting_node_is_gone_when_the_forget_returns(
    nodes: list[ClickHouseEventStore],
) -> None:
    a, _ = nodes
    waiting, go = paused_insert(a)
    queued = a.submit([ev("b1"), ev("a1", user="ann")])
    assert waiting.wait(30)
    forget = threading.Thread(target=a.forget_user, args=("shop", "bob", AT))
    forget.start()
    forget.join(1)  # before, the forget did not wait for the insert: it was done by now
    go.set()
    forget.join(30)
    page = a.user_events("shop", "bob", {}, limit=10, before=None, not_before_ms=0)
    assert page.events == []  # no wait for mutations: gone when forget_user returned
    # bob's row counts as stored if the insert's check ran before the forget was written
    assert queued.result(30) in (AppendResult(1, 1), AppendResult(2, 0))
    assert uids(a, "ann") == ["a1"]


def test_retention_deletes_what_a_forget_erased_that_a_node_stored_unchecked(
    nodes: list[ClickHouseEventStore],
) -> None:
    """A node stopped between an insert and its check (or cut from ClickHouse then) leaves
    the rows stored; the next retention round, on any node, deletes them."""
    a, b = nodes
    a.forget_user("shop", "bob", AT)
    b._insert([ev("b1"), ev("b2", ts=AT + 1, received=AT + 1), ev("a1", user="ann")])
    assert uids(a, "bob") == ["b1", "b2"]
    steps = record_deletes_and_waits(a)
    a.delete_older_than(0)  # nothing older than 0: the sweep's delete alone, waited for
    assert waited_after_the_last_delete(steps)
    assert uids(a, "bob") == ["b2"]
    assert uids(a, "ann") == ["a1"]


def test_a_node_idle_since_a_forget_on_another_deletes_what_it_stored_and_says_so(
    nodes: list[ClickHouseEventStore],
) -> None:
    """A device sends its old events again to a node that has stored nothing since the
    user was forgotten on another one: the node learns of the forget with its insert's
    check, deletes the rows and answers them as duplicates (not stored)."""
    a, b = nodes
    b.append([ev("a1", user="ann")])
    a.forget_user("shop", "bob", AT)
    assert b.append([ev("b1", ts=AT - 1, received=AT + 1), ev("a2", user="ann")]) == (
        AppendResult(1, 1)
    )
    assert uids(a, "bob") == []
    assert b.append([ev("b2", ts=AT - 2, received=AT + 2)]) == AppendResult(0, 1)
    assert uids(a, "ann") == ["a1", "a2"]


OLD_DAY = T0 // DAY - 3  # a day of bob's from before the forget


def test_a_day_from_before_the_forget_never_becomes_the_users_first(store: EventStore) -> None:
    """A device sends its old events again: the day they give is not recorded as the
    forgotten user's first (their events after the forget make it)."""
    assert store.first_days("shop", {"bob": OLD_DAY, "ann": OLD_DAY}) == {
        "bob": OLD_DAY, "ann": OLD_DAY}  # fmt: skip
    store.forget_user("shop", "bob", AT)
    assert store.first_days("shop", {"bob": OLD_DAY, "ann": OLD_DAY + 1}) == {"ann": OLD_DAY}
    assert store.first_days("shop", {"bob": AT // DAY}) == {"bob": AT // DAY}


def test_a_node_that_has_not_read_the_forget_records_no_day_from_before_it(
    nodes: list[ClickHouseEventStore],
) -> None:
    a, b = nodes
    b.append([ev("a0", user="ann")])  # b is set up, and knows of no forget
    a.forget_user("shop", "bob", AT)
    assert b.first_days("shop", {"bob": OLD_DAY}) == {}
    # one recorded anyway (in a race with the forget) goes with b's next insert's check
    b._exec(
        "INSERT INTO first_seen (appid, user_id, first_day) FORMAT TabSeparated",
        f"shop\tbob\t{OLD_DAY}\n".encode(),
    )
    assert b.append([ev("b1", ts=AT - 1, received=AT + 1)]) == AppendResult(0, 1)
    b._wait_for_mutations()
    assert b.first_days("shop", {"bob": AT // DAY}) == {"bob": AT // DAY}


def test_each_retention_round_looks_only_at_the_forgets_made_since_the_last(
    nodes: list[ClickHouseEventStore],
) -> None:
    a, b = nodes
    a.delete_older_than(0)  # a first round: every forget (none yet)
    at = now_ms()
    a.forget_user("shop", "bob", at)
    b._insert([ev("b1", ts=at - 5, received=at - 5)])  # stored unchecked, then b stopped
    rounds: list[str] = []
    query = a._query

    def seen(sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        if "GROUP BY appid, user_id" in sql and "received_ms >=" in sql:
            rounds.append(sql)
        return query(sql, params)

    a._query = seen  # type: ignore[method-assign]
    a.delete_older_than(0)
    assert uids(a, "bob") == [] and len(rounds) == 1
    a.delete_older_than(0)  # nothing forgotten since (but within the margin): looked at again
    a._swept_at = at + 2 * SWEEP_MARGIN_MS  # hours later: that forget was swept for good
    a.delete_older_than(0)
    assert len(rounds) == 2
