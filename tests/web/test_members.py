"""Per-app access, as a matrix over every admin-API route of one app: a developer or viewer who is
not a member of the app finds it "not found"; a member is refused only what its role (the lower of
its platform and member roles) does not allow; admins reach everything. Plus the app list, the
audit log, changes, the console and the CLI."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp

from miniport.storage.members import MemberStore
from tests.acceptance.test_cli import miniport, ok
from tests.conftest import LiveServer
from tests.web.console.test_console_http import PASSWORD, client, sign_in

PARAMS = {"change_id": "c0", "test_id": "t0", "name": "e0", "user_id": "u0", "user": "nobody",
          "report": "r0"}


async def app_routes(server: LiveServer, session: aiohttp.ClientSession) -> list[tuple[str, str]]:
    async with session.get(server.url + "/openapi.json") as r:
        spec = await r.json()
    routes = [(method.upper(), path) for path, ops in spec["paths"].items()
              if path.startswith("/admin/v1/") and "{appid}" in path for method in ops]
    assert len(routes) >= 30  # apps, changes, devtools, health, analytics, members
    return routes


async def call(session: aiohttp.ClientSession, server: LiveServer, key: str, method: str,
               path: str, appid: str) -> tuple[int, dict[str, Any]]:
    url = server.url + re.sub(r"\{(\w+)\}", lambda m: appid if m[1] == "appid" else PARAMS[m[1]],
                              path)
    body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    async with session.request(method, url, headers={"Authorization": f"Bearer {key}"},
                               **body) as r:
        if r.content_type == "text/event-stream":  # a stream that opened: never ends by itself
            return r.status, {}
        text = await r.text()
        return r.status, (await r.json() if text.startswith("{") else {})


def refused_as_unknown(status: int, body: dict[str, Any], appid: str) -> bool:
    return status == 404 and body.get("message") == f"app {appid!r} not found"


async def test_every_admin_route_of_an_app_is_for_its_members_only(
    live_server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    p, auth = live_server.platform, live_server.platform.auth
    ours, theirs = await p.apps.create("ours", "test"), await p.apps.create("theirs", "test")
    keys = {name: (await auth.create_key("api", name, role))["key"] for name, role in [
        ("dev", "developer"), ("view", "viewer"), ("dev-as-viewer", "developer")]}
    admin = live_server.admin_key
    for name, role in [("dev", "developer"), ("view", "viewer"), ("dev-as-viewer", "viewer")]:
        await p.db.write(MemberStore(p.db).put, ours.appid, f"key:{name}", role, 0.0, "test")

    for method, path in await app_routes(live_server, session):
        # not a member: the app does not exist, whatever the route (or the platform role says no)
        for name in keys:
            status, body = await call(session, live_server, keys[name], method, path,
                                      theirs.appid)
            assert refused_as_unknown(status, body, theirs.appid) or (  # or by platform role
                status == 403 and "in app" not in body["message"]), (name, method, path, body)
        # a member: never "not found" for the app; refused only by role
        for name in keys:
            status, body = await call(session, live_server, keys[name], method, path, ours.appid)
            assert not refused_as_unknown(status, body, ours.appid), (name, method, path, body)
            if name == "dev" and status == 403:
                assert "admin role" in body["message"], (method, path, body)
            if name == "dev-as-viewer" and status == 403:
                assert "in app" in body["message"] or "admin role" in body["message"], body
        # an admin is refused nothing
        status, body = await call(session, live_server, admin, method, path, theirs.appid)
        assert status != 403 and not refused_as_unknown(status, body, theirs.appid), (path, body)

    # what a viewer member may do, a viewer does; what needs a developer, it may not
    status, body = await call(session, live_server, keys["view"], "POST",
                              "/admin/v1/apps/{appid}/secret", ours.appid)
    assert status == 403
    status, body = await call(session, live_server, keys["dev-as-viewer"], "POST",
                              "/admin/v1/apps/{appid}/secret", ours.appid)
    assert status == 403 and body["message"] == (
        f"this needs the developer role in app {ours.appid}; you are viewer")
    status, body = await call(session, live_server, keys["dev"], "POST",
                              "/admin/v1/apps/{appid}/secret", ours.appid)
    assert status == 200


async def test_lists_audit_and_changes_show_only_the_callers_apps(
    live_server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    p = live_server.platform
    dev = (await p.auth.create_key("api", "dev", "developer"))["key"]
    headers = {"Authorization": f"Bearer {dev}"}
    async with session.post(f"{live_server.url}/admin/v1/apps", json={"name": "mine"},
                            headers=headers) as r:
        mine = (await r.json())["appid"]
    other = await p.apps.create("other", "test")
    pending = await p.apps.request_change(other.appid, "pre", "set", "https://d.example/", "t")
    base = f"{live_server.url}/admin/v1"
    async with session.get(f"{base}/apps", headers=headers) as r:
        assert [a["appid"] for a in (await r.json())["apps"]] == [mine]
    async with session.get(f"{base}/audit", headers=headers) as r:
        assert {e["appid"] for e in (await r.json())["entries"]} == {mine}
    async with session.get(f"{base}/audit", params={"appid": other.appid}, headers=headers) as r:
        assert r.status == 404
    async with session.get(f"{base}/changes/{pending.change.id}", headers=headers) as r:
        assert r.status == 404
    async with session.get(f"{base}/apps/{mine}/members", headers=headers) as r:
        assert (await r.json())["members"][0] | {"added_at": 0} == {
            "user": "key:dev", "role": "developer", "added_at": 0, "added_by": "key:dev"}


async def test_a_members_audit_page_is_full_when_other_apps_are_busier(
    live_server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    """The member filter is part of the query: with 60 newer entries of another app, a
    member's first page (API limit 5, console page of 50) still shows its own app's older
    entries, and the console's "who" list names only people in the member's apps."""
    p = live_server.platform
    dev = (await p.auth.create_key("api", "dev", "developer"))["key"]
    headers = {"Authorization": f"Bearer {dev}"}
    async with session.post(f"{live_server.url}/admin/v1/apps", json={"name": "mine"},
                            headers=headers) as r:
        mine = (await r.json())["appid"]
    other = await p.apps.create("other", "someone-else")
    for i in range(60):
        await p.db.write(p.registry.audit, float(i), "someone-else", "app.note", other.appid)
    async with session.get(f"{live_server.url}/admin/v1/audit", params={"limit": 5},
                           headers=headers) as r:
        entries = (await r.json())["entries"]
    assert entries and {e["appid"] for e in entries} == {mine}
    await p.console_users.create_user("dana", "developer", PASSWORD)
    await ok("app", "member", "add", mine, "dana", "--role", "viewer",
             data_dir=p.settings.data_dir)
    async with client() as s:
        (await sign_in(s, live_server.url, "dana")).release()
        async with s.get(f"{live_server.url}/console/audit") as r:
            page = await r.text()
    assert f">{mine}<" in page or mine in page
    assert "app.create" in page and "someone-else" not in page


async def test_console_shows_a_user_only_their_apps(live_server: LiveServer) -> None:
    p, base = live_server.platform, live_server.url
    await p.console_users.create_user("dana", "developer", PASSWORD)
    ours, theirs = await p.apps.create("Ours", "test"), await p.apps.create("Theirs", "test")
    data = p.settings.data_dir
    assert await ok("app", "member", "add", ours.appid, "dana", "--role", "viewer",
                    data_dir=data) == {"appid": ours.appid, "user": "dana", "role": "viewer"}
    listed = await ok("app", "member", "list", ours.appid, data_dir=data)
    assert [(m["user"], m["role"]) for m in listed["members"]] == [("dana", "viewer")]
    bad = await miniport("app", "member", "add", ours.appid, "erin", "--role", "admin", "--json",
                         data_dir=data)
    assert bad.code != 0 and bad.json["error"] == "invalid_input"
    async with client() as s:
        r = await sign_in(s, base, "dana")
        r.release()
        async with s.get(f"{base}/console/apps") as r:
            page = await r.text()
            assert ours.appid in page and theirs.appid not in page
        async with s.get(f"{base}/console/apps/{theirs.appid}/urls") as r:
            assert r.status == 404
        async with s.get(f"{base}/console/apps/{ours.appid}/urls") as r:
            assert r.status == 200
        async with s.get(f"{base}/console/audit") as r:
            page = await r.text()
            assert ours.appid in page and theirs.appid not in page
        async with s.get(f"{base}/console/audit", params={"appid": theirs.appid}) as r:
            assert r.status == 404
    assert (await ok("app", "member", "remove", ours.appid, "dana", data_dir=data))["removed"]
    audit = await p.db.read(p.registry.list_audit, ours.appid, 5)
    assert [(e.actor, e.action) for e in audit[:2]] == [("cli", "member.remove"),
                                                        ("cli", "member.add")]


async def test_an_admin_manages_members_on_the_apps_console_page(live_server: LiveServer) -> None:
    from tests.web.console.test_console_http import csrf_of

    p, base = live_server.platform, live_server.url
    await p.console_users.create_user("boss", "admin", PASSWORD)
    await p.console_users.create_user("erin", "developer", PASSWORD)
    app = await p.apps.create("Shop", "test")
    page_url = f"{base}/console/apps/{app.appid}/members"
    async with client() as admin, client() as erin:
        for s, name in ((admin, "boss"), (erin, "erin")):
            (await sign_in(s, base, name)).release()
        async with erin.get(page_url) as r:
            assert r.status == 404  # not a member yet
        async with admin.get(page_url) as r:
            page = await r.text()
            assert 'data-testid="no-members"' in page
            token = csrf_of(page)
        async with admin.post(page_url, data={"user": "erin", "role": "admin",
                                              "csrf_token": token}) as r:
            assert r.status == 422 and 'data-testid="members-error"' in await r.text()
        async with admin.post(page_url, data={"user": "erin", "role": "developer",
                                              "csrf_token": token}) as r:
            assert r.status == 200 and 'data-member="erin"' in await r.text()
        async with erin.get(page_url) as r:
            page = await r.text()
            assert r.status == 200 and 'data-member="erin"' in page
            assert 'data-testid="add-member"' not in page  # only admins manage members
            erin_token = csrf_of(page)
        async with erin.post(f"{page_url}/remove", data={"user": "erin",
                                                         "csrf_token": erin_token}) as r:
            assert r.status == 403
        async with admin.post(f"{page_url}/remove", data={"user": "erin",
                                                          "csrf_token": token}) as r:
            assert r.status == 200
        async with erin.get(f"{base}/console/apps/{app.appid}") as r:
            assert r.status == 404


async def test_a_viewer_member_never_sees_the_app_secret_whatever_its_platform_role(
    live_server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    """A platform developer who is only a viewer of an app reads it as a viewer: the app's
    secret (which signs every request to the developer's server and answers jscode2session)
    is not in its answer, from the API or on the console's app page."""
    p, base = live_server.platform, live_server.url
    app = await p.apps.create("shop", "test")
    key = (await p.auth.create_key("api", "dev-as-viewer", "developer"))["key"]
    await p.db.write(MemberStore(p.db).put, app.appid, "key:dev-as-viewer", "viewer", 0.0, "t")
    async with session.get(f"{base}/admin/v1/apps/{app.appid}",
                           headers={"Authorization": f"Bearer {key}"}) as r:
        shown = await r.json()
    assert r.status == 200 and shown["appid"] == app.appid
    assert "secret" not in shown and app.secret not in json.dumps(shown)
    await p.console_users.create_user("dana", "developer", PASSWORD)
    await p.db.write(MemberStore(p.db).put, app.appid, "dana", "viewer", 0.0, "t")
    async with client() as s:
        (await sign_in(s, base, "dana")).release()
        async with s.get(f"{base}/console/apps/{app.appid}") as r:
            page = await r.text()
    assert r.status == 200 and app.secret not in page
    assert 'data-testid="secret-hidden"' in page and 'data-testid="rotate-secret"' not in page


async def test_a_developers_simulator_token_reaches_only_its_own_app(
    live_server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    """A developer of one app mints runtime tokens (the simulator) for any user id, but only
    for its own app: such a token cannot read a real user's background-fetch token or data
    in another app, nor open that app's event stream. Admins may still mint a token for every
    app; a host key's tokens are for every app, as before."""
    p, base = live_server.platform, live_server.url
    dev = (await p.auth.create_key("api", "dev", "developer"))["key"]
    headers = {"Authorization": f"Bearer {dev}"}
    async with session.post(f"{base}/admin/v1/apps", json={"name": "mine"},
                            headers=headers) as r:
        mine = (await r.json())["appid"]
    theirs = (await p.apps.create("theirs", "test")).appid
    await p.background.set_token(theirs, "alice", "their-backend-credential")
    mint = f"{base}/admin/v1/runtime-tokens"
    async with session.post(mint, json={"user_id": "alice"}, headers=headers) as r:
        assert r.status == 403 and "appid" in (await r.json())["message"]
    async with session.post(mint, json={"user_id": "alice", "appid": theirs},
                            headers=headers) as r:
        assert r.status == 404  # not a member: as if the app did not exist
    async with session.post(mint, json={"user_id": "alice", "appid": mine},
                            headers=headers) as r:
        assert r.status == 200
        token = (await r.json())["runtime_token"]
    as_alice = {"Authorization": f"Bearer {token}"}
    for method, path in [("GET", "background-fetch/token"), ("GET", "background-fetch/data"),
                         ("POST", "login"), ("POST", "launch"), ("GET", "analytics/config"),
                         ("POST", "analytics/events")]:
        body = {"json": {"events": []}} if method == "POST" else {}
        async with session.request(method, f"{base}/runtime/v1/apps/{theirs}/{path}",
                                   headers=as_alice, **body) as r:
            text = await r.text()
            assert r.status == 403 and "their-backend-credential" not in text, (path, text)
    async with session.get(f"{base}/runtime/v1/apps/{mine}/background-fetch/token",
                           headers=as_alice) as r:
        assert r.status == 404  # its own app: no token set yet, the usual answer
    events = f"{base}/runtime/v1/events"
    async with session.get(events, params={"access_token": token, "appid": theirs}) as r:
        assert r.status == 403
    # without ?appid= the stream is its app's only: another app's message never reaches it
    async with session.get(events, params={"access_token": token}) as stream:
        assert stream.status == 200
        assert b"connected" in await stream.content.readline()
        await p.broker.publish("alice", {"type": "x", "appid": theirs, "n": 1})
        await p.broker.publish("alice", {"type": "x", "appid": mine, "n": 2})
        seen = b""
        while b'"n":2' not in seen and b'"n": 2' not in seen:
            seen += await stream.content.readline()
        assert b'"n":1' not in seen and b'"n": 1' not in seen
    # an admin still mints a token for every app
    async with session.post(mint, json={"user_id": "alice"},
                            headers={"Authorization": f"Bearer {live_server.admin_key}"}) as r:
        every = (await r.json())["runtime_token"]
    async with session.get(f"{base}/runtime/v1/apps/{theirs}/background-fetch/token",
                           headers={"Authorization": f"Bearer {every}"}) as r:
        assert (await r.json())["token"] == "their-backend-credential"


async def test_a_viewer_sees_where_alerts_go_but_not_the_webhooks_secret_part(
    live_server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    """A chat webhook's path and query are its credential (anyone who has them posts to the
    team's channel): a viewer is shown its host only; the app's developers see it whole."""
    p, base = live_server.platform, live_server.url
    app = await p.apps.create("shop", "test")
    hook = "https://hooks.example/services/T0/B0/s3cr3t-part?key=k3y"
    await p.alerts.configure(app.appid, {"webhook": hook})
    keys = {}
    for name, role in (("v", "viewer"), ("d", "developer")):
        keys[name] = (await p.auth.create_key("api", name, role))["key"]
        await p.db.write(MemberStore(p.db).put, app.appid, f"key:{name}", role, 0.0, "t")
    shown = {}
    for name, key in keys.items():
        async with session.get(f"{base}/admin/v1/apps/{app.appid}/alerts",
                               headers={"Authorization": f"Bearer {key}"}) as r:
            assert r.status == 200
            shown[name] = (await r.json())["webhook"]
    assert shown["d"] == hook
    assert shown["v"].startswith("https://hooks.example/") and "s3cr3t" not in shown["v"]
    assert "k3y" not in shown["v"]
