"""The built-in events switch on the console's analytics page over real HTTP: viewers see its
state without the switch, developers turn it (the runtime's configuration follows, audited),
in both languages; a viewer's post and a post without the CSRF token are refused."""

from __future__ import annotations

import re

from tests.conftest import LiveServer
from tests.web.console.test_console_http import PASSWORD, client, csrf_of, sign_in


def state_of(html: str) -> str:
    found = re.search(r'id="builtin-card" data-testid="builtin-card" data-state="(on|off)"', html)
    assert found, "no built-in events card"
    return found.group(1)


async def test_the_switch_on_the_analytics_page(live_server: LiveServer) -> None:
    base = live_server.url
    p = live_server.platform
    await p.console_users.create_user("vic", "viewer", PASSWORD)
    await p.console_users.create_user("dev", "developer", PASSWORD)
    app = await p.apps.create("Shop", "test")
    for name, role in (("vic", "viewer"), ("dev", "developer")):
        await p.members.add(app.appid, name, role, "test")
    page = f"{base}/console/apps/{app.appid}/analytics"
    switch = f"{page}/builtin"

    async with client() as s:
        await sign_in(s, base, "vic")
        async with s.get(page) as r:
            html = await r.text()
        assert state_of(html) == "on" and 'data-testid="builtin-switch"' not in html
        async with s.post(
            switch, data={"state": "off", "csrf_token": csrf_of(html)}, allow_redirects=False
        ) as r:
            assert r.status == 403
    assert (await p.analytics.runtime_config(app.appid, "u1"))["builtin_events"] is True

    async with client() as s:
        await sign_in(s, base, "dev")
        async with s.get(page) as r:
            html = await r.text()
        assert state_of(html) == "on" and "Turn off" in html
        async with s.post(switch, data={"state": "off"}, allow_redirects=False) as r:
            assert r.status in (400, 403)  # no CSRF token
        async with s.post(
            switch, data={"state": "off", "csrf_token": csrf_of(html)}, allow_redirects=False
        ) as r:
            assert r.status == 303 and r.headers["location"].endswith("/analytics")
        async with s.get(page) as r:
            html = await r.text()
        assert state_of(html) == "off" and "Built-in events are off." in html
        assert (await p.analytics.runtime_config(app.appid, "u1"))["builtin_events"] is False
        async with s.post(
            switch, data={"state": "sideways", "csrf_token": csrf_of(html)}, allow_redirects=False
        ) as r:
            assert r.status == 422
        async with s.get(page, headers={"Accept-Language": "zh-CN"}) as r:
            html = await r.text()
        assert "内置事件" in html and "开启" in html
    rows = await p.db.read(p.registry.list_audit, app.appid, action="analytics.builtin_events")
    assert [(r.actor, r.detail) for r in rows] == [("dev", {"builtin_events": False})]
