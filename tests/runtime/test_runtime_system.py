"""System properties, ``$session`` and built-in events of the Python runtime, end to end.

What the runtime SENDS is checked at a capturing server on 127.0.0.1 (the batch ``context``,
each event's ``context``, the built-in events and their data); against the real server, a
batch with a ``context`` and built-in events must not cost the custom events anything, and
the server stores the built-in events and the system properties for reports."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from miniport import __version__
from miniport.runtime import RuntimeClient
from tests.conftest import LiveServer
from tests.support.analytics_api import PURCHASE

SYSTEM = {
    "$platform": "ios",
    "$os_version": "17.2",
    "$brand": "Apple",
    "$model": "iPhone 15",
    "$host_version": "8.0.50",
    "$mp_version": "1.2.0",
    "$env": "release",
    "$network": "wifi",
    "$language": "zh_CN",
    "$screen": "393x852",
}
EMPTY = {"version": 1, "fields": [], "events": [], "test_id": None}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Capture:
    """A runtime API on loopback that records every analytics batch and accepts it."""

    url: str = ""
    config: dict[str, Any] = field(default_factory=lambda: dict(EMPTY))
    batches: list[dict[str, Any]] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        return [ev for batch in self.batches for ev in batch["events"]]


@pytest.fixture
async def capture() -> AsyncIterator[Capture]:
    cap = Capture()

    async def config(request: web.Request) -> web.Response:
        return web.json_response(cap.config)

    async def launch(request: web.Request) -> web.Response:
        return web.json_response({"errMsg": "launch:ok", "prefetch": False})

    async def events(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        cap.batches.append(body)
        return web.json_response({"accepted": len(body["events"]), "duplicates": 0, "rejected": []})

    app = web.Application()
    app.router.add_get("/runtime/v1/apps/mp1/analytics/config", config)
    app.router.add_post("/runtime/v1/apps/mp1/launch", launch)
    app.router.add_post("/runtime/v1/apps/mp1/analytics/events", events)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    cap.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield cap
    finally:
        await runner.cleanup()


def _client(cap: Capture, clock: Clock, **kw: Any) -> RuntimeClient:
    return RuntimeClient(cap.url, "mp1", "tok", clock=clock, analytics_flush_interval_s=60, **kw)


async def test_every_batch_carries_the_system_and_each_event_its_session(
    capture: Capture,
) -> None:
    clock = Clock(1_800_000_000.0)
    async with _client(capture, clock, system=SYSTEM) as rt:
        await rt.launch(path="pages/index/index", query={"from": "share"}, scene=1007)
        rt.page_show("pages/index/index")
        clock.now += 4
        rt.report_analytics("purchase", {"price": 5})
        rt.page_load("pages/list/list", {"goods": []}, query="id=7")
        rt.page_show("pages/list/list")
        clock.now += 2.5
        rt.page_hide("pages/list/list")
        rt.background()
        assert (await rt.flush_analytics())["pending"] == 0
    session = capture.batches[0]["context"]["$session"]
    for batch in capture.batches:  # launch sends at once, the rest goes with the flush
        assert batch["context"] == {
            **SYSTEM,
            "$sdk_version": __version__,
            "$session": session,
            "$scene": 1007,
        }
    events = capture.events()
    t0 = 1_800_000_000_000
    sent = [(e["event"], e["data"], e["ts"], e.get("page")) for e in events]
    assert sent == [
        ("$launch", {"cold": True, "path": "pages/index/index", "query": "from=share"}, t0, None),
        ("$show", {}, t0, None),
        (
            "$pageview",
            {"path": "pages/index/index", "query": "from=share", "referrer": ""},
            t0,
            "pages/index/index",
        ),
        ("purchase", {"price": 5}, t0 + 4000, "pages/index/index"),  # reported on it
        (
            "$pageleave",
            {"path": "pages/index/index", "duration_ms": 4000},
            t0 + 4000,
            "pages/index/index",
        ),
        (
            "$pageview",
            {"path": "pages/list/list", "query": "id=7", "referrer": "pages/index/index"},
            t0 + 4000,
            "pages/list/list",
        ),
        (
            "$pageleave",
            {"path": "pages/list/list", "duration_ms": 2500},
            t0 + 6500,
            "pages/list/list",
        ),
        ("$hide", {}, t0 + 6500, None),
    ]
    assert {json.dumps(e["context"], sort_keys=True) for e in events} == {
        json.dumps({"$scene": 1007, "$session": session}, sort_keys=True)
    }
    assert all(e["trigger"] is None and e["action"] is None for e in events[:3])


async def test_a_system_change_goes_with_later_batches(capture: Capture) -> None:
    async with _client(capture, Clock(1_800_000_000.0), system=SYSTEM) as rt:
        rt.report_analytics("before", {})
        await rt.flush_analytics()
        now = rt.update_system({"$network": "4g", "$bad": [1], "model": "x"})
        assert now["$network"] == "4g" and "$bad" not in now and "model" not in now
        rt.report_analytics("after", {})
        await rt.flush_analytics()
    assert [b["context"]["$network"] for b in capture.batches] == ["wifi", "4g"]


async def test_a_new_session_after_30_minutes_in_the_background_and_at_a_cold_start(
    capture: Capture,
) -> None:
    clock = Clock(1_800_000_000.0)
    async with _client(capture, clock) as rt:
        await rt.launch(scene=1001)
        rt.report_analytics("a", {})
        rt.background()
        clock.now += 29 * 60
        rt.foreground()
        rt.report_analytics("b", {})
        rt.background()
        clock.now += 30 * 60
        rt.foreground()
        rt.report_analytics("c", {})
        await rt.flush_analytics()
    async with _client(capture, clock) as again:  # another run of the app: a cold start
        await again.launch(scene=1001)
        again.report_analytics("d", {})
        await again.flush_analytics()
    by_name = {
        e["event"]: e["context"]["$session"] for e in capture.events() if e["event"] in "abcd"
    }
    assert by_name["a"] == by_name["b"] != by_name["c"] != by_name["d"]
    assert by_name["a"] != by_name["d"]
    shows = [e for e in capture.events() if e["event"] == "$show"]
    assert [e["context"]["$session"] for e in shows][:3] == [
        by_name["a"],
        by_name["a"],
        by_name["c"],
    ]
    launches = [e["data"]["cold"] for e in capture.events() if e["event"] == "$launch"]
    assert launches == [True, True]


async def test_built_in_events_switched_off_by_option_or_by_the_apps_config(
    capture: Capture,
) -> None:
    clock = Clock(1_800_000_000.0)
    async with _client(capture, clock, builtin_events=False) as rt:
        await rt.launch(path="p", scene=1001)
        rt.page_show("p")
        rt.report_analytics("by_code", {})
        await rt.flush_analytics()
    capture.config = {**EMPTY, "builtin_events": False}
    async with _client(capture, clock) as rt:
        await rt.launch(path="p", scene=1001)
        rt.page_show("p")
        rt.report_analytics("by_code_2", {})
        await rt.flush_analytics()
    assert [e["event"] for e in capture.events()] == ["by_code", "by_code_2"]
    assert all(b["context"]["$scene"] == 1001 for b in capture.batches)
    capture.config = dict(EMPTY)  # the config says nothing: on (the default)
    async with _client(capture, clock) as rt:
        await rt.launch(path="p", scene=1001)
        await rt.flush_analytics()
    assert [e["event"] for e in capture.batches[-1]["events"]] == ["$launch", "$show"]


# --- against the real server ---
@dataclass
class Real:
    url: str
    appid: str
    token: str
    admin: dict[str, str]


@pytest.fixture
async def real(live_server: LiveServer) -> Real:
    p = live_server.platform
    appid = (await p.apps.create("rt-system", "test")).appid
    for name, kind in (("price", "int"), ("color", "string")):
        await p.analytics.add_field(appid, {"name": name, "type": kind})
    await p.analytics.save_event(appid, PURCHASE)
    await p.analytics.publish(appid, "test")
    admin = {"Authorization": f"Bearer {live_server.admin_key}"}
    return Real(live_server.url, appid, p.auth.runtime_token("sys-user", "phone"), admin)


async def _session_on_the_real_server(real: Real) -> list[dict[str, Any]]:
    """One visit; returns what the server refused (every batch: launch sends one at once)."""
    async with RuntimeClient(real.url, real.appid, real.token, system=SYSTEM) as rt:
        await rt.launch(path="pages/index/index", scene=1001)
        rt.page_show("pages/index/index")
        rt.report_analytics("purchase", {"price": 7, "color": "red"})
        rt.page_hide("pages/index/index")
        assert (await rt.flush_analytics())["pending"] == 0
        return list(rt.analytics.rejected)


async def _report(real: Real, body: dict[str, Any]) -> list[dict[str, Any]]:
    url = f"{real.url}/admin/v1/apps/{real.appid}/analytics/report"
    async with (
        aiohttp.ClientSession(headers=real.admin) as http,
        http.post(url, json={"granularity": "all", **body}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        rows: list[dict[str, Any]] = (await resp.json())["rows"]
        return rows


async def test_the_real_server_takes_the_custom_events_of_a_batch_with_context(
    real: Real,
) -> None:
    refused = await _session_on_the_real_server(real)
    assert {r["event"] for r in refused} <= {"$launch", "$show", "$pageview", "$pageleave"}
    assert await _report(real, {"event": "purchase"}) == [{"bucket": "all", "count": 1}]


async def test_the_real_server_stores_built_in_events_and_system_properties(
    real: Real,
) -> None:
    assert await _session_on_the_real_server(real) == []
    assert await _report(real, {"event": "purchase", "group_by": ["$platform"]}) == [
        {"bucket": "all", "$platform": "ios", "count": 1}
    ]
    assert await _report(real, {"event": "$pageview", "filters": ["$scene=1001"]}) == [
        {"bucket": "all", "count": 1}
    ]
