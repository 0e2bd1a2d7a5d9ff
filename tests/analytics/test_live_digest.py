"""What accepted batches add to an app's real-time view (``LiveDigest``): per-minute event
counts and users, the newest events in the real-time report's order and shape, the cap on
users per minute, a resync when what a batch added is not known, and several nodes' messages
merged into one."""

from __future__ import annotations

from typing import Any

import pytest

from miniport.analytics.ingest_rules import CheckedEvent
from miniport.analytics.live import (
    BATCHES_KEEP,
    LATEST_KEEP,
    USERS_PER_MINUTE,
    LiveDigest,
    merge_messages,
    well_formed,
)

T0 = 1_764_460_800_000  # 2025-11-30T00:00:00Z, a minute boundary


def ev(uid: str, ts: int, name: str = "$pageview", **extra: Any) -> CheckedEvent:
    return CheckedEvent(uid=uid, event_name=name, event_id=0, ts_ms=ts, time_estimated=False,
                        page=extra.pop("page", None), trigger=None, action=None, values={},
                        extra=extra)


def test_a_batch_adds_its_events_and_user_to_each_minute_it_touches() -> None:
    d = LiveDigest()
    d.add("alice", T0 + 70_000, [ev("a1", T0 + 1000), ev("a2", T0 + 59_999), ev("a3", T0 + 60_000)])
    d.add("bob", T0 + 71_000, [ev("b1", T0 + 5000)])
    d.add("alice", T0 + 72_000, [ev("a4", T0 + 6000)])
    m = d.message("wxA")
    assert m["type"] == "realtime" and m["appid"] == "wxA"
    assert m["minutes"] == [
        {"minute_ms": T0, "events": 4, "users": ["alice", "bob"]},
        {"minute_ms": T0 + 60_000, "events": 1, "users": ["alice"]},
    ]
    assert m["received_ms"] == [T0 + 70_000, T0 + 72_000]
    assert m["users_cut"] is False and m["resync"] is False


def test_latest_are_the_newest_received_in_the_reports_order_and_shape() -> None:
    d = LiveDigest()
    d.add("alice", T0 + 10_000, [ev(f"a{i}", T0 + i * 100) for i in range(8)])
    d.add("bob", T0 + 20_000, [
        ev("b1", T0 + 50, "$launch", sys_platform="ios", sys_scene=1001, sys_session="s-1"),
        ev("b2", T0 + 50, "$pageview", page="pages/a", ev_path="pages/a", sys_platform="ios"),
    ])
    latest = d.message("wxA")["latest"]
    assert len(latest) == LATEST_KEEP
    # bob's batch came last: first, same ts ordered by event id (newest first), then alice's
    firsts = [(e["user"], e["event"]) for e in latest[:2]]
    assert firsts == [("bob", "$pageview"), ("bob", "$launch")]
    assert [e["ts_ms"] for e in latest[2:]] == [T0 + 700, T0 + 600, T0 + 500]
    assert latest[0] == {
        "time": "2025-11-30T00:00:00.050Z", "ts_ms": T0 + 50, "received_ms": T0 + 20_000,
        "event": "$pageview", "user": "bob", "page": "pages/a", "$path": "pages/a",
        "$platform": "ios", "$scene": None, "$session": None,
    }
    assert latest[1]["$scene"] == 1001 and latest[1]["$session"] == "s-1"


def test_users_per_minute_are_capped_and_the_cut_is_said() -> None:
    d = LiveDigest()
    for i in range(USERS_PER_MINUTE + 5):
        d.add(f"u{i:04d}", T0, [ev(f"e{i}", T0 + i)])
    m = d.message("wxA")
    assert m["minutes"][0]["events"] == USERS_PER_MINUTE + 5  # every event still counts
    assert len(m["minutes"][0]["users"]) == USERS_PER_MINUTE
    assert m["users_cut"] is True


def test_an_empty_batch_adds_nothing_and_a_resync_alone_is_a_message() -> None:
    d = LiveDigest()
    d.add("alice", T0, [])
    assert d.empty
    d.resync = True
    assert not d.empty
    m = d.message("wxA")
    assert m["resync"] is True and m["minutes"] == [] and m["latest"] == []


def test_messages_of_several_nodes_merge_into_what_they_said_together() -> None:
    one, two = LiveDigest(), LiveDigest()
    one.add("alice", T0 + 10_000, [ev("a1", T0 + 1000), ev("a2", T0 + 61_000)])
    two.add("bob", T0 + 12_000, [ev("b1", T0 + 2000, "$launch")])
    two.add("alice", T0 + 9_000, [ev("a3", T0 + 3000)])
    m1, m2 = one.message("wxA"), two.message("wxA")
    m2["users_cut"] = True
    merged = merge_messages("wxA", [m1, m2])
    assert merged["minutes"] == [
        {"minute_ms": T0, "events": 3, "users": ["alice", "bob"]},
        {"minute_ms": T0 + 60_000, "events": 1, "users": ["alice"]},
    ]
    assert merged["received_ms"] == [T0 + 9_000, T0 + 12_000]
    assert [e["user"] for e in merged["latest"]] == ["bob", "alice", "alice", "alice"]
    assert merged["latest"][0]["event"] == "$launch"
    assert merged["users_cut"] is True and merged["resync"] is False
    resync = LiveDigest()
    resync.resync = True
    both = merge_messages("wxA", [m1, resync.message("wxA")])
    assert both["resync"] is True and both["received_ms"] == m1["received_ms"]
    assert merge_messages("wxA", [m1]) == m1


def test_merged_latest_keeps_the_newest_and_users_stay_capped() -> None:
    messages = []
    for i in range(3):
        d = LiveDigest()
        for k in range(USERS_PER_MINUTE):
            d.add(f"n{i}-u{k}", T0 + i * 1000 + k, [ev(f"{i}-{k}", T0 + k)])
        messages.append(d.message("wxA"))
    merged = merge_messages("wxA", messages)
    assert merged["minutes"][0]["events"] == 3 * USERS_PER_MINUTE
    assert len(merged["minutes"][0]["users"]) == USERS_PER_MINUTE and merged["users_cut"]
    assert len(merged["latest"]) == LATEST_KEEP
    assert merged["latest"][0]["received_ms"] == T0 + 2000 + USERS_PER_MINUTE - 1


def _good() -> dict[str, Any]:
    d = LiveDigest()
    d.add("alice", T0, [ev("a1", T0)])
    return d.message("wxA")


@pytest.mark.parametrize("change", [
    {"minutes": [{"minute_ms": "x", "events": 1, "users": []}]},
    {"minutes": [{"minute_ms": T0, "events": True, "users": []}]},
    {"minutes": [{"minute_ms": T0, "events": 1, "users": "alice"}]},
    {"minutes": [{"events": 1, "users": []}]},
    {"minutes": ["x"]},
    {"minutes": 5},
    {"latest": [{"ts_ms": 1}]},
    {"latest": [{"ts_ms": 1, "received_ms": 1.5}]},
    {"latest": "x"},
    {"received_ms": 5},
    {"received_ms": [1]},
    {"received_ms": ["1", 2]},
    {"received_ms": [1, None]},
    {"users_cut": None},
    {"resync": 1},
    {"batches": "x"},
    {"batches": [[T0, T0, 1]]},
    {"batches": [[T0, T0, 1, 7]]},
    {"batches": [[T0, "m", 1, "alice"]]},
    {"batches": [[T0, T0, True, "alice"]]},
])
def test_a_message_not_of_that_shape_is_refused(change: dict[str, Any]) -> None:
    good = _good()
    assert well_formed(good) and well_formed({**good, "received_ms": [None, 0]})
    bad = {**good, **change}
    assert not well_formed(bad)
    for missing in ("minutes", "latest", "received_ms", "users_cut", "resync"):
        assert not well_formed({k: v for k, v in good.items() if k != missing})


def test_a_message_says_what_each_batch_added_so_the_console_can_split_it() -> None:
    """Per (receipt, minute, user): what the console needs to add only the batches its fetch
    did not count (received from the fetch's received_before_ms on)."""
    d = LiveDigest()
    d.add("alice", T0 + 100, [ev("a1", T0 + 1000), ev("a2", T0 + 2000)])
    d.add("bob", T0 + 105, [ev("b1", T0 + 3000), ev("b2", T0 + 61_000)])
    d.add("alice", T0 + 105, [ev("a3", T0 + 4000)])
    m = d.message("wxA")
    assert m["batches"] == [
        [T0 + 100, T0, 2, "alice"],
        [T0 + 105, T0, 1, "alice"],
        [T0 + 105, T0, 1, "bob"],
        [T0 + 105, T0 + 60_000, 1, "bob"],
    ]
    assert sum(b[2] for b in m["batches"]) == sum(x["events"] for x in m["minutes"])
    later = LiveDigest()
    later.add("carol", T0 + 110, [ev("c1", T0 + 5000)])
    later.add("alice", T0 + 100, [ev("a9", T0 + 6000)])  # same receipt on another node
    merged = merge_messages("wxA", [m, later.message("wxA")])
    assert merged["batches"] == [
        [T0 + 100, T0, 3, "alice"],
        [T0 + 105, T0, 1, "alice"],
        [T0 + 105, T0, 1, "bob"],
        [T0 + 105, T0 + 60_000, 1, "bob"],
        [T0 + 110, T0, 1, "carol"],
    ]
    assert well_formed(merged)
    # one message without them (too many, or an older node): the merge has none either
    assert merge_messages("wxA", [m, {**later.message("wxA"), "batches": None}])["batches"] is None


def test_batches_past_the_cap_are_dropped_not_cut() -> None:
    d = LiveDigest()
    for i in range(BATCHES_KEEP):
        d.add(f"u{i}", T0 + i, [ev(f"e{i}", T0)])
    assert len(d.message("wxA")["batches"]) == BATCHES_KEEP
    d.add("u0", T0, [ev("again", T0)])  # a key already there still adds up
    d.add("late", T0 + BATCHES_KEEP, [ev("x", T0)])  # one more: none (the console refetches)
    m = d.message("wxA")
    assert m["batches"] is None and well_formed(m)
    assert sum(x["events"] for x in m["minutes"]) == BATCHES_KEEP + 2
