"""The app's built-in events switch as the Python runtime sees it on the real server: the
configuration it fetches says so, and turning the switch while the runtime is connected reaches
it over the event stream at once (no new launch needed)."""

from __future__ import annotations

from typing import Any

import aiohttp

from miniport.runtime import RuntimeClient
from tests.conftest import LiveServer
from tests.support.analytics_api import PURCHASE
from tests.support.platforms import eventually


async def switch(server: LiveServer, appid: str, on: bool) -> None:
    url = f"{server.url}/admin/v1/apps/{appid}/analytics/builtin-events"
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.put(url, json={"builtin_events": on}) as resp,
    ):
        assert resp.status == 200, await resp.text()


async def test_the_runtime_follows_the_switch_pushed_while_connected(
    live_server: LiveServer,
) -> None:
    p = live_server.platform
    appid = (await p.apps.create("rt-builtin", "test")).appid
    for name, kind in (("price", "int"), ("color", "string")):
        await p.analytics.add_field(appid, {"name": name, "type": kind})
    await p.analytics.save_event(appid, PURCHASE)
    await p.analytics.publish(appid, "test")
    token = p.auth.runtime_token("u1", "phone")
    async with RuntimeClient(live_server.url, appid, token) as rt:
        await rt.connect()
        await rt.launch(path="pages/index/index", scene=1001)
        assert rt.analytics.config["builtin_events"] is True and rt.analytics.builtin_enabled

        await switch(live_server, appid, False)

        async def off() -> Any:
            return rt.analytics.config.get("builtin_events") is False or None

        await eventually(off)
        assert not rt.analytics.builtin_enabled
        assert [e["event"] for e in rt.page_show("pages/index/index")] == []
        rt.report_analytics("purchase", {"price": 5})
        assert (await rt.flush_analytics())["pending"] == 0

        await switch(live_server, appid, True)

        async def on() -> Any:
            return rt.analytics.config.get("builtin_events") is True or None

        await eventually(on)
        assert [e["event"] for e in rt.page_show("pages/list/list")] == [
            "$pageleave",  # the page shown while off is left now
            "$pageview",
        ]
        assert (await rt.flush_analytics())["pending"] == 0
        assert list(rt.analytics.rejected) == []
    names = ("$launch", "$show", "$pageview", "$pageleave", "purchase")
    counts = {e: await p.analytics.count(appid, e) for e in names}
    assert counts == {"$launch": 1, "$show": 1, "$pageview": 1, "$pageleave": 1, "purchase": 1}
