"""The dashboards page and the user lookup page over real HTTP (no browser): what each role
sees and may do, the page data block, and erasing a user behind the confirmation page."""

from __future__ import annotations

import time

from tests.conftest import LiveServer
from tests.web.console.test_analytics_pages import page_data
from tests.web.console.test_console_http import PASSWORD, client, csrf_of, sign_in

PURCHASE = {"name": "purchase", "display_name": "购买", "mode": "api", "fields": ["price"]}


async def setup(live_server: LiveServer) -> str:
    p = live_server.platform
    for name, role in (("vic", "viewer"), ("dev", "developer")):
        await p.console_users.create_user(name, role, PASSWORD)
    app = await p.apps.create("Shop", "test")
    for name, role in (("vic", "viewer"), ("dev", "developer")):
        await p.members.add(app.appid, name, role, "test")
    await p.analytics.add_field(app.appid, {"name": "price", "type": "int"})
    await p.analytics.save_event(app.appid, PURCHASE)
    await p.analytics.publish(app.appid, "test")
    now = int(time.time() * 1000)
    batch = {"sent_at": now, "events": [
        {"id": f"e{i}", "event": "purchase", "data": {"price": i}, "ts": now - 10 + i}
        for i in range(3)]}  # fmt: skip
    assert (await p.analytics.ingest(app.appid, "alice", batch))["accepted"] == 3
    await p.saved.save(app.appid, {"name": "sales", "kind": "report",
                                   "params": {"event": "purchase"}}, "test")  # fmt: skip
    await p.saved.create_dashboard(app.appid, {"name": "Main"}, "test")
    await p.saved.add(app.appid, "Main", "sales", 2, "test")
    return app.appid


async def test_viewers_see_dashboards_not_users(live_server: LiveServer) -> None:
    appid = await setup(live_server)
    base = f"{live_server.url}/console/apps/{appid}/analytics"
    async with client() as s:
        await sign_in(s, live_server.url, "vic")
        async with s.get(f"{base}/dashboards") as r:
            html = await r.text()
            assert r.status == 200
        data = page_data(html, "dashboards-data")
        assert data["current"] == "Main" and data["can_edit"] is False
        assert data["dashboards"] == [{"name": "Main", "reports": 1}]
        assert data["reports"] == [{"name": "sales", "kind": "report"}]
        assert 'data-testid="dash-create"' not in html and 'data-testid="dash-add"' not in html
        assert 'data-testid="tab-dashboards"' in html and 'data-testid="tab-users"' not in html
        async with s.get(f"{base}/users", params={"user": "alice"}) as r:
            assert r.status == 403 and "price=" not in await r.text()
        async with s.get(f"{base}/reports") as r:
            assert 'data-testid="rep-save"' not in await r.text()
        async with s.post(f"{base}/users/forget", data={"user": "alice", "confirm": "alice",
                                                        "csrf_token": csrf_of(html)}) as r:
            assert r.status == 403
    assert await live_server.platform.analytics.count(appid) == 3


async def test_developers_look_users_up_and_erase_them(live_server: LiveServer) -> None:
    appid = await setup(live_server)
    base = f"{live_server.url}/console/apps/{appid}/analytics"
    async with client() as s:
        await sign_in(s, live_server.url, "dev")
        async with s.get(f"{base}/dashboards", params={"name": "nope"}) as r:
            html = await r.text()
        data = page_data(html, "dashboards-data")
        assert data["current"] == "Main" and data["can_edit"] is True
        assert 'data-testid="dash-create"' in html
        async with s.get(f"{base}/reports") as r:
            text = await r.text()
            assert 'data-testid="rep-save"' in text and 'data-testid="funnel-save"' in text
        async with s.get(f"{base}/users") as r:
            html = await r.text()
            assert r.status == 200 and 'data-testid="user-events"' not in html
        async with s.get(f"{base}/users", params={"user": "alice"}) as r:
            html = await r.text()
            assert 'data-rows="3"' in html and "price=2" in html
            assert html.index('data-event-id="e0"') < html.index('data-event-id="e2"')
        async with s.get(f"{base}/users", params={"user": "alice", "before": "bad"}) as r:
            assert 'data-testid="user-error"' in await r.text()
        async with s.get(f"{base}/users/forget", params={"user": "alice"}) as r:
            html = await r.text()
            assert r.status == 200 and 'data-testid="forget-confirm"' in html
        token = csrf_of(html)
        async with s.post(f"{base}/users/forget", data={"user": "alice", "confirm": "alic",
                                                        "csrf_token": token}) as r:
            assert r.status == 422 and 'data-testid="forget-error"' in await r.text()
        assert await live_server.platform.analytics.count(appid) == 3
        async with s.post(f"{base}/users/forget", data={"user": "alice", "confirm": "alice",
                                                        "csrf_token": token},
                          allow_redirects=False) as r:
            assert r.status == 303
        async with s.get(f"{base}/users", params={"user": "alice"}) as r:
            html = await r.text()
            assert "3 event(s) deleted" in html and 'data-testid="user-none"' in html
    assert await live_server.platform.analytics.count(appid) == 0
