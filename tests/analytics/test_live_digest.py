"""What accepted batches add to an app's real-time view (``LiveDigest``): per-minute event
counts and users, the newest events in the real-time report's order and shape, the cap on
users per minute, and a resync when what a batch added is not known."""

from __future__ import annotations

from typing import Any

from miniport.analytics.ingest_rules import CheckedEvent
from miniport.analytics.live import LATEST_KEEP, USERS_PER_MINUTE, LiveDigest

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
