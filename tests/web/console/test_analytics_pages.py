"""The analytics pages over real HTTP (no browser): roles checked on the server for the pages
and for every action the pages' scripts take through the admin API, the page data block, the
live test stream with the session cookie, and the SDK modules the pages load."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest

from tests.conftest import LiveServer
from tests.web.console.test_console_http import PASSWORD, client, csrf_of, sign_in

EVENT = {
    "name": "goods_click", "display_name": "商品点击", "mode": "configured",
    "fields": ["price"],
    "actions": [{"trigger": "click", "action": "report", "page": "pages/list/list",
                 "element": ".buy", "data": {"price": "goods[].price"}}],
}


def page_data(html: str, block: str) -> dict[str, object]:
    found = re.search(rf'<script type="application/json" id="{block}">(.*?)</script>', html, re.S)
    assert found, f"no {block} block"
    data: dict[str, object] = json.loads(found.group(1))
    return data


async def test_analytics_pages_and_roles(live_server: LiveServer) -> None:
    base = live_server.url
    p = live_server.platform
    auth = p.console_users
    await auth.create_user("vic", "viewer", PASSWORD)
    await auth.create_user("dev", "developer", PASSWORD)
    app = await p.apps.create("Shop", "test")
    for name, role in (("vic", "viewer"), ("dev", "developer")):  # per-app access
        await p.members.add(app.appid, name, role, "test")
    await p.analytics.add_field(app.appid, {"name": "price", "type": "int"})
    # a name with "</script>" in its display name cannot break out of the data block
    await p.analytics.save_event(app.appid, {**EVENT, "display_name": "</script><b>x"})
    page = f"{base}/console/apps/{app.appid}/analytics"
    api = f"{base}/admin/v1/apps/{app.appid}/analytics"

    async with client() as s:
        async with s.get(page, allow_redirects=False) as r:
            assert r.status == 303 and "/console/login" in r.headers["location"]
        await sign_in(s, base, "vic")
        async with s.get(page) as r:
            html = await r.text()
            assert r.status == 200
        data = page_data(html, "analytics-data")
        assert data["can_edit"] is False
        definitions = data["definitions"]
        assert isinstance(definitions, dict)
        assert [e["name"] for e in definitions["events"]] == ["goods_click"]
        assert definitions["events"][0]["draft"]["display_name"] == "</script><b>x"
        assert 'id="event-form"' not in html and 'id="field-form"' not in html
        assert 'data-testid="tab-analytics"' in html
        async with s.get(f"{page}/reports") as r:
            assert r.status == 200
            reports_data = page_data(await r.text(), "reports-data")
            assert "goods_click" in json.dumps(reports_data)
            # the forms offer the system properties and built-in events too
            system = reports_data["system"]
            assert isinstance(system, dict)
            assert "$platform" in system["properties"] and "$new_user" in system["properties"]
            assert system["events"]["$pageleave"] == ["$path", "$duration_ms"]
            assert system["kinds"]["$duration_ms"] == "int"
            assert system["kinds"]["$new_user"] == "bool"
        # the viewer reads through the API, and may not change anything
        token = csrf_of(html)
        headers = {"X-CSRF-Token": token}
        async with s.get(f"{api}/definitions") as r:
            assert r.status == 200
        async with s.post(f"{api}/fields", json={"name": "color", "type": "string"},
                          headers=headers) as r:
            assert r.status == 403 and "developer role" in (await r.json())["message"]
        async with s.post(f"{api}/tests", json={"user_id": "alice"}, headers=headers) as r:
            assert r.status == 403
        async with s.post(f"{api}/publish", headers=headers) as r:
            assert r.status == 403
        async with s.post(f"{api}/report", json={"event": "goods_click"}, headers=headers) as r:
            assert r.status == 200 and (await r.json())["rows"] == []

    async with client() as s:
        await sign_in(s, base, "dev")
        async with s.get(page) as r:
            html = await r.text()
        assert page_data(html, "analytics-data")["can_edit"] is True
        assert 'id="event-form"' in html and 'data-testid="tester-dialog"' in html
        token = csrf_of(html)
        # the CSRF header is required on every change made with the session cookie
        async with s.post(f"{api}/fields", json={"name": "color", "type": "string"}) as r:
            assert r.status == 403
        headers = {"X-CSRF-Token": token}
        async with s.post(f"{api}/events", json={**EVENT, "actions": [
                {**EVENT["actions"][0], "element": None}]}, headers=headers) as r:  # type: ignore[dict-item]
            body = await r.json()
        assert r.status == 422 and body["error"] == "invalid_definition"
        assert {"path": "actions[0].element",
                "message": "trigger 'click' needs an element selector"} in body["errors"]
        async with s.post(f"{api}/tests", json={"user_id": "alice"}, headers=headers) as r:
            test_id = (await r.json())["test_id"]
        async with s.get(f"{page}?test={test_id}") as r:
            assert page_data(await r.text(), "analytics-data")["open_test"] == test_id

        # the test panel's stream: GET with the session cookie only (EventSource sends no header)
        async def first_report() -> dict[str, object]:
            async with s.get(f"{api}/tests/{test_id}/events") as stream:
                assert stream.status == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                kind = ""
                async for raw in stream.content:
                    line = raw.decode().strip()
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "testReport":
                        report: dict[str, object] = json.loads(line[6:])
                        return report
            raise AssertionError("the stream ended")

        reader = asyncio.create_task(first_report())
        await asyncio.sleep(0.3)
        await p.analytics.ingest(app.appid, "alice", {"sent_at": 1, "events": [
            {"id": "e1", "event": "goods_click", "data": {"price": 12.7}, "ts": 1,
             "page": "pages/list/list", "trigger": "click", "action": "report"}]})
        report = await asyncio.wait_for(reader, 5)
        accepted = report["accepted"]
        assert isinstance(accepted, list)
        assert accepted[0]["values"] == {"price": 12}
        assert accepted[0]["coercions"][0]["note"].startswith("truncated")


async def test_sdk_modules_are_served(live_server: LiveServer) -> None:
    async with aiohttp.ClientSession() as s:
        for name in ("miniport-runtime.js", "wx.js", "analytics.js", "evaluator.js"):
            async with s.get(f"{live_server.url}/sdk/{name}") as r:
                assert r.status == 200, name
                assert "javascript" in r.headers["content-type"], name
        async with s.get(f"{live_server.url}/sdk/miniport-runtime.js") as r:
            text = await r.text()
        assert "from './analytics.js'" in text


async def test_a_page_the_event_store_cannot_answer_says_when_to_try_again(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from miniport.errors import AnalyticsUnavailable

    p = live_server.platform
    await p.console_users.create_user("dev", "developer", PASSWORD)
    app = await p.apps.create("Shop", "test")
    await p.members.add(app.appid, "dev", "developer", "test")

    async def away(*args: object, **kwargs: object) -> object:
        raise AnalyticsUnavailable("ClickHouse cannot be reached")

    monkeypatch.setattr(p.analytics, "definitions", away)
    async with client() as s:
        await sign_in(s, live_server.url, "dev")
        async with s.get(f"{live_server.url}/console/apps/{app.appid}/analytics") as r:
            assert r.status == 503 and r.headers["Retry-After"] == "5"
            assert "ClickHouse cannot be reached" in await r.text()
