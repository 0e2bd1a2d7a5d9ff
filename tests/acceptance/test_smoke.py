from __future__ import annotations

import aiohttp

from miniport.platform import Platform
from tests.conftest import DevServer, LiveServer, confirm_url


async def test_prefetch_end_to_end(live_server: LiveServer, dev_server: DevServer) -> None:
    p = live_server.platform
    app = await p.apps.create("t", "test")
    await confirm_url(p, app.appid, "pre", dev_server.url + "/pre")
    token = p.auth.runtime_token("u1")
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        r = await s.post(f"{live_server.url}/runtime/v1/apps/{app.appid}/launch",
                         json={"path": "pages/a", "query": "x=1", "scene": 1007})
        assert (await r.json())["prefetch"] is True
        r = await s.get(f"{live_server.url}/runtime/v1/apps/{app.appid}/background-fetch/data",
                        params={"fetchType": "pre", "waitMs": "3000"})
        body = await r.json()
    assert body["fetchedData"] == "hello"
    assert body["scene"] == 1007


async def test_platform_fixture(platform: Platform) -> None:
    assert (await platform.db.read(platform.registry.list_apps)) == []
