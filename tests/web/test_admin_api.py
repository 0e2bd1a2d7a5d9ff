"""The admin HTTP API through the real server: roles, the change flow, devtools, and 4xx with a
clear message for bad input."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.conftest import LiveServer
from tests.support.platforms import SSE, Counter, eventually


class Admin:
    def __init__(self, session: aiohttp.ClientSession, base: str, key: str | None) -> None:
        self.s, self.base, self.key = session, base, key

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        async with self.s.request(method, self.base + "/admin/v1" + path, headers=headers,
                                  **kw) as r:
            return r.status, await r.json()


async def as_role(server: LiveServer, session: aiohttp.ClientSession, role: str) -> Admin:
    key = (await server.platform.auth.create_key("api", f"{role}-key", role))["key"]
    return Admin(session, server.url, key)


async def test_roles(live_server: LiveServer, session: aiohttp.ClientSession) -> None:
    viewer = await as_role(live_server, session, "viewer")
    developer = await as_role(live_server, session, "developer")
    admin = Admin(session, live_server.url, live_server.admin_key)

    status, body = await viewer.call("POST", "/apps", json={"name": "shop"})
    assert status == 403 and body["error"] == "forbidden"
    assert body["message"] == "this needs the developer role; you are viewer"

    status, created = await developer.call("POST", "/apps", json={"name": "shop"})
    assert status == 201 and created["appid"].startswith("mp") and created["secret"]
    appid = created["appid"]
    status, body = await viewer.call("GET", f"/apps/{appid}")
    assert status == 404  # not a member: as if the app did not exist
    status, body = await admin.call("POST", f"/apps/{appid}/members",
                                    json={"user": "key:viewer-key", "role": "viewer"})
    assert status == 201

    status, body = await viewer.call("GET", f"/apps/{appid}")
    assert status == 200 and "secret" not in body  # a viewer does not see the secret
    status, body = await developer.call("GET", f"/apps/{appid}")
    assert status == 200 and body["secret"] == created["secret"]

    status, change = await viewer.call("POST", f"/apps/{appid}/changes",
                                       json={"kind": "pre", "url": "https://dev.example/pre"})
    assert status == 403
    status, change = await developer.call("POST", f"/apps/{appid}/changes",
                                          json={"kind": "pre", "url": "https://dev.example/pre"})
    assert status == 201
    assert {"change_id", "confirm_code", "confirm_url"} <= set(change)

    status, body = await developer.call("POST", "/changes/confirm",
                                        json={"code": change["confirm_code"]})
    assert status == 403 and body["message"] == "this needs the admin role; you are developer"
    assert (await admin.call("GET", f"/apps/{appid}"))[1]["urls"]["pre"]["url"] is None

    status, applied = await admin.call("POST", "/changes/confirm",
                                       json={"code": change["confirm_code"]})
    assert status == 200 and applied["status"] == "applied"
    status, body = await admin.call("GET", f"/apps/{appid}")
    assert body["urls"]["pre"] == {**body["urls"]["pre"], "url": "https://dev.example/pre",
                                   "enabled": True}
    status, body = await admin.call("POST", "/changes/confirm",
                                    json={"code": change["confirm_code"]})
    assert status == 410 and "already applied" in body["message"]

    status, audit = await viewer.call("GET", "/audit", params={"appid": appid})
    actions = [(e["actor"], e["action"]) for e in reversed(audit["entries"])]
    assert actions == [("key:developer-key", "app.create"),
                       ("key:developer-key", "member.add"),  # the creator is a member
                       ("key:test-admin", "member.add"),
                       ("key:developer-key", "change.request"),
                       ("key:test-admin", "change.confirm")]


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", "Token abc"])
async def test_without_a_valid_key_is_401(
    live_server: LiveServer, session: aiohttp.ClientSession, header: str | None,
) -> None:
    headers = {"Authorization": header} if header else {}
    async with session.get(live_server.url + "/admin/v1/apps", headers=headers) as r:
        assert r.status == 401
        assert (await r.json())["error"] == "unauthorized"


async def test_a_runtime_token_is_not_an_admin_key(
    live_server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    token = live_server.platform.auth.runtime_token("alice")
    status, _ = await Admin(session, live_server.url, token).call("GET", "/apps")
    assert status == 401


async def test_invalid_admin_inputs_are_4xx_with_a_clear_message(
    live_server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    admin = Admin(session, live_server.url, live_server.admin_key)
    appid = (await admin.call("POST", "/apps", json={"name": "shop"}))[1]["appid"]

    async def raw(path: str, data: bytes) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {live_server.admin_key}",
                   "Content-Type": "application/json"}
        async with session.post(f"{live_server.url}/admin/v1{path}", data=data,
                                headers=headers) as r:
            return r.status, await r.json()

    cases = [
        (await raw("/apps", b"{oops"), 422, "JSON"),
        (await admin.call("POST", "/apps", json={"name": 5}), 422, "name"),
        (await admin.call("POST", "/apps", json={"name": ""}), 422, "name"),
        (await admin.call("POST", "/apps", json={"name": "n" * 129}), 422, "name"),
        (await admin.call("POST", "/apps", json={}), 422, "name"),
        (await admin.call("POST", f"/apps/{appid}/changes", json={"kind": "daily", "url": "https://x"}),
         422, "kind"),
        (await admin.call("POST", f"/apps/{appid}/changes", json={"kind": "pre", "op": "drop"}),
         422, "op"),
        (await admin.call("POST", f"/apps/{appid}/changes",
                          json={"kind": "pre", "url": "ftp://x.example/"}), 422, "scheme 'ftp'"),
        (await admin.call("POST", f"/apps/{appid}/changes",
                          json={"kind": "pre", "url": "https://a:b@x.example/"}), 422,
         "credentials"),
        (await admin.call("POST", f"/apps/{appid}/changes", json={"kind": "pre", "url": 7}),
         422, "url"),
        (await admin.call("POST", "/changes/confirm", json={"code": ""}), 422, "code"),
        (await admin.call("POST", "/changes/confirm", json={"code": "x" * 65}), 422, "code"),
        (await admin.call("POST", "/changes/confirm", json={"code": "NOSUCHCODE"}), 410,
         "unknown confirmation code"),
        (await admin.call("POST", f"/apps/{appid}/devtools/fetch",
                          json={"user_id": "u", "type": "weekly"}), 422, "type"),
        (await admin.call("POST", f"/apps/{appid}/devtools/fetch", json={"type": "pre"}), 422,
         "user_id"),
        (await admin.call("POST", f"/apps/{appid}/devtools/fetch",
                          json={"user_id": "u" * 129}), 422, "user_id"),
        (await admin.call("POST", f"/apps/{appid}/devtools/fetch",
                          json={"user_id": "u", "scene": 2**31}), 422, "scene"),
        (await admin.call("POST", f"/apps/{appid}/devtools/fetch",
                          json={"user_id": "u", "scene": "1001"}), 422, "scene"),
        (await admin.call("POST", f"/apps/{appid}/devtools/fetch",
                          json={"user_id": "u", "path": "p" * 1025}), 422, "path"),
        (await admin.call("POST", f"/apps/{appid}/devtools/fetch",
                          json={"user_id": "u", "type": "pre", "query": "a=\x01"}), 422,
         "control characters"),
        (await admin.call("GET", f"/apps/{appid}/fetch-log", params={"limit": "0"}), 422, "limit"),
        (await admin.call("GET", f"/apps/{appid}/fetch-log", params={"limit": "many"}), 422,
         "limit"),
        (await admin.call("GET", "/audit", params={"limit": "100000"}), 422, "limit"),
        (await admin.call("GET", f"/apps/{appid}/health", params={"hours": "0"}), 422, "hours"),
        (await admin.call("POST", f"/apps/{appid}/devtools/clear", json={"user_id": 5}), 422,
         "user_id"),
        (await admin.call("POST", f"/apps/{appid}/devtools/push"), 422,
         "request body: Field required"),
        (await raw("/apps", b"[1, 2]"), 422, "request body: Input should be a valid dictionary"),
    ]
    for (status, body), expected_status, fragment in cases:
        assert status == expected_status, (fragment, body)
        assert fragment in body["message"], (fragment, body)
        assert body["error"]


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/apps/nope", None),
    ("POST", "/apps/nope/changes", {"kind": "pre", "url": "https://x.example/"}),
    ("GET", "/apps/nope/changes", None),
    ("POST", "/apps/nope/secret", None),
    ("POST", "/apps/nope/devtools/fetch", {"user_id": "u"}),
    ("POST", "/apps/nope/devtools/fetch", {"user_id": "u", "type": "pre"}),
    ("POST", "/apps/nope/devtools/clear", None),
    ("POST", "/apps/nope/devtools/push", {"user_id": "u"}),
    ("GET", "/apps/nope/fetch-log", None),
    ("GET", "/apps/nope/health", None),
    ("GET", "/changes/chg_nope", None),
    ("GET", "/audit?appid=nope", None),
])
async def test_unknown_app_or_change_is_404(
    live_server: LiveServer, session: aiohttp.ClientSession, method: str, path: str,
    body: dict[str, Any] | None,
) -> None:
    admin = Admin(session, live_server.url, live_server.admin_key)
    status, answer = await admin.call(method, path, json=body)
    assert status == 404, answer
    assert answer["error"] == "not_found" and "not found" in answer["message"]


async def test_devtools_fetch_clear_push_and_log(
    live_server: LiveServer, session: aiohttp.ClientSession, counter: Counter,
) -> None:
    p = live_server.platform
    admin = Admin(session, live_server.url, live_server.admin_key)
    appid = (await admin.call("POST", "/apps", json={"name": "shop"}))[1]["appid"]
    for kind in ("periodic", "pre"):
        change = (await admin.call("POST", f"/apps/{appid}/changes",
                                   json={"kind": kind, "url": f"{counter.url}/{kind}"}))[1]
        await admin.call("POST", "/changes/confirm", json={"code": change["confirm_code"]})

    # fetch now without a token: the reason, and no request
    status, shown = await admin.call("POST", f"/apps/{appid}/devtools/fetch",
                                     json={"user_id": "alice"})
    assert status == 200
    assert shown["verdict"] == "token_not_set"
    assert shown["error"] == "token not set, maybe you should setBackgroundFetchToken first"
    assert counter.requests == []

    await p.background.set_token(appid, "alice", "tok")
    status, shown = await admin.call("POST", f"/apps/{appid}/devtools/fetch",
                                     json={"user_id": "alice", "type": "periodic"})
    assert shown["verdict"] == "cached" and shown["status"] == 200
    assert shown["request"]["url"].startswith(f"{counter.url}/periodic?appid={appid}&token=tok")
    assert "X-Miniport-Signature" in shown["request"]["headers"]

    status, shown = await admin.call("POST", f"/apps/{appid}/devtools/fetch",
                                     json={"user_id": "alice", "type": "pre", "path": "pages/x",
                                           "query": "a=1", "scene": 1011})
    assert shown["verdict"] == "cached"
    assert "path=pages%2Fx" in shown["request"]["url"]

    status, log = await admin.call("GET", f"/apps/{appid}/fetch-log")
    triggers = {(e["kind"], e["trigger"], e["verdict"]) for e in log["entries"]}
    assert ("periodic", "devtools", "token_not_set") in triggers
    assert ("periodic", "devtools", "cached") in triggers
    assert ("pre", "devtools", "cached") in triggers
    logged = [e["url"] for e in log["entries"] if e["url"]]
    assert logged and all("token=tok" not in u and "code=" not in u.replace("code=***", "")
                          for u in logged)  # the log (viewers read it) keeps no credentials
    assert any("token=***" in u for u in logged)
    status, health = await admin.call("GET", f"/apps/{appid}/health")
    assert status == 200 and health["kinds"]["pre"]["ok"] >= 1

    # push: a connected device is told to refresh
    token = p.auth.runtime_token("alice", "phone")
    async with session.get(f"{live_server.url}/runtime/v1/events",
                           headers={"Authorization": f"Bearer {token}"},
                           timeout=aiohttp.ClientTimeout(total=60)) as stream:
        events = SSE(stream)
        await events.next()  # connected
        status, pushed = await admin.call("POST", f"/apps/{appid}/devtools/push",
                                          json={"user_id": "alice"})
        assert status == 200 and pushed["devices"] == ["phone"]
        data = await events.until("backgroundFetchData")
        assert data["fetchType"] == "periodic" and data["fetchedData"] == "data for tok"
        refresh = await events.until("devtoolsRefresh")
        assert refresh["appid"] == appid

    # clear: the cached data goes
    status, cleared = await admin.call("POST", f"/apps/{appid}/devtools/clear",
                                       json={"user_id": "alice"})
    assert status == 200 and cleared["cleared"] == 2

    async def gone() -> bool:
        return await p.db.read(p.fetches.get_data, appid, "alice", "pre") is None

    assert await eventually(gone)
    status, cleared = await admin.call("POST", f"/apps/{appid}/devtools/clear")
    assert status == 200
