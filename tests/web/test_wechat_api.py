"""WeChat's server API for background-fetch settings on the real server: wechatpy (pointed at
the local server) gets an access token from /cgi-bin/token, and plain HTTP requests in WeChat's
documented shape drive /wxa/fetchdatasetting; a set waits for an admin unless the app is
trusted for API changes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from wechatpy.client import WeChatClient
from wechatpy.exceptions import WeChatClientException

from tests.conftest import LiveServer

WECHAT = "https://api.weixin.qq.com/"


class ToLoopback(HTTPAdapter):
    """Sends what wechatpy addresses to WeChat to the local server instead (loopback only)."""

    def __init__(self, base: str) -> None:
        super().__init__()
        assert base.startswith("http://127.0.0.1:")
        self.base = base

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        request.url = self.base + "/" + request.url[len(WECHAT) :]
        return super().send(request, *args, **kwargs)


def wechatpy_client(server: LiveServer, appid: str, secret: str) -> WeChatClient:
    client = WeChatClient(appid, secret)
    client._http.mount(WECHAT, ToLoopback(server.url))
    return client


def post(server: LiveServer, token: str, body: Any) -> dict[str, Any]:
    response = requests.post(
        f"{server.url}/wxa/fetchdatasetting", params={"access_token": token}, json=body, timeout=10
    )
    assert response.status_code == 200  # WeChat answers errors in the body
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
async def server(live: Callable[..., Awaitable[LiveServer]]) -> LiveServer:
    return await live()


async def test_wechatpy_gets_a_token_and_settings_wait_for_an_admin(server: LiveServer) -> None:
    p = server.platform
    app = await p.apps.create("shop", "dev")
    client = wechatpy_client(server, app.appid, app.secret)
    fetched = await asyncio.to_thread(client.fetch_access_token)
    assert fetched["expires_in"] == 7200
    token = await asyncio.to_thread(lambda: client.access_token)
    assert token == fetched["access_token"]

    got = await asyncio.to_thread(post, server, token, {"action": "get"})
    assert got == {
        "errcode": 0, "errmsg": "ok",
        "is_pre_fetch_open": False, "pre_fetch_type": 0, "pre_fetch_url": "", "pre_env": "",
        "pre_function_name": "",
        "is_period_fetch_open": False, "period_fetch_type": 0, "period_fetch_url": "",
        "period_env": "", "period_function_name": "",
    }  # fmt: skip
    url = "https://dev.example/periodic"
    answer = await asyncio.to_thread(post, server, token, {
        "action": "set_period_fetch", "is_period_fetch_open": True, "period_fetch_type": 0,
        "period_fetch_url": url,
    })  # fmt: skip
    assert answer["errcode"] == 0 and answer["status"] == "pending"
    got = await asyncio.to_thread(post, server, token, {"action": "get"})
    assert got["period_fetch_url"] == ""  # not before an admin confirms
    code = answer["confirm_url"].rsplit("/", 1)[1]
    await p.apps.confirm(code, "admin")
    got = await asyncio.to_thread(post, server, token, {"action": "get"})
    assert (got["is_period_fetch_open"], got["period_fetch_url"]) == (True, url)

    # an app an admin trusts for API changes: applied at once, and the answer says so
    await p.wechat.set_trusted(app.appid, True, "admin")
    answer = await asyncio.to_thread(post, server, token, {
        "action": "set_pre_fetch", "is_pre_fetch_open": True, "pre_fetch_type": 0,
        "pre_fetch_url": "https://dev.example/pre",
    })  # fmt: skip
    assert answer["status"] == "applied" and "confirm_url" not in answer
    off = await asyncio.to_thread(post, server, token, {
        "action": "set_period_fetch", "is_period_fetch_open": False, "period_fetch_type": 0,
    })  # fmt: skip
    assert off["status"] == "applied"
    got = await asyncio.to_thread(post, server, token, {"action": "get"})
    assert got["is_pre_fetch_open"] is True and got["is_period_fetch_open"] is False
    audit = [e.action for e in await p.db.read(p.registry.list_audit, app.appid)]
    assert "app.api_trust" in audit and audit.count("change.confirm") == 3


async def test_errors_in_wechats_shape(server: LiveServer) -> None:
    p = server.platform
    app = await p.apps.create("shop", "dev")
    with pytest.raises(WeChatClientException) as bad_secret:
        await asyncio.to_thread(wechatpy_client(server, app.appid, "wrong").fetch_access_token)
    assert bad_secret.value.errcode == 40125
    with pytest.raises(WeChatClientException) as bad_appid:
        await asyncio.to_thread(wechatpy_client(server, "mpnope", "x").fetch_access_token)
    assert bad_appid.value.errcode == 40013
    plain = await asyncio.to_thread(
        requests.get, f"{server.url}/cgi-bin/token",
        params={"grant_type": "password", "appid": app.appid, "secret": app.secret}, timeout=10,
    )  # fmt: skip
    assert plain.json() == {"errcode": 40002, "errmsg": "invalid grant_type"}

    token = (await p.wechat.token("client_credential", app.appid, app.secret))["access_token"]
    for sent_token, body, errcode in [
        ("", {"action": "get"}, 41001),
        ("garbage", {"action": "get"}, 40001),
        (token[:-2] + "xx", {"action": "get"}, 40001),
        (token, {"action": "delete"}, 40097),
        (token, {"action": ["get"]}, 40097),  # was a 500: a list looked up in a dict
        (token, {"action": {"a": 1}}, 40097),
        (token, ["get"], 47001),
        (token, {"action": "set_pre_fetch", "is_pre_fetch_open": "yes"}, 40097),
        (token, {"action": "set_pre_fetch", "is_pre_fetch_open": True, "pre_fetch_type": 1}, 40097),
        (token, {"action": "set_pre_fetch", "is_pre_fetch_open": True,
                 "pre_fetch_url": "ftp://dev.example/"}, 40097),
    ]:  # fmt: skip
        answer = await asyncio.to_thread(post, server, sent_token, body)
        assert answer["errcode"] == errcode, (body, answer)
        assert answer["errmsg"]
    assert (await p.apps.settings(app.appid))["pending"] == []  # nothing was requested

    await p.apps.rotate_secret(app.appid, "dev")  # a rotated secret ends earlier tokens
    assert (await asyncio.to_thread(post, server, token, {"action": "get"}))["errcode"] == 40001


async def test_an_access_token_expires(platforms: Any, fake_clock: Any) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "dev")
    token = (await p.wechat.token("client_credential", app.appid, app.secret))["access_token"]
    assert (await p.wechat.fetchdatasetting(token, {"action": "get"}))["errcode"] == 0
    fake_clock.advance(7201)
    assert (await p.wechat.fetchdatasetting(token, {"action": "get"}))["errcode"] == 42001


async def test_a_set_that_meets_the_database_away_is_system_busy(
    platforms: Any, fake_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It answered 40097 "invalid args", which tells the caller not to send it again."""
    from miniport.errors import StateUnavailable

    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "dev")
    token = (await p.wechat.token("client_credential", app.appid, app.secret))["access_token"]

    async def away(*args: Any, **kwargs: Any) -> Any:
        raise StateUnavailable("the state database cannot be reached right now; try again")

    monkeypatch.setattr(p.apps, "request_change", away)
    body = {"action": "set_period_fetch", "is_period_fetch_open": True, "period_fetch_type": 0,
            "period_fetch_url": "https://dev.example/data"}  # fmt: skip
    answer = await p.wechat.fetchdatasetting(token, body)
    assert answer["errcode"] == -1 and answer["errmsg"].startswith("system busy")


async def test_the_database_away_is_system_busy_on_every_wechat_api(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """jscode2session said 40013 "invalid appid" (a configuration error: never retried), and
    the two others answered Miniport's own 503, which WeChat client libraries do not read."""
    from miniport.errors import StateUnavailable

    p = server.platform
    app = await p.apps.create("shop", "dev")
    token = (await p.wechat.token("client_credential", app.appid, app.secret))["access_token"]
    code = p.auth.login_code(app.appid, "alice")

    def away(*args: Any, **kwargs: Any) -> Any:
        raise StateUnavailable("the state database cannot be reached right now; try again")

    monkeypatch.setattr(p.registry, "get_app", away)
    answers = [
        await asyncio.to_thread(
            requests.get, f"{server.url}/sns/jscode2session", timeout=10,
            params={"appid": app.appid, "secret": app.secret, "js_code": code,
                    "grant_type": "authorization_code"},
        ),
        await asyncio.to_thread(
            requests.get, f"{server.url}/cgi-bin/token", timeout=10,
            params={"grant_type": "client_credential", "appid": app.appid, "secret": app.secret},
        ),
    ]  # fmt: skip
    for answer in answers:
        assert answer.status_code == 200 and answer.json()["errcode"] == -1, answer.text
        assert answer.json()["errmsg"].startswith("system busy")
    assert (await asyncio.to_thread(post, server, token, {"action": "get"}))["errcode"] == -1
