"""Overview and real time over the admin API: a batch of built-in events with a context,
the figures, the split by a system property, an accepted event in the real-time view on
the next request, and refusals of bad parameters (422 / invalid_input)."""

from __future__ import annotations

import time
from typing import Any

from tests.support.analytics_api import Api, now_ms

S = 1000


def batch(start: int) -> dict[str, Any]:
    """One session of one user: launch from scene 1089, two pages (8 s on the first)."""
    events = [
        ("$launch", {"cold": True, "path": "pages/index/index"}, 0),
        ("$pageview", {"path": "pages/index/index", "referrer": ""}, 1),
        ("$pageleave", {"path": "pages/index/index", "duration_ms": 8000}, 9),
        ("$pageview", {"path": "pages/cart/cart", "referrer": "pages/index/index"}, 9),
        ("$hide", {}, 20),
    ]
    return {
        "sent_at": now_ms(),
        "context": {"$platform": "android", "$scene": 1089, "$session": "s-1"},
        "events": [
            {"id": f"b{n}", "event": name, "data": data, "ts": start + sec * S}
            for n, (name, data, sec) in enumerate(events)
        ],
    }


async def test_overview_figures_and_split(api: Api) -> None:
    start = now_ms() - 3_600_000
    assert (await api.report("u1", batch(start)))["accepted"] == 5
    found = await api.ok("POST", "/overview", {"granularity": "all", "group_by": "$platform"})
    assert found["rows"] == [
        {"bucket": "all", "$platform": "android", "active_users": 1, "new_users": 1,
         "launches": 1, "sessions": 1, "avg_session_s": 20.0, "page_views": 2,
         "avg_page_s": 8.0, "pages_per_session": 2.0}
    ]  # fmt: skip
    assert found["top_pages"] == [
        {"$platform": "android", "path": "pages/cart/cart", "views": 1, "visitors": 1,
         "avg_time_s": None, "exit_rate": 1.0},
        {"$platform": "android", "path": "pages/index/index", "views": 1, "visitors": 1,
         "avg_time_s": 8.0, "exit_rate": 0.0},
    ]  # fmt: skip
    assert found["scenes"] == [{"$platform": "android", "scene": 1089, "users": 1}]
    assert found["to_ms"] > found["from_ms"]


async def test_an_accepted_event_shows_in_real_time_at_once(api: Api) -> None:
    empty = await api.ok("GET", "/realtime")
    assert len(empty["minutes"]) == 30 and empty["latest"] == []
    assert all(m["events"] == 0 for m in empty["minutes"])
    sent = time.monotonic()
    assert (await api.report("u7", batch(now_ms())))["accepted"] == 5
    live = await api.ok("GET", "/realtime", latest=3)
    assert time.monotonic() - sent < 2  # the promise, not a speed test: no waiting
    assert [e["event"] for e in live["latest"]] == ["$hide", "$pageview", "$pageleave"]
    assert live["latest"][0]["$platform"] == "android"
    assert sum(m["events"] for m in live["minutes"]) >= 2  # the others are seconds ahead
    assert max(m["active_users"] for m in live["minutes"]) == 1


async def test_bad_parameters_are_refused_clearly(api: Api) -> None:
    for body, fragment in (
        ({"group_by": "color"}, "'color' is not a system property"),
        ({"tz": "Mars/Base"}, "unknown time zone"),
        ({"from": "2026-12-01", "to": "2026-11-01"}, "from_ms must be before to_ms"),
    ):
        status, answer = await api.call("POST", "/overview", body)
        assert status == 422 and answer["error"] == "invalid_input", answer
        assert fragment in answer["message"]
    for body in ({"granularity": "week"}, {"top_pages": 0}, {"group_by": 5}):
        status, answer = await api.call("POST", "/overview", body)
        assert status == 422, (body, answer)
    for params in ({"minutes": 0}, {"latest": 201}, {"minutes": "many"}):
        status, answer = await api.call("GET", "/realtime", **params)
        assert status == 422, (params, answer)
    status, answer = await api.call("GET", "/realtime", tz="Nowhere")
    assert status == 422 and "unknown time zone" in answer["message"]
