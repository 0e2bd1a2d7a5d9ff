"""The console over real HTTP (no browser): sign-in, the session cookie, CSRF on the admin API,
roles on pages, the admin endpoints the console added, the CLI, and the UI text catalogs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from miniport.clock import FakeClock
from miniport.errors import StateUnavailable
from miniport.services.console_users import ONE_TIME_PASSWORD_TTL_S, ConsoleUsers
from miniport.web.console import i18n
from miniport.web.console.routes import safe_next
from tests.conftest import DevServer, LiveServer, confirm_url

CONSOLE = Path(__file__).resolve().parents[2] / "src" / "miniport" / "web" / "console"
PASSWORD = "s3cret-enough"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert found, "no CSRF token on the page"
    return found.group(1)


async def sign_in(
    session: aiohttp.ClientSession, base: str, name: str, password: str = PASSWORD
) -> aiohttp.ClientResponse:
    async with session.get(f"{base}/console/login") as r:
        token = csrf_of(await r.text())
    return await session.post(
        f"{base}/console/login",
        allow_redirects=False,
        data={"name": name, "password": password, "csrf_token": token, "next": "/console/apps"},
    )


def client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_session_cookie_and_csrf_on_the_admin_api(live_server: LiveServer) -> None:
    base = live_server.url
    await live_server.platform.console_users.create_user("dana", "developer", PASSWORD)
    async with client() as s:
        r = await sign_in(s, base, "dana")
        assert r.status == 303 and r.headers["location"] == "/console/apps"
        cookie = r.headers["set-cookie"]
        assert "mp_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert "Path=/" in cookie and "Secure" not in cookie  # plain http here
        async with s.get(f"{base}/admin/v1/whoami") as r:
            assert await r.json() == {"name": "dana", "role": "developer"}
        async with s.post(f"{base}/admin/v1/apps", json={"name": "x"}) as r:
            assert r.status == 403 and "CSRF" in (await r.json())["message"]
        async with s.post(
            f"{base}/admin/v1/apps", json={"name": "x"}, headers={"X-CSRF-Token": "wrong"}
        ) as r:
            assert r.status == 403
        async with s.get(f"{base}/console/apps") as r:
            token = csrf_of(await r.text())
        async with s.post(
            f"{base}/admin/v1/apps", json={"name": "x"}, headers={"X-CSRF-Token": token}
        ) as r:
            assert r.status == 201 and (await r.json())["appid"].startswith("mp")
        # sign out ends the session on the server
        async with s.post(
            f"{base}/console/logout", data={"csrf_token": token}, allow_redirects=False
        ) as r:
            assert r.status == 303
        async with s.get(f"{base}/admin/v1/whoami") as r:
            assert r.status == 401


async def test_wrong_password_and_login_csrf(live_server: LiveServer) -> None:
    base = live_server.url
    await live_server.platform.console_users.create_user("erin", "viewer", PASSWORD)
    async with client() as s:
        r = await sign_in(s, base, "erin", "nope-nope-nope")
        assert r.status == 401 and "Wrong user name or password" in await r.text()
        r = await sign_in(s, base, "nobody", PASSWORD)
        assert r.status == 401
        # a sign-in form posted from elsewhere (no matching login CSRF cookie) is refused
    async with (
        client() as s,
        s.post(
            f"{base}/console/login",
            allow_redirects=False,
            data={"name": "erin", "password": PASSWORD, "csrf_token": "forged"},
        ) as r,
    ):
        assert r.status == 403


async def test_one_time_password_must_be_changed_first(live_server: LiveServer) -> None:
    base = live_server.url
    user, generated = await live_server.platform.console_users.create_user("finn", "admin")
    assert user.must_change_password and generated
    async with client() as s:
        r = await sign_in(s, base, "finn", generated)
        assert r.status == 303 and r.headers["location"].startswith("/console/account/password")
        async with s.get(f"{base}/admin/v1/whoami") as r:
            assert r.status == 403 and "new password" in (await r.json())["message"]
        async with s.get(f"{base}/console/apps", allow_redirects=False) as r:
            assert r.headers["location"].startswith("/console/account/password")
        async with s.get(f"{base}/console/account/password") as r:
            token = csrf_of(await r.text())
        async with s.post(
            f"{base}/console/account/password",
            allow_redirects=False,
            data={
                "current": generated,
                "new": "finns-own-pw",
                "repeat": "finns-own-pw",
                "csrf_token": token,
                "next": "/console/users",
            },
        ) as r:
            assert r.status == 303 and r.headers["location"] == "/console/users"
        async with s.get(f"{base}/admin/v1/whoami") as r:
            assert (await r.json())["role"] == "admin"


async def test_an_expired_one_time_password_is_refused_on_the_sign_in_page(
    live_server: LiveServer,
) -> None:
    """The server runs on the system clock: the user is created through a second service on
    the same database whose FakeClock stands past the one-time password's lifetime."""
    p, base = live_server.platform, live_server.url
    past = FakeClock(time.time() - ONE_TIME_PASSWORD_TTL_S - 60)
    earlier = ConsoleUsers(p.db, p.console_users.store, p.registry, past)
    _, generated = await earlier.create_user("fay", "admin")
    assert generated
    async with client() as s:
        r = await sign_in(s, base, "fay", generated)
        page = await r.text()
        assert r.status == 403 and "mp_session" not in r.cookies
        assert "one-time password has expired" in page and "ask an admin for a new one" in page
        async with s.get(f"{base}/console/apps", allow_redirects=False) as r:
            assert r.headers["location"].startswith("/console/login")
    assert await p.db.read(p.console_users.shared.failures, ConsoleUsers._key("fay"), 0) == 1
    new = await p.console_users.reset_password("fay", actor="test")
    async with client() as s:
        r = await sign_in(s, base, "fay", new)
        assert r.status == 303 and r.headers["location"].startswith("/console/account/password")


async def test_pages_check_the_role_on_the_server(live_server: LiveServer) -> None:
    base = live_server.url
    auth = live_server.platform.console_users
    await auth.create_user("gus", "developer", PASSWORD)
    async with client() as s:
        async with s.get(f"{base}/console/users", allow_redirects=False) as r:
            assert r.status == 303
            assert "/console/login?next=%2Fconsole%2Fusers" in r.headers["location"]
        await sign_in(s, base, "gus")
        async with s.get(f"{base}/console/users") as r:
            assert r.status == 403 and "admin role" in await r.text()
        async with s.get(f"{base}/console/apps") as r:
            token = csrf_of(await r.text())
        async with s.post(
            f"{base}/console/users", data={"name": "x", "role": "admin", "csrf_token": token}
        ) as r:
            assert r.status == 403
        assert [u.name for u in await auth.list_users()] == ["gus"]


async def test_two_concurrent_creates_of_one_user_give_one_409(live_server: LiveServer) -> None:
    base = live_server.url
    await live_server.platform.console_users.create_user("ida", "admin", PASSWORD)
    async with client() as s:
        await sign_in(s, base, "ida")
        async with s.get(f"{base}/console/users") as r:
            token = csrf_of(await r.text())

        async def create() -> tuple[int, str]:
            form = {"name": "zoe", "role": "viewer", "csrf_token": token}
            async with s.post(f"{base}/console/users", data=form) as r:
                return r.status, await r.text()

        answers = sorted(await asyncio.gather(create(), create()))
    assert [status for status, _ in answers] == [200, 409]
    assert "a console user named &#39;zoe&#39; already exists" in answers[1][1]
    names = [u.name for u in await live_server.platform.console_users.list_users()]
    assert names == ["ida", "zoe"]


async def test_runtime_tokens_and_health_series(
    live_server: LiveServer, dev_server: DevServer
) -> None:
    p, base = live_server.platform, live_server.url
    app = await p.apps.create("series", "test")
    await confirm_url(p, app.appid, "periodic", dev_server.url + "/p")
    viewer = (await p.auth.create_key("api", "v", "viewer"))["key"]
    admin = {"Authorization": f"Bearer {live_server.admin_key}"}
    async with aiohttp.ClientSession() as s:
        async with s.post(
            f"{base}/admin/v1/runtime-tokens",
            json={"user_id": "zoe"},
            headers={"Authorization": f"Bearer {viewer}"},
        ) as r:
            assert r.status == 403
        async with s.post(
            f"{base}/admin/v1/runtime-tokens",
            json={"user_id": "zoe", "device_id": "sim"},
            headers=admin,
        ) as r:
            minted = await r.json()
        assert minted["device_id"] == "sim"
        identity = p.auth.identify(minted["runtime_token"])
        assert (identity.user_id, identity.device_id) == ("zoe", "sim")
        await p.background.set_token(app.appid, "zoe", "tok")
        await p.background.fetch_now(app.appid, "zoe", "periodic")
        async with s.get(
            f"{base}/admin/v1/apps/{app.appid}/health/series?hours=2&buckets=12", headers=admin
        ) as r:
            series = await r.json()
    assert series["bucket_s"] == 600 and len(series["buckets"]) in (12, 13)
    filled = [b for b in series["kinds"]["periodic"] if b is not None]
    assert len(filled) == 1 and filled[0]["total"] == 1 and filled[0]["success_rate"] == 1.0
    assert filled[0]["avg_bytes"] == 5.0  # "hello"
    assert all(b is None for b in series["kinds"]["pre"])


def test_cli_admin_create(tmp_path: Path) -> None:
    env = {**os.environ, "MINIPORT_DATA_DIR": str(tmp_path / "data")}
    cli = [str(Path(sys.executable).parent / "miniport")]
    run = subprocess.run(
        [*cli, "admin", "create", "root"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "One-time password:" in run.stdout
    reset = subprocess.run(
        [*cli, "admin", "reset-password", "root", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    reset_out = json.loads(reset.stdout)
    assert reset_out["name"] == "root" and len(reset_out["one_time_password"]) >= 12
    nobody = subprocess.run(
        [*cli, "admin", "reset-password", "nobody"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert nobody.returncode == 1 and "not found" in nobody.stderr
    run = subprocess.run(
        [
            *cli,
            "admin",
            "create",
            "dev",
            "--role",
            "developer",
            "--password",
            "a-long-password",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(run.stdout) == {
        "name": "dev",
        "role": "developer",
        "must_change_password": False,
    }
    again = subprocess.run(
        [*cli, "admin", "create", "dev"], env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    short = subprocess.run(
        [*cli, "admin", "create", "x", "--password", "short"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert short.returncode == 1 and "8 to 256 characters" in short.stderr


def test_ui_text_catalogs_have_every_key() -> None:
    english, chinese = i18n.catalog("en"), i18n.catalog("zh-CN")
    assert english.keys() == chinese.keys()
    assert all(v.strip() for v in [*english.values(), *chinese.values()])
    used: set[str] = set()
    sources = [
        *CONSOLE.joinpath("templates").glob("*.html"),
        *CONSOLE.joinpath("static").rglob("*.js"),
    ]
    for path in sources:
        if "vendor" in path.parts:
            continue
        used |= set(re.findall(r"\bt\('([a-z0-9_]+(?:\.[a-z0-9_]+)+)'", path.read_text()))
    missing = sorted(k for k in used if k not in english)
    assert not missing, missing
    for key, text in english.items():  # the same placeholders in both languages
        placeholders = re.compile(r"\{(\w+)\}")
        assert set(placeholders.findall(text)) == set(placeholders.findall(chinese[key])), key


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/confirm/ABC", "/confirm/ABC"),
        ("/console/apps?x=1", "/console/apps?x=1"),
        ("//evil.example/x", "/console/apps"),
        ("/\\evil.example", "/console/apps"),
        ("https://evil.example", "/console/apps"),
        ("", "/console/apps"),
        (None, "/console/apps"),
        ("/ok\r\nSet-Cookie: x", "/console/apps"),
        ("/\t/evil.example/phish", "/console/apps"),  # a browser drops the tab: //evil...
        ("/x\x00y", "/console/apps"),
    ],
)
def test_sign_in_only_returns_to_local_paths(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


async def test_the_sign_in_form_throttles_the_client_address_over_many_names(
    live_server: LiveServer,
) -> None:
    """Password spraying through the real form: each name once, all from 127.0.0.1. Past the
    address's limit even a right password is refused, with the reason on the page."""
    live_server.platform.console_users.address_limit = 3
    await live_server.platform.console_users.create_user("boss", "admin", "right-password-1")
    async with client() as session:
        for i in range(3):
            r = await sign_in(session, live_server.url, f"someone-{i}", "Summer2026!")
            assert r.status == 401
        r = await sign_in(session, live_server.url, "boss", "right-password-1")
        assert r.status == 403
        assert "too many failed sign-ins from this address" in await r.text()
        assert "mp_session" not in r.cookies


async def test_sign_in_throttle_counts_one_account_however_spaces_surround_its_name(
    live_server: LiveServer,
) -> None:
    """Spaces around a name reach the same account, and count for it. (Case does not: "BOSS"
    is not "boss" to the lookup, so guesses typed so never reach boss's password; see
    test_signin_throttle for why they must not count, or reset, for boss.)"""
    from miniport.errors import Forbidden, Unauthorized

    auth = live_server.platform.console_users
    await auth.create_user("boss", "admin", "right-password-1")
    for i in range(10):
        spelled = ["boss", "boss ", " boss", "boss  "][i % 4]
        with pytest.raises(Unauthorized):
            await auth.authenticate(spelled, "wrong")
    with pytest.raises(Forbidden, match="too many failed sign-ins"):
        await auth.authenticate("boss   ", "right-password-1")


async def test_a_confirmation_link_shows_a_non_admin_nothing_of_the_change(
    live_server: LiveServer,
) -> None:
    """A code that reached someone without the admin role (forwarded, photographed): the page
    refuses and names neither the app nor the URLs; an admin sees them."""
    p, base = live_server.platform, live_server.url
    app = await p.apps.create("secret-shop", "test")
    pending = await p.apps.request_change(
        app.appid, "periodic", "set", "https://data.shop.test/v1?k=hidden", "dana"
    )
    await p.console_users.create_user("vic", "developer", PASSWORD)
    await p.console_users.create_user("ada", "admin", PASSWORD)
    async with client() as session:
        assert (await sign_in(session, base, "vic")).status == 303
        async with session.get(f"{base}/confirm/{pending.code}") as r:
            page = await r.text()
        assert r.status == 403 and 'data-testid="confirm-refused"' in page
        assert app.appid not in page and "secret-shop" not in page and "data.shop" not in page
        async with session.get(f"{base}/confirm/NOSUCHCODE") as r:
            assert r.status == 403  # as for a live code: a non-admin cannot tell them apart
    async with client() as session:
        assert (await sign_in(session, base, "ada")).status == 303
        async with session.get(f"{base}/confirm/{pending.code}") as r:
            page = await r.text()
        assert r.status == 200 and app.appid in page and "data.shop.test" in page
        async with session.get(f"{base}/confirm/NOSUCHCODE") as r:
            assert r.status == 410  # an admin is told the code is not confirmable

        async def away(code: str) -> Any:
            raise StateUnavailable("the state database cannot be reached right now; try again")

        p.apps.change_for_code = away  # type: ignore[method-assign]
        async with session.get(f"{base}/confirm/{pending.code}") as r:
            page = await r.text()  # not "gone": the same link works once it is back
        assert r.status == 503 and "try again" in page


async def test_a_flash_cookie_is_a_catalog_message_or_nothing(live_server: LiveServer) -> None:
    """The flash cookie is the browser's to send: its key was used as a format string when it
    was not in the catalog, so "{0}" made every page a 500 for as long as the cookie lived and
    "{a.__class__.__mro__}" printed Python's internals into the page."""
    cases = [
        ({"key": "{0}", "params": {"a": "b"}}, None),
        ({"key": "{a.__class__.__mro__}", "params": {"a": "b"}}, None),
        ({"key": "urls.current", "params": {}}, None),  # in the catalog, but no flash message
        ({"key": ["flash.app_created"]}, None),
        ({"key": "flash.app_created", "params": {"name": "<b>x</b>"}},
         "App “&lt;b&gt;x&lt;/b&gt;” created."),
    ]  # fmt: skip
    for cookie, shown in cases:
        async with client() as session, session.get(
            f"{live_server.url}/console/login", headers={"Cookie": f"mp_flash={json.dumps(cookie)}"}
        ) as r:
            page = await r.text()
        assert r.status == 200, (cookie, page[:300])
        assert "&lt;class" not in page and "<class" not in page
        flashed = re.findall(r'<div class="flash flash-\w+" role="status">(.*?)</div>', page)
        assert flashed == ([shown] if shown is not None else []), (cookie, flashed)
