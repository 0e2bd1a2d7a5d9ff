"""wx.login codes and their exchange at /sns/jscode2session (WeChat's shapes and errcodes)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from miniport.clock import FakeClock
from miniport.platform import Platform
from tests.conftest import LiveServer

Make = Callable[..., Awaitable[Platform]]
GRANT = "authorization_code"


async def test_a_code_exchanges_once_for_a_stable_openid(
    platforms: Make, fake_clock: FakeClock,
) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "test")
    code = p.auth.login_code(app.appid, "alice")
    session = await p.auth.jscode2session(app.appid, app.secret, code, GRANT)
    assert set(session) == {"openid", "session_key"}
    assert session["openid"].startswith("o") and len(session["openid"]) == 28
    assert session["session_key"]

    again = await p.auth.jscode2session(app.appid, app.secret, code, GRANT)
    assert again == {"errcode": 40163, "errmsg": "code been used"}  # WeChat's code and text

    second = p.auth.login_code(app.appid, "alice")
    assert second != code
    session2 = await p.auth.jscode2session(app.appid, app.secret, second, GRANT)
    assert session2["openid"] == session["openid"]  # stable per (app, user)


async def test_openids_differ_between_users_and_between_apps(
    platforms: Make, fake_clock: FakeClock,
) -> None:
    p = await platforms(clock=fake_clock)
    a = await p.apps.create("a", "test")
    b = await p.apps.create("b", "test")

    async def openid(app_id: str, secret: str, user_id: str) -> str:
        code = p.auth.login_code(app_id, user_id)
        return str((await p.auth.jscode2session(app_id, secret, code, GRANT))["openid"])

    alice_a = await openid(a.appid, a.secret, "alice")
    bob_a = await openid(a.appid, a.secret, "bob")
    alice_b = await openid(b.appid, b.secret, "alice")
    assert len({alice_a, bob_a, alice_b}) == 3
    assert "alice" not in alice_a


async def test_openid_survives_a_restart(platforms: Make, fake_clock: FakeClock) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("a", "test")
    before = p.auth.openid(app.appid, "alice")
    await p.close()
    restarted = await platforms(clock=fake_clock)
    assert restarted.auth.openid(app.appid, "alice") == before


async def test_an_expired_code_is_refused(platforms: Make, fake_clock: FakeClock) -> None:
    p = await platforms(clock=fake_clock, login_code_ttl_s=300)
    app = await p.apps.create("shop", "test")
    fresh = p.auth.login_code(app.appid, "alice")
    stale = p.auth.login_code(app.appid, "alice")
    fake_clock.advance(300)
    assert "openid" in await p.auth.jscode2session(app.appid, app.secret, fresh, GRANT)
    fake_clock.advance(1)
    expired = await p.auth.jscode2session(app.appid, app.secret, stale, GRANT)
    assert expired["errcode"] == 40029


@pytest.mark.parametrize(
    ("change", "errcode"),
    [("secret", 40125), ("appid", 40013), ("code", 40029), ("grant", 40002),
     ("missing", 41008), ("other_app", 40029)],
)
async def test_wechat_errcodes(platforms: Make, fake_clock: FakeClock, change: str,
                               errcode: int) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "test")
    other = await p.apps.create("other", "test")
    code = p.auth.login_code(app.appid, "alice")
    args = {"appid": app.appid, "secret": app.secret, "js_code": code, "grant_type": GRANT}
    if change == "secret":
        args["secret"] = "0" * 32
    elif change == "appid":
        args["appid"] = "mp_unknown"
    elif change == "code":
        args["js_code"] = "not-a-code"
    elif change == "grant":
        args["grant_type"] = "client_credential"
    elif change == "missing":
        args["js_code"] = ""
    else:  # a code of one app presented with another app's credentials
        args["appid"], args["secret"] = other.appid, other.secret
    result = await p.auth.jscode2session(args["appid"], args["secret"], args["js_code"],
                                         args["grant_type"])
    assert result["errcode"] == errcode
    assert isinstance(result["errmsg"], str) and result["errmsg"]
    assert "openid" not in result
    if change in ("secret", "appid", "grant", "missing"):  # a refused try does not use it up
        ok = await p.auth.jscode2session(app.appid, app.secret, code, GRANT)
        assert "openid" in ok


async def test_login_and_exchange_over_http(live_server: LiveServer) -> None:
    p = live_server.platform
    app = await p.apps.create("shop", "test")
    token = p.auth.runtime_token("alice")
    async with aiohttp.ClientSession(live_server.url) as s:
        r = await s.post(f"/runtime/v1/apps/{app.appid}/login",
                         headers={"Authorization": f"Bearer {token}"})
        assert r.status == 200
        login = await r.json()
        assert login["errMsg"] == "login:ok" and login["code"]
        params = {"appid": app.appid, "secret": app.secret, "js_code": login["code"],
                  "grant_type": GRANT}
        r = await s.get("/sns/jscode2session", params=params)
        assert r.status == 200
        body = await r.json()
        assert body["openid"] == p.auth.openid(app.appid, "alice")
        r = await s.get("/sns/jscode2session", params=params)
        assert (await r.json())["errcode"] == 40163
        r = await s.get("/sns/jscode2session", params={**params, "secret": "x"})
        assert (await r.json())["errcode"] == 40125
        r = await s.get("/sns/jscode2session")
        assert (await r.json())["errcode"] in (40002, 41008)
        r = await s.post("/runtime/v1/apps/nope/login",
                         headers={"Authorization": f"Bearer {token}"})
        assert r.status == 404
        assert (await r.json())["errMsg"].startswith("login:fail ")
