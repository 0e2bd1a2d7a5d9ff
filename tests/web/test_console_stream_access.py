"""A console event stream (the real-time view, the live test view) lives only as long as the
access that opened it: once the API key is revoked or rotated, the console session signed out,
or the member removed from the app, the stream says why and ends before the app's next events
reach it, and the same credential cannot open it again. (Across nodes through Redis:
tests/events/test_redis_broker.py.)"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from yarl import URL

from miniport.platform import Platform
from miniport.services import analytics as analytics_service
from miniport.services import console_users, node_watch
from tests.conftest import LiveServer
from tests.support.platforms import SSE
from tests.web.console.test_console_http import PASSWORD, client, sign_in
from tests.web.test_realtime_push_http import batch, console_user

Live = Callable[..., Awaitable[LiveServer]]
Make = Callable[..., Awaitable[Platform]]
SIGN_IN = "sign in, or send an API key as Authorization: Bearer ..."
LONG = aiohttp.ClientTimeout(total=60)


def realtime_url(server: LiveServer, appid: str) -> str:
    return f"{server.url}/admin/v1/apps/{appid}/analytics/realtime/events"


async def viewer_key(p: Platform, name: str, appid: str) -> str:
    """An API key of the viewer role, a member (viewer) of ``appid``."""
    key = (await p.auth.create_key("api", name, "viewer"))["key"]
    await p.members.add(appid, f"key:{name}", "viewer", "test")
    return str(key)


async def ends_before_more_events(
    p: Platform, appid: str, events: SSE, error: str, message: str
) -> None:
    """The app's next events do not reach ``events``: it is told why, then ends."""
    now = int(time.time() * 1000)
    await p.analytics.ingest(appid, "alice", batch("after", 2, now))
    assert await events.next(5) == (
        "unauthorized", {"type": "unauthorized", "error": error, "message": message})
    with pytest.raises(EOFError):
        await events.next(5)


async def test_a_revoked_api_keys_realtime_stream_ends(
    live_server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    p = live_server.platform
    app = await p.apps.create("A", "test")
    key = await viewer_key(p, "reader", app.appid)
    other = await viewer_key(p, "other", app.appid)
    url = realtime_url(live_server, app.appid)
    async with (
        session.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=LONG) as stream,
        session.get(url, headers={"Authorization": f"Bearer {other}"}, timeout=LONG) as kept,
    ):
        events, others = SSE(stream), SSE(kept)
        assert (await events.next())[0] == "connected" and (await others.next())[0] == "connected"
        await p.auth.revoke_key("api", "reader", "test")
        await ends_before_more_events(p, app.appid, events, "unauthorized", "invalid API key")
        assert (await others.next(5))[0] == "realtime"  # another key's stream goes on
    async with session.get(url, headers={"Authorization": f"Bearer {key}"}) as again:
        assert again.status == 401


async def test_a_rotated_api_keys_live_test_view_ends(
    live_server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    """The live test view: a tester's reports stop reaching the key once it is rotated."""
    p = live_server.platform
    app = await p.apps.create("A", "test")
    key = await viewer_key(p, "reader", app.appid)
    test_id = (await p.analytics.start_test(app.appid, "dev1", "test"))["test_id"]
    url = f"{live_server.url}/admin/v1/apps/{app.appid}/analytics/tests/{test_id}/events"
    async with session.get(url, headers={"Authorization": f"Bearer {key}"},
                           timeout=LONG) as stream:
        events = SSE(stream)
        assert (await events.next())[0] == "connected"
        await p.auth.rotate_key("api", "reader", "test")
        report = {"type": "testReport", "events": ["x"]}
        await p.broker.publish(analytics_service.test_channel(test_id), report)
        assert await events.next(5) == ("unauthorized", {
            "type": "unauthorized", "error": "unauthorized", "message": "invalid API key"})
        with pytest.raises(EOFError):
            await events.next(5)


async def test_a_removed_members_realtime_stream_ends(live_server: LiveServer) -> None:
    """A console user removed from the app: the stream its session opened ends, as the app
    now answers that user (not found)."""
    p = live_server.platform
    app = await p.apps.create("A", "test")
    await console_user(p, "vic", "viewer", app.appid)
    async with client() as s:
        await sign_in(s, live_server.url, "vic")
        async with s.get(realtime_url(live_server, app.appid), timeout=LONG) as stream:
            events = SSE(stream)
            assert (await events.next())[0] == "connected"
            await p.members.remove(app.appid, "vic", "test")
            await ends_before_more_events(
                p, app.appid, events, "not_found", f"app {app.appid!r} not found")
        async with s.get(realtime_url(live_server, app.appid)) as again:
            assert again.status == 404


async def test_signing_out_ends_the_sessions_realtime_stream(live_server: LiveServer) -> None:
    p = live_server.platform
    app = await p.apps.create("A", "test")
    await console_user(p, "vic", "viewer", app.appid)
    async with client() as s:
        await sign_in(s, live_server.url, "vic")
        cookie = s.cookie_jar.filter_cookies(URL(live_server.url))["mp_session"].value
        found = await p.console_users.session_for(cookie)
        assert found is not None
        async with s.get(realtime_url(live_server, app.appid), timeout=LONG) as stream:
            events = SSE(stream)
            assert (await events.next())[0] == "connected"
            await p.console_users.end_session(found)
            await ends_before_more_events(p, app.appid, events, "unauthorized", SIGN_IN)


async def test_an_admin_demoted_to_a_non_member_loses_the_stream(
    live_server: LiveServer,
) -> None:
    """An admin sees every app without being a member; demoted to developer, not a member
    of this app, its stream ends as the app now answers that user."""
    p = live_server.platform
    app = await p.apps.create("A", "test")
    await p.console_users.create_user("root", "admin", PASSWORD)  # not the last admin
    await p.console_users.create_user("ada", "admin", PASSWORD)
    async with client() as s:
        await sign_in(s, live_server.url, "ada")
        async with s.get(realtime_url(live_server, app.appid), timeout=LONG) as stream:
            events = SSE(stream)
            assert (await events.next())[0] == "connected"
            await p.console_users.set_role("ada", "developer", "test")
            await ends_before_more_events(
                p, app.appid, events, "not_found", f"app {app.appid!r} not found")


async def test_an_expired_sessions_stream_ends_at_the_next_sweep(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A session expires with nobody saying so: the sweep finds it."""
    monkeypatch.setattr(node_watch, "SWEEP_S", 0.2)
    monkeypatch.setattr(console_users, "SESSION_TTL_S", 1.5)
    p = live_server.platform
    app = await p.apps.create("A", "test")
    await console_user(p, "vic", "viewer", app.appid)
    async with client() as s:
        await sign_in(s, live_server.url, "vic")
        async with s.get(realtime_url(live_server, app.appid), timeout=LONG) as stream:
            events = SSE(stream)
            assert (await events.next())[0] == "connected"
            assert await events.next(10) == ("unauthorized", {
                "type": "unauthorized", "error": "unauthorized", "message": SIGN_IN})
            with pytest.raises(EOFError):
                await events.next(5)


async def test_a_revocation_no_node_heard_of_ends_the_stream_at_the_next_sweep(
    live: Live, platforms: Make, session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another node on the same database with no broker in common (the CLI without Redis, a
    word lost while Redis was away) revokes the key: this node never hears of it, and its
    sweep ends the stream all the same."""
    monkeypatch.setattr(node_watch, "SWEEP_S", 0.3)
    server = await live()
    other = await platforms(database_url=server.platform.settings.state_url)
    p = server.platform
    app = await p.apps.create("A", "test")
    key = await viewer_key(p, "reader", app.appid)
    async with session.get(realtime_url(server, app.appid),
                           headers={"Authorization": f"Bearer {key}"}, timeout=LONG) as stream:
        events = SSE(stream)
        assert (await events.next())[0] == "connected"
        changes = p.console_guard.changes
        await other.auth.revoke_key("api", "reader", "test")
        assert await events.next(10) == ("unauthorized", {
            "type": "unauthorized", "error": "unauthorized", "message": "invalid API key"})
        assert p.console_guard.changes == changes  # no word reached this node: the sweep
        with pytest.raises(EOFError):
            await events.next(5)
