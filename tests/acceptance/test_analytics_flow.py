"""The analytics flow through the real server: define, test live, sync, publish, report."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from tests.conftest import LiveServer


async def test_define_test_publish_report(live_server: LiveServer) -> None:
    p = live_server.platform
    app = await p.apps.create("an", "test")
    admin = {"Authorization": f"Bearer {live_server.admin_key}"}
    base = f"{live_server.url}/admin/v1/apps/{app.appid}/analytics"
    rt = f"{live_server.url}/runtime/v1/apps/{app.appid}/analytics"
    tester = {"Authorization": f"Bearer {p.auth.runtime_token('dev1', 'phone')}"}
    other = {"Authorization": f"Bearer {p.auth.runtime_token('user2')}"}
    async with aiohttp.ClientSession() as s:
        for field in ({"name": "price", "type": "int"}, {"name": "color", "type": "string"}):
            r = await s.post(f"{base}/fields", json=field, headers=admin)
            assert r.status == 201, await r.text()
        bad = await s.post(
            f"{base}/events",
            headers=admin,
            json={
                "name": "goods_click",
                "display_name": "商品点击",
                "mode": "configured",
                "fields": ["price"],
                "actions": [
                    {"trigger": "click", "action": "report", "page": "pages/list/list", "data": {}}
                ],
            },
        )
        assert bad.status == 422
        assert any("element" in e["path"] for e in (await bad.json())["errors"])
        r = await s.post(
            f"{base}/events",
            headers=admin,
            json={
                "name": "purchase",
                "display_name": "购买",
                "mode": "api",
                "fields": ["price", "color"],
            },
        )
        assert r.status == 201, await r.text()

        # save and test: the tester gets the draft, another user gets the (empty) published one
        test_id = (
            await (await s.post(f"{base}/tests", json={"user_id": "dev1"}, headers=admin)).json()
        )["test_id"]
        assert (await (await s.get(f"{rt}/config", headers=tester)).json())["test_id"] == test_id
        assert (await (await s.get(f"{rt}/config", headers=other)).json())["events"] == []

        watch = await s.get(f"{base}/tests/{test_id}/events", headers=admin)
        reports: list[dict[str, Any]] = []

        async def read_watch() -> None:
            event = None
            async for raw in watch.content:
                line = raw.decode().strip()
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "testReport":
                    reports.append(json.loads(line[5:]))
                    return

        reader = asyncio.create_task(read_watch())
        await asyncio.sleep(0.2)
        now = int(time.time() * 1000)
        batch = {
            "sent_at": now,
            "events": [
                {
                    "id": "e1",
                    "event": "purchase",
                    "data": {"price": 12.7, "color": "red"},
                    "ts": now,
                },
                {"id": "e2", "event": "purchase", "data": {"size": 3}, "ts": now},
                {"id": "e1", "event": "purchase", "data": {"price": 1}, "ts": now},
            ],
        }
        result = await (await s.post(f"{rt}/events", json=batch, headers=tester)).json()
        assert result["accepted"] == 1 and result["duplicates"] == 1
        assert result["rejected"][0]["reason"] == "unknown field 'size' for event 'purchase'"
        await asyncio.wait_for(reader, 5)
        assert reports[0]["accepted"][0]["values"] == {"price": 12, "color": "red"}
        watch.close()

        body = {"event": "purchase", "metrics": ["count", "sum:price"], "granularity": "all"}
        rows = (await (await s.post(f"{base}/report", json=body, headers=admin)).json())["rows"]
        assert rows == []  # test events are not in reports until synced
        await s.post(f"{base}/tests/{test_id}/sync", headers=admin)
        rows = (await (await s.post(f"{base}/report", json=body, headers=admin)).json())["rows"]
        assert rows == [{"bucket": "all", "count": 1, "sum:price": 12}]

        await s.post(f"{base}/tests/{test_id}/stop", headers=admin)
        assert (await (await s.get(f"{rt}/config", headers=tester)).json())["test_id"] is None
        version = (await (await s.post(f"{base}/publish", headers=admin)).json())["version"]
        assert version == 1
        config = await (await s.get(f"{rt}/config", headers=other)).json()
        assert [e["name"] for e in config["events"]] == ["purchase"]
        csv_text = await (
            await s.get(f"{base}/export", params={"event": "purchase"}, headers=admin)
        ).text()
        assert csv_text.splitlines()[0].startswith("time,user,page,trigger,action")
