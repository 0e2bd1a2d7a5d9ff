"""The runtime HTTP API through the real server (uvicorn on 127.0.0.1, scheduler running):
WeChat's names and shapes, the event stream, token identity, and 4xx for bad input."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from miniport.events.broker import EVERYONE
from tests.conftest import LiveServer, confirm_url
from tests.support.platforms import SSE, Counter, eventually

Live = Callable[..., Awaitable[LiveServer]]


class Runtime:
    """A host container calling the runtime API for one user."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str) -> None:
        self.s, self.base, self.token = session, base, token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
        async with self.s.request(method, self.base + path, headers=self.headers, **kw) as r:
            return r.status, await r.json()

    async def launch(self, appid: str, **body: Any) -> tuple[int, dict[str, Any]]:
        return await self.call("POST", f"/runtime/v1/apps/{appid}/launch", json=body)

    async def set_token(self, appid: str, token: Any) -> tuple[int, dict[str, Any]]:
        return await self.call("POST", f"/runtime/v1/apps/{appid}/background-fetch/token",
                               json={"token": token})

    async def get_token(self, appid: str) -> tuple[int, dict[str, Any]]:
        return await self.call("GET", f"/runtime/v1/apps/{appid}/background-fetch/token")

    async def data(self, appid: str, **params: Any) -> tuple[int, dict[str, Any]]:
        return await self.call("GET", f"/runtime/v1/apps/{appid}/background-fetch/data",
                               params={k: str(v) for k, v in params.items()})


@pytest.fixture
async def server(live_server: LiveServer) -> LiveServer:
    return live_server


async def app_with(server: LiveServer, counter: Counter, *kinds: str) -> str:
    p = server.platform
    app = await p.apps.create("shop", "test")
    for kind in kinds:
        await confirm_url(p, app.appid, kind, f"{counter.url}/{kind}")
    return app.appid


def runtime(server: LiveServer, session: aiohttp.ClientSession, user_id: str,
            device: str | None = None) -> Runtime:
    return Runtime(session, server.url, server.platform.auth.runtime_token(user_id, device))


async def test_pre_fetch_read_has_wechats_fields(
    server: LiveServer, session: aiohttp.ClientSession, counter: Counter,
) -> None:
    appid = await app_with(server, counter, "pre")
    alice = runtime(server, session, "alice")
    status, body = await alice.launch(appid, path="/pages/index/index",
                                      query={"id": "42", "n": 7}, scene=1047)
    assert status == 200 and body == {"errMsg": "launch:ok", "prefetch": True}
    status, body = await alice.data(appid, fetchType="pre", waitMs=5000)
    assert status == 200
    assert set(body) == {"fetchedData", "timeStamp", "path", "query", "scene", "errMsg"}
    assert body["fetchedData"] == "data for ?"
    assert body["errMsg"] == "getBackgroundFetchData:ok"
    assert isinstance(body["timeStamp"], int) and body["timeStamp"] > 10**12  # ms
    assert body["path"] == "pages/index/index"
    assert body["query"] == "id=42&n=7"
    assert body["scene"] == 1047
    sent = counter.requests[0].query
    assert (sent["path"], sent["query"], sent["scene"]) == ("pages/index/index", "id=42&n=7",
                                                             "1047")
    assert (sent["version"], sent["envVersion"]) == ("", "")  # unknown: empty

    bob = runtime(server, session, "bob")
    await bob.launch(appid, path="pages/a", version="3.0.1", envVersion="develop",
                     platform="android")
    await bob.data(appid, fetchType="pre", waitMs=5000)
    sent = counter.requests[-1].query
    assert (sent["version"], sent["envVersion"]) == ("3.0.1", "develop")
    report = await server.platform.background.prefetch_report(appid)
    assert {(r["path"], r["platform"]) for r in report["rows"]} == {
        ("pages/index/index", ""), ("pages/a", "android")}


async def test_token_then_periodic_data(
    server: LiveServer, session: aiohttp.ClientSession, counter: Counter,
) -> None:
    appid = await app_with(server, counter, "periodic")
    alice = runtime(server, session, "alice")
    status, body = await alice.get_token(appid)
    assert status == 404
    assert body["errMsg"] == ("getBackgroundFetchToken:fail token not set, maybe you should "
                              "setBackgroundFetchToken first")
    status, body = await alice.data(appid, fetchType="periodic")
    assert status == 404 and body["errMsg"].startswith("getBackgroundFetchData:fail ")

    assert (await alice.launch(appid))[0] == 200
    status, body = await alice.set_token(appid, "t-alice")
    assert status == 200 and body == {"errMsg": "setBackgroundFetchToken:ok"}
    status, body = await alice.get_token(appid)
    assert body == {"token": "t-alice", "errMsg": "getBackgroundFetchToken:ok"}

    async def fetched() -> dict[str, Any] | None:
        status, body = await alice.data(appid, fetchType="periodic")
        return body if status == 200 else None

    body = await eventually(fetched)  # the running scheduler fetches at once
    assert set(body) == {"fetchedData", "timeStamp", "errMsg"}
    assert body["fetchedData"] == "data for t-alice"
    assert body["errMsg"] == "getBackgroundFetchData:ok"
    assert counter.requests[-1].query["token"] == "t-alice"


async def test_a_runtime_reads_only_its_own_users_data(
    server: LiveServer, session: aiohttp.ClientSession, counter: Counter,
) -> None:
    appid = await app_with(server, counter, "periodic", "pre")
    alice = runtime(server, session, "alice")
    bob = runtime(server, session, "bob")
    alice_tablet = runtime(server, session, "alice", "tablet")
    await alice.launch(appid)
    await alice.set_token(appid, "secret-of-alice")
    await eventually(lambda: _ok(alice.data(appid, fetchType="periodic")))
    await eventually(lambda: _ok(alice.data(appid, fetchType="pre")))

    for kind in ("periodic", "pre"):
        status, body = await bob.data(appid, fetchType=kind)
        assert status == 404 and "getBackgroundFetchData:fail" in body["errMsg"]
    assert (await bob.get_token(appid))[0] == 404
    # the same user on another device sees the user's data
    status, body = await alice_tablet.data(appid, fetchType="periodic")
    assert status == 200 and body["fetchedData"] == "data for secret-of-alice"
    assert (await alice_tablet.get_token(appid))[1]["token"] == "secret-of-alice"

    # bob setting a token changes only bob's
    await bob.set_token(appid, "bobs")
    assert (await alice.get_token(appid))[1]["token"] == "secret-of-alice"


async def _ok(call: Awaitable[tuple[int, dict[str, Any]]]) -> bool:
    return (await call)[0] == 200


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic abc",
                                    "Bearer eyJ1IjoiYWxpY2UifQ.forged"])
async def test_a_bad_runtime_token_is_401(
    server: LiveServer, session: aiohttp.ClientSession, header: str | None,
) -> None:
    app = await server.platform.apps.create("shop", "test")
    headers = {"Authorization": header} if header else {}
    for method, path in [("POST", "launch"), ("POST", "background-fetch/token"),
                         ("GET", "background-fetch/token"),
                         ("GET", "background-fetch/data?fetchType=pre"), ("POST", "login")]:
        async with session.request(method, f"{server.url}/runtime/v1/apps/{app.appid}/{path}",
                                   headers=headers, json={"token": "x"}) as r:
            assert r.status == 401, (method, path)
            body = await r.json()
            assert body["error"] == "unauthorized"
            assert body["errMsg"].split(":fail ")[1] in (
                "invalid runtime token", "missing runtime token (Authorization: Bearer ...)")
    async with session.get(f"{server.url}/runtime/v1/events", headers=headers) as r:
        assert r.status == 401


async def test_a_token_from_another_server_is_401(
    server: LiveServer, live: Live, session: aiohttp.ClientSession,
) -> None:
    other = await live()
    app = await server.platform.apps.create("shop", "test")
    foreign = Runtime(session, server.url, other.platform.auth.runtime_token("alice"))
    status, body = await foreign.get_token(app.appid)
    assert status == 401 and body["errMsg"] == "getBackgroundFetchToken:fail invalid runtime token"


async def test_token_length_and_type(server: LiveServer, session: aiohttp.ClientSession) -> None:
    app = await server.platform.apps.create("shop", "test")
    alice = runtime(server, session, "alice")
    assert (await alice.set_token(app.appid, "x" * 1024))[0] == 200
    assert (await alice.get_token(app.appid))[1]["token"] == "x" * 1024
    for bad in ("x" * 1025, "", "y" * 900_000):
        status, body = await alice.set_token(app.appid, bad)
        assert status == 422
        assert body["errMsg"] == "setBackgroundFetchToken:fail token must be 1..1024 characters"
    for bad in (123, None, ["a"], {"a": 1}, True):
        status, body = await alice.set_token(app.appid, bad)
        assert status == 422, bad
        assert body["errMsg"].startswith("setBackgroundFetchToken:fail token")
        assert "string" in body["errMsg"]
    assert (await alice.get_token(app.appid))[1]["token"] == "x" * 1024  # unchanged


async def test_invalid_runtime_inputs_are_4xx_with_a_clear_message(
    server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    app = await server.platform.apps.create("shop", "test")
    alice = runtime(server, session, "alice")
    base = f"/runtime/v1/apps/{app.appid}"

    async def raw(method: str, path: str, data: bytes) -> tuple[int, dict[str, Any]]:
        headers = {**alice.headers, "Content-Type": "application/json"}
        async with session.request(method, server.url + path, data=data, headers=headers) as r:
            return r.status, await r.json()

    cases: list[tuple[tuple[int, dict[str, Any]], str]] = [
        (await raw("POST", base + "/launch", b"{not json"), "launch:fail "),
        (await raw("POST", base + "/background-fetch/token", b"[1,"),
         "setBackgroundFetchToken:fail "),
        (await raw("POST", base + "/background-fetch/token", b""),
         "setBackgroundFetchToken:fail request body: Field required"),
        (await raw("POST", base + "/background-fetch/token", b"{}"),
         "setBackgroundFetchToken:fail token: Field required"),
        (await raw("POST", base + "/launch", b'"pages/index"'), "launch:fail request body"),
        (await alice.launch(app.appid, scene="abc"), "launch:fail scene"),
        (await alice.launch(app.appid, scene=-1), "launch:fail scene"),
        (await alice.launch(app.appid, scene=100000), "launch:fail scene"),
        (await alice.launch(app.appid, path=5), "launch:fail path"),
        (await alice.launch(app.appid, path="p" * 1025), "launch:fail path"),
        (await alice.launch(app.appid, query="q" * 5000), "launch:fail query"),
        (await alice.launch(app.appid, query={"k": ["list"]}), "launch:fail query"),
        (await alice.launch(app.appid, envVersion="beta"), "launch:fail envVersion"),
        (await alice.launch(app.appid, version="v" * 65), "launch:fail version"),
        (await alice.launch(app.appid, version="1\n2"), "launch:fail version"),
        (await alice.launch(app.appid, platform="iOS 17"), "launch:fail platform"),
        (await alice.data(app.appid, fetchType="weekly"), "getBackgroundFetchData:fail fetchType"),
        (await alice.data(app.appid, fetchType="pre", waitMs=-1),
         "getBackgroundFetchData:fail waitMs"),
        (await alice.data(app.appid, fetchType="pre", waitMs=10001),
         "getBackgroundFetchData:fail waitMs"),
        (await alice.data(app.appid, fetchType="pre", waitMs="soon"),
         "getBackgroundFetchData:fail waitMs"),
    ]
    for (status, body), prefix in cases:
        assert status == 422, (prefix, body)
        assert body["errMsg"].startswith(prefix), (prefix, body)
        assert body["message"]


async def test_unknown_app_is_404_everywhere(
    server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    alice = runtime(server, session, "alice")
    for (status, body), name in [
        (await alice.launch("nope"), "launch"),
        (await alice.set_token("nope", "t"), "setBackgroundFetchToken"),
        (await alice.get_token("nope"), "getBackgroundFetchToken"),
        (await alice.data("nope", fetchType="pre"), "getBackgroundFetchData"),
        (await alice.data("nope", fetchType="periodic"), "getBackgroundFetchData"),
        (await alice.call("POST", "/runtime/v1/apps/nope/login"), "login"),
    ]:
        assert status == 404, name
        assert body["errMsg"] == f"{name}:fail app 'nope' not found"


async def test_the_event_stream_tells_a_connected_runtime_about_new_data_and_pushes(
    server: LiveServer, session: aiohttp.ClientSession, counter: Counter,
) -> None:
    appid = await app_with(server, counter, "periodic", "pre")
    alice = runtime(server, session, "alice", "phone")
    async with session.get(f"{server.url}/runtime/v1/events", headers=alice.headers,
                           timeout=aiohttp.ClientTimeout(total=60)) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        events = SSE(stream)
        name, hello = await events.next()
        assert name == "connected" and hello["user"] == "alice" and hello["device"] == "phone"

        await alice.launch(appid, path="pages/a", query="x=1", scene=1001)
        pre = await events.until("backgroundFetchData")
        assert pre == {"type": "backgroundFetchData", "appid": appid, "fetchType": "pre",
                       "fetchedData": "data for ?", "timeStamp": pre["timeStamp"],
                       "path": "pages/a", "query": "x=1", "scene": 1001}
        await alice.set_token(appid, "tok")
        periodic = await events.until("backgroundFetchData")
        assert periodic["fetchType"] == "periodic"
        assert periodic["fetchedData"] == "data for tok"
        assert isinstance(periodic["timeStamp"], int)
        assert {"path", "query", "scene"} <= set(periodic)

        devices = await server.platform.background.push(appid, "alice")
        assert devices["devices"] == ["phone"]
        refresh = await events.until("devtoolsRefresh")
        assert refresh["appid"] == appid and refresh["fetchType"] == "periodic"


async def test_the_event_stream_accepts_access_token_and_is_per_user(
    server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    p = server.platform
    token = p.auth.runtime_token("alice", "browser")
    async with session.get(f"{server.url}/runtime/v1/events", params={"access_token": token},
                           timeout=aiohttp.ClientTimeout(total=60)) as stream:
        events = SSE(stream)
        assert (await events.next())[0] == "connected"
        assert p.broker.connected("alice") == ["browser"]
        await p.broker.publish("bob", {"type": "backgroundFetchData", "n": 1})
        await p.broker.publish("alice", {"type": "backgroundFetchData", "n": 2})
        assert (await events.next())[1]["n"] == 2
    await eventually(lambda: _disconnected(p, "alice"))


async def test_a_stream_opened_for_an_app_gets_only_that_apps_messages(
    server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    p = server.platform
    shop, blog = await p.apps.create("shop", "test"), await p.apps.create("blog", "test")
    token = p.auth.runtime_token("alice", "phone")
    async with session.get(f"{server.url}/runtime/v1/events",
                           params={"access_token": token, "appid": shop.appid},
                           timeout=aiohttp.ClientTimeout(total=60)) as stream:
        events = SSE(stream)
        assert (await events.next())[0] == "connected"
        await p.broker.publish(EVERYONE, {"type": "analyticsConfig", "appid": blog.appid})
        await p.broker.publish("alice", {"type": "backgroundFetchData", "appid": blog.appid})
        await p.broker.publish("alice", {"type": "backgroundFetchData", "appid": shop.appid})
        name, message = await events.next()
        assert (name, message["appid"]) == ("backgroundFetchData", shop.appid)
    await eventually(lambda: _disconnected(p, "alice"))
    async with session.get(f"{server.url}/runtime/v1/events",
                           params={"access_token": token, "appid": "nope"}) as refused:
        assert refused.status == 404


async def _disconnected(p: Any, user_id: str) -> bool:
    return p.broker.connected(user_id) == []


async def test_launch_records_activity_for_the_schedule(
    server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    p = server.platform
    app = await p.apps.create("shop", "test")
    alice = runtime(server, session, "alice")
    status, body = await alice.launch(app.appid)
    assert status == 200 and body["prefetch"] is False
    async def launched() -> dict[str, Any] | None:
        row = await p.db.read(p.fetches.get_user, app.appid, "alice")
        return row if row and row["last_launch_at"] else None

    row = await eventually(launched)
    assert abs(row["last_launch_at"] - p.clock.now()) < 60


async def test_host_api_issues_runtime_tokens(
    server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    p = server.platform
    app = await p.apps.create("shop", "test")
    host_key = (await p.auth.create_key("host", "host-backend"))["key"]
    url = f"{server.url}/host/v1/runtime-tokens"
    async with session.post(url, json={"user_id": "carol", "device_id": "ipad"},
                            headers={"Authorization": f"Bearer {host_key}"}) as r:
        assert r.status == 200
        issued = await r.json()
    assert issued["user_id"] == "carol" and issued["device_id"] == "ipad"
    carol = Runtime(session, server.url, issued["runtime_token"])
    assert (await carol.set_token(app.appid, "c"))[0] == 200
    assert p.auth.identify(issued["runtime_token"]).user_id == "carol"

    for headers in ({}, {"Authorization": "Bearer wrong"},
                    {"Authorization": f"Bearer {server.admin_key}"}):
        async with session.post(url, json={"user_id": "carol"}, headers=headers) as r:
            assert r.status == 401
            assert (await r.json())["error"] == "unauthorized"
    for body in ({}, {"user_id": ""}, {"user_id": 5}, {"user_id": "u" * 129}):
        async with session.post(url, json=body,
                                headers={"Authorization": f"Bearer {host_key}"}) as r:
            assert r.status == 422, body
            assert "user_id" in (await r.json())["message"]


async def test_healthz_and_openapi(server: LiveServer, session: aiohttp.ClientSession) -> None:
    async with session.get(server.url + "/healthz") as r:
        assert r.status == 200
        health = await r.json()
    assert health["ok"] is True and health["scheduler"] is True
    async with session.get(server.url + "/readyz") as r:  # its state database answers
        assert r.status == 200 and await r.json() == {"ok": True, "database": "ok"}
    async with session.get(server.url + "/openapi.json") as r:
        assert r.status == 200
        spec = await r.json()
    paths = set(spec["paths"])
    assert {
        "/runtime/v1/apps/{appid}/launch",
        "/runtime/v1/apps/{appid}/background-fetch/token",
        "/runtime/v1/apps/{appid}/background-fetch/data",
        "/runtime/v1/apps/{appid}/login",
        "/runtime/v1/events",
        "/sns/jscode2session",
        "/healthz",
        "/readyz",
        "/host/v1/runtime-tokens",
        "/admin/v1/apps",
        "/admin/v1/apps/{appid}/changes",
        "/admin/v1/changes/confirm",
        "/admin/v1/apps/{appid}/devtools/fetch",
        "/admin/v1/apps/{appid}/devtools/clear",
        "/admin/v1/apps/{appid}/devtools/push",
        "/admin/v1/apps/{appid}/fetch-log",
        "/admin/v1/audit",
    } <= paths
    assert {"get", "post"} <= set(spec["paths"]["/runtime/v1/apps/{appid}/background-fetch/token"])
    params = {p["name"] for p in spec["paths"]["/runtime/v1/apps/{appid}/background-fetch/data"]
              ["get"]["parameters"]}
    assert {"fetchType", "waitMs"} <= params


async def test_the_data_read_keeps_its_route_surroundings(
    server: LiveServer, session: aiohttp.ClientSession, counter: Counter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """getBackgroundFetchData is served by a plain route ahead of the routers (the hot read
    path): it answers GET only, as documented (HEAD and POST: 405 with ``Allow: GET``), a
    malformed appid path does not reach it, and each read is in the access log."""
    appid = await app_with(server, counter, "periodic")
    rt = runtime(server, session, "alice")
    url = f"{server.url}/runtime/v1/apps/{appid}/background-fetch/data"
    for method in ("HEAD", "POST", "PUT"):
        async with session.request(method, url, headers=rt.headers) as r:
            assert r.status == 405, method
            assert r.headers["Allow"] == "GET"
    async with session.get(url + "/extra", headers=rt.headers) as r:
        assert r.status == 404
    with caplog.at_level("INFO", logger="miniport.access"):
        status, body = await rt.data(appid)
    assert status == 404 and body["errMsg"].startswith("getBackgroundFetchData:fail")
    lines = [r.getMessage() for r in caplog.records if r.name == "miniport.access"]
    assert any(f"GET /runtime/v1/apps/{appid}/background-fetch/data" in line
               and '" 404 ' in line for line in lines), lines
    async with session.get(server.url + "/openapi.json") as r:
        spec = await r.json()
    read = spec["paths"]["/runtime/v1/apps/{appid}/background-fetch/data"]
    assert set(read) == {"get"}
    assert {p["name"] for p in read["get"]["parameters"]} == {"appid", "fetchType", "waitMs"}


@pytest.mark.parametrize(
    ("path", "appid"),
    [
        ("/runtime/v1/apps/mp_1/background-fetch/data", "mp_1"),
        ("/runtime/v1/apps//background-fetch/data", None),
        ("/runtime/v1/apps/a/b/background-fetch/data", None),
        ("/runtime/v1/apps/mp_1/background-fetch/data/", None),
        ("/runtime/v1/apps/mp_1/background-fetch/token", None),
        ("/runtime/v2/apps/mp_1/background-fetch/data", None),
    ],
)
def test_the_fast_read_matches_what_the_route_matches(path: str, appid: str | None) -> None:
    from miniport.web.app import data_appid

    assert data_appid(path) == appid


async def test_an_unexpected_error_in_the_fast_read_is_a_logged_500(
    server: LiveServer, session: aiohttp.ClientSession, counter: Counter,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The read answered ahead of the framework still turns a bug into a 500 and an error
    log with its traceback, as the framework's outermost middleware does, and the next read
    is served."""
    appid = await app_with(server, counter, "periodic")
    rt = runtime(server, session, "alice")
    background = server.platform.background

    async def broken(*args: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(background, "get_data", broken)
    url = f"{server.url}/runtime/v1/apps/{appid}/background-fetch/data"
    with caplog.at_level("INFO"):
        async with session.get(url, headers=rt.headers) as r:
            assert r.status == 500 and await r.text() == "Internal Server Error"
    assert any(r.exc_info and "disk on fire" in str(r.exc_info[1]) for r in caplog.records)
    assert any(r.name == "miniport.access" and '" 500 ' in r.getMessage()
               for r in caplog.records)
    monkeypatch.undo()
    status, body = await rt.data(appid)
    assert status == 404 and body["errMsg"].startswith("getBackgroundFetchData:fail")


def test_the_data_read_is_matched_ahead_of_every_router(server: LiveServer) -> None:
    """The hot read's route comes before any included router, so a read is not matched by a
    walk through the nested routers (the time it saves is in ``bench/read_api.py``)."""
    from starlette.routing import Route

    from miniport.web.app import create_app
    from miniport.web.runtime_api import DATA_ROUTE

    routes = create_app(server.platform).router.routes
    first_router = next(i for i, r in enumerate(routes) if not isinstance(r, Route))
    assert routes.index(DATA_ROUTE) < first_router


async def test_many_concurrent_reads_are_served(
    server: LiveServer, session: aiohttp.ClientSession, counter: Counter,
) -> None:
    appid = await app_with(server, counter, "pre")
    alice = runtime(server, session, "alice")
    await alice.launch(appid)
    results = await asyncio.gather(*(alice.data(appid, fetchType="pre", waitMs=5000)
                                     for _ in range(20)))
    assert {status for status, _ in results} == {200}
    assert len(counter.requests) == 1


async def test_an_apps_devtools_name_only_the_devices_listening_to_that_app(
    server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    """A member of one app sees a user's devices whose streams carry that app's messages (opened
    for it, or for every app), not the devices the user has open for other apps only."""
    p = server.platform
    shop, blog = await p.apps.create("shop", "test"), await p.apps.create("blog", "test")
    viewer = (await p.auth.create_key("api", "v", "viewer"))["key"]
    await p.members.add(shop.appid, "key:v", "viewer", "test")
    streams = [
        session.get(f"{server.url}/runtime/v1/events", timeout=aiohttp.ClientTimeout(total=60),
                    params={"access_token": p.auth.runtime_token("alice", device), **app})
        for device, app in (("blog-phone", {"appid": blog.appid}),
                            ("shop-phone", {"appid": shop.appid}), ("host", {}))]
    opened = [await s.__aenter__() for s in streams]
    try:
        for stream in opened:
            assert (await SSE(stream).next())[0] == "connected"
        async with session.get(
            f"{server.url}/admin/v1/apps/{shop.appid}/users/alice/devices",
            headers={"Authorization": f"Bearer {viewer}"},
        ) as r:
            assert (await r.json())["devices"] == ["host", "shop-phone"]
        assert (await p.background.push(blog.appid, "alice"))["devices"] == ["blog-phone", "host"]
    finally:
        for s in streams:
            await s.__aexit__(None, None, None)


async def test_a_wait_that_is_no_plain_number_is_a_clean_422(
    server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    """``waitMs`` is read by hand on the hot path: a superscript digit (``str.isdigit`` says
    yes, ``int`` says no) or a number of thousands of digits is the documented refusal, not a
    500 with a traceback in the log."""
    p = server.platform
    app = await p.apps.create("shop", "test")
    headers = {"Authorization": f"Bearer {p.auth.runtime_token('alice')}"}
    for wait in ("²", "1" * 5000, "-1", "1.5"):
        async with session.get(
            f"{server.url}/runtime/v1/apps/{app.appid}/background-fetch/data",
            params={"waitMs": wait}, headers=headers,
        ) as r:
            body = await r.json()
            assert r.status == 422 and body["errMsg"].startswith(
                "getBackgroundFetchData:fail"), (wait, body)
