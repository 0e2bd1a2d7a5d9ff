"""Revocation: a user's runtime tokens (all, or those older than a time) on every node, admin API
keys (revoke and rotate) at once, console sessions everywhere on a password change."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from miniport.clock import FakeClock
from miniport.errors import InvalidInput, NotFound, Unauthorized
from miniport.platform import Platform
from tests.acceptance.test_cli import miniport, ok
from tests.conftest import LiveServer
from tests.support.platforms import eventually

Make = Callable[..., Awaitable[Platform]]


async def test_revoking_all_of_a_users_runtime_tokens(
    platforms: Make, fake_clock: FakeClock,
) -> None:
    p = await platforms(clock=fake_clock)
    alice, phone, bob = (p.auth.runtime_token("alice"), p.auth.runtime_token("alice", "phone"),
                         p.auth.runtime_token("bob"))
    assert p.auth.identify(alice).user_id == "alice"  # verified once: cached
    fake_clock.advance(10)
    revoked = await p.auth.revoke_runtime("alice", None, "test")
    assert revoked["before"] == fake_clock.now()
    for token in (alice, phone):
        with pytest.raises(Unauthorized, match="revoked"):
            p.auth.identify(token)
    assert p.auth.identify(bob).user_id == "bob"
    fake_clock.advance(1)
    assert p.auth.identify(p.auth.runtime_token("alice")).user_id == "alice"  # a new sign-in
    entries = await p.db.read(p.registry.list_audit, None, 5)
    assert entries[0].action == "runtime_tokens.revoke" and entries[0].detail["user_id"] == "alice"


async def test_revoking_only_sessions_older_than_a_time(
    platforms: Make, fake_clock: FakeClock,
) -> None:
    p = await platforms(clock=fake_clock)
    old = p.auth.runtime_token("alice")
    fake_clock.advance(3600)
    cutoff = fake_clock.now()
    recent = p.auth.runtime_token("alice")
    fake_clock.advance(60)
    await p.auth.revoke_runtime("alice", cutoff, "test")
    with pytest.raises(Unauthorized, match="revoked"):
        p.auth.identify(old)
    assert p.auth.identify(recent).user_id == "alice"
    with pytest.raises(InvalidInput, match="future"):
        await p.auth.revoke_runtime("alice", fake_clock.now() + 60, "test")


async def test_a_revocation_reaches_another_node(platforms: Make, fake_clock: FakeClock) -> None:
    """Two platforms on one database: the second learns the revocation at its next look."""
    first = await platforms(clock=fake_clock)
    second = await platforms(clock=fake_clock)
    token = first.auth.runtime_token("alice")
    await second.auth.refresh_revocations()
    assert second.auth.identify(token).user_id == "alice"
    fake_clock.advance(5)
    await first.auth.revoke_runtime("alice", None, "test")
    fake_clock.advance(1)
    await second.auth.refresh_revocations()
    with pytest.raises(Unauthorized, match="revoked"):
        second.auth.identify(token)


async def test_cli_revokes_runtime_tokens_of_a_running_server(live_server: LiveServer) -> None:
    p = live_server.platform
    app = await p.apps.create("shop", "test")
    token = p.auth.runtime_token("alice")
    url = f"{live_server.url}/runtime/v1/apps/{app.appid}/background-fetch/token"
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json={"token": "t"}, headers=headers) as r:
            assert r.status == 200
        data = p.settings.data_dir
        assert (await ok("user", "revoke", "alice", data_dir=data))["user_id"] == "alice"

        async def refused() -> bool:
            async with s.get(url, headers=headers) as r:
                return r.status == 401 and "revoked" in (await r.json())["message"]

        await eventually(refused, timeout_s=10)
        bad = await miniport("user", "revoke", "alice", "--before", "yesterday", "--json",
                             data_dir=data)
        assert bad.code != 0 and "ISO time" in bad.out + bad.err


async def test_api_keys_are_revoked_and_rotated_at_once(live_server: LiveServer) -> None:
    p, data = live_server.platform, live_server.platform.settings.data_dir
    old = (await p.auth.create_key("api", "deploy", "developer"))["key"]

    async def whoami(key: str) -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession() as s, s.get(
                f"{live_server.url}/admin/v1/whoami",
                headers={"Authorization": f"Bearer {key}"}) as r:
            return r.status, await r.json()

    assert (await whoami(old))[0] == 200
    rotated = await ok("api-key", "rotate", "deploy", data_dir=data)
    assert rotated["role"] == "developer" and rotated["key"] != old
    assert (await whoami(old))[0] == 401
    assert await whoami(rotated["key"]) == (200, {"name": "key:deploy", "role": "developer"})
    assert (await ok("api-key", "revoke", "deploy", data_dir=data)) == {
        "name": "deploy", "revoked": 1}
    assert (await whoami(rotated["key"]))[0] == 401
    missing = await miniport("api-key", "revoke", "deploy", "--json", data_dir=data)
    assert missing.code != 0 and missing.json["error"] == "not_found"
    with pytest.raises(NotFound):
        await p.auth.rotate_key("api", "nobody", "test")
    # two live keys of one name with different roles: the new one gets the lesser role
    for role in ("admin", "viewer", "developer"):
        await p.auth.create_key("api", "shared", role)
    assert (await p.auth.rotate_key("api", "shared", "test"))["role"] == "viewer"


async def test_a_password_change_ends_the_users_console_sessions_everywhere(
    live_server: LiveServer,
) -> None:
    from tests.web.console.test_console_http import PASSWORD, client, csrf_of, sign_in

    base = live_server.url
    await live_server.platform.console_users.create_user("gail", "developer", PASSWORD)
    async with client() as here, client() as elsewhere:
        for s in (here, elsewhere):
            assert (await sign_in(s, base, "gail")).status == 303
            async with s.get(f"{base}/admin/v1/whoami") as r:
                assert r.status == 200
        async with here.get(f"{base}/console/account/password") as r:
            token = csrf_of(await r.text())
        async with here.post(f"{base}/console/account/password", allow_redirects=False, data={
                "current": PASSWORD, "new": "gails-new-pw-1", "repeat": "gails-new-pw-1",
                "csrf_token": token, "next": "/console/apps"}) as r:
            assert r.status == 303
        async with elsewhere.get(f"{base}/admin/v1/whoami") as r:
            assert r.status == 401  # the other browser's session ended
        async with here.get(f"{base}/admin/v1/whoami") as r:
            assert r.status == 200  # the session that changed it goes on


async def test_the_admin_api_revokes_runtime_tokens_for_admins_only(
    live_server: LiveServer,
) -> None:
    """POST /admin/v1/runtime-tokens/revoke (what `miniport user revoke` calls beside a running
    server): admins only; the user's older tokens are refused at once on this node."""
    p = live_server.platform
    token = p.auth.runtime_token("alice")
    developer = (await p.auth.create_key("api", "dev", "developer"))["key"]
    url = f"{live_server.url}/admin/v1/runtime-tokens/revoke"
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json={"user_id": "alice"},
                          headers={"Authorization": f"Bearer {developer}"}) as r:
            assert r.status == 403, await r.text()
        p.auth.identify(token)  # still valid
        admin = {"Authorization": f"Bearer {live_server.admin_key}"}
        async with s.post(url, json={"user_id": ""}, headers=admin) as r:
            body = await r.json()
            assert r.status == 422 and body["error"] == "invalid_input" and body["problems"]
        async with s.post(url, json={"user_id": "alice"}, headers=admin) as r:
            assert r.status == 200 and (await r.json())["user_id"] == "alice"
    with pytest.raises(Unauthorized, match="revoked"):
        p.auth.identify(token)


def stream_of(p: Platform, token: str) -> Any:
    """A subscription as a runtime's event stream makes it (its token's issue time with it)."""
    who = p.auth.identify(token, remember=False)
    return p.broker.subscribe(who.user_id, who.device_id, issued_at=who.issued_at)


async def test_a_revocation_ends_this_nodes_streams_of_the_tokens_at_once(
    platforms: Make, fake_clock: FakeClock,
) -> None:
    p = await platforms(clock=fake_clock)
    alice, bob = p.auth.runtime_token("alice"), p.auth.runtime_token("bob")
    streams = stream_of(p, alice), stream_of(p, bob)
    fake_clock.advance(10)
    await p.auth.revoke_runtime("alice", None, "test")
    assert streams[0].closed and streams[0].take() == [
        {"type": "unauthorized", "error": "unauthorized", "message": "runtime token revoked"}]
    assert not streams[1].closed


async def test_a_node_that_missed_the_word_ends_the_streams_at_its_next_read(
    platforms: Make, fake_clock: FakeClock,
) -> None:
    """Two nodes on one database that do not share a broker (the word is lost): the second
    ends its stream of a revoked token when it next reads the revocations, at a runtime's
    request or at its sweep at the latest."""
    first = await platforms(clock=fake_clock)
    second = await platforms(clock=fake_clock)
    token = first.auth.runtime_token("alice")
    stream = stream_of(second, token)
    fake_clock.advance(5)
    await first.auth.revoke_runtime("alice", None, "test")
    assert not stream.closed  # not heard of yet
    assert await second.stream_guard.sweep() == 0  # nothing expired; the revocation read
    assert stream.closed and stream.take()[0]["message"] == "runtime token revoked"


async def test_a_word_on_the_revocation_channel_makes_the_node_read_the_revocations(
    platforms: Make, fake_clock: FakeClock,
) -> None:
    """The word only makes the node read the database at once (however recent its last
    read): one forged, for tokens nobody revoked, ends nothing."""
    from miniport.services.stream_guard import REVOKED_CHANNEL

    first = await platforms(clock=fake_clock)
    second = await platforms(clock=fake_clock)
    alice, bob = first.auth.runtime_token("alice"), first.auth.runtime_token("bob")
    streams = stream_of(second, alice), stream_of(second, bob)
    fake_clock.advance(5)
    await second.auth.refresh_revocations()  # read just now: the poll would wait a second
    await second.broker.publish(REVOKED_CHANNEL, {"type": "revoked", "user_id": "bob"})
    await asyncio.sleep(0.1)
    assert not any(s.closed for s in streams)
    await first.auth.revoke_runtime("alice", None, "test")
    await second.broker.publish(REVOKED_CHANNEL, {"type": "revoked", "user_id": "alice"})

    async def ended() -> bool:
        return streams[0].closed

    await eventually(ended, timeout_s=5)
    assert not streams[1].closed
    with pytest.raises(Unauthorized, match="revoked"):
        second.auth.identify(alice)


async def test_a_stream_ends_when_its_token_expires(
    platforms: Make, fake_clock: FakeClock,
) -> None:
    from miniport.services.auth import RUNTIME_TOKEN_MAX_AGE_S

    p = await platforms(clock=fake_clock)
    early = stream_of(p, p.auth.runtime_token("alice", "phone"))
    fake_clock.advance(3600)
    later = stream_of(p, p.auth.runtime_token("alice", "tablet"))
    fake_clock.advance(RUNTIME_TOKEN_MAX_AGE_S - 3600)
    assert await p.stream_guard.sweep() == 0  # expires now: not yet past
    fake_clock.advance(1)
    assert await p.stream_guard.sweep() == 1
    assert early.closed and early.take()[0]["message"] == "runtime token expired"
    assert not later.closed


async def test_the_sweep_runs_while_runtime_streams_are_open(
    platforms: Make, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from miniport.services import node_watch

    monkeypatch.setattr(node_watch, "SWEEP_S", 0.01)
    p = await platforms(clock=fake_clock)
    swept: list[int] = []
    sweep = p.stream_guard.sweep

    async def counted() -> int:
        swept.append(1)
        return await sweep()

    monkeypatch.setattr(p.stream_guard, "sweep", counted)
    stream = stream_of(p, p.auth.runtime_token("alice"))
    p.stream_guard.watch()
    p.stream_guard.watch()  # one sweep task per node, however many streams open

    async def swept_thrice() -> bool:
        return len(swept) >= 3

    await eventually(swept_thrice, timeout_s=5)
    task = p.stream_guard._sweeper
    p.broker.unsubscribe(stream)
    assert task is not None
    await asyncio.wait_for(task, 5)  # no stream open: it stops


@pytest.mark.postgres
async def test_a_revocation_committed_after_a_later_one_is_still_learned(
    platforms: Make, fake_clock: FakeClock, pg_url: str
) -> None:
    """PostgreSQL numbers a revocation when it is inserted: one still uncommitted (another
    node revoking) when a later one was read was passed for good, and its revoked tokens
    went on working on this node."""
    import psycopg

    node = await platforms(clock=fake_clock, database_url=pg_url)
    alice = node.auth.runtime_token("alice")
    fake_clock.advance(5)
    with psycopg.connect(pg_url.replace("+psycopg", "")) as other:  # another node, mid-revoke
        other.execute(
            "INSERT INTO runtime_revocations (user_id, before, revoked_at, actor)"
            " VALUES ('alice', %s, %s, 'other-node')", (fake_clock.now(), fake_clock.now())
        )
        await node.auth.revoke_runtime("bob", None, "test")  # numbered after alice's, read
        other.commit()
    fake_clock.advance(1)
    await node.auth.refresh_revocations(force=True)
    with pytest.raises(Unauthorized, match="revoked"):
        node.auth.identify(alice)


def test_the_numbers_missed_are_read_again_for_a_while() -> None:
    from miniport.domain.revocations import REVOCATION_GAP_S, next_revocation_marks

    mark, gaps = next_revocation_marks(0, {}, [1, 2, 5], 100.0)
    assert (mark, gaps) == (5, {3: 100.0, 4: 100.0})
    mark, gaps = next_revocation_marks(mark, gaps, [3, 6], 110.0)
    assert (mark, gaps) == (6, {4: 100.0})
    assert next_revocation_marks(mark, gaps, [], 100.0 + REVOCATION_GAP_S) == (6, {})


async def test_revocations_not_read_while_the_database_is_away_keep_requests_going(
    platforms: Make, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poll came due during an outage: every runtime request, a launch written behind
    too, was a 503. The revocations known stay in force; a forced read still says so."""
    from miniport.errors import StateUnavailable

    p = await platforms(clock=fake_clock)
    token = p.auth.runtime_token("alice")
    await p.auth.revoke_runtime("bob", None, "test")

    def away(*args: Any) -> Any:
        raise StateUnavailable("the state database cannot be reached right now; try again")

    monkeypatch.setattr(p.auth.revocations, "runtime_since", away)
    fake_clock.advance(5)
    await p.auth.refresh_revocations()
    assert p.auth.identify(token).user_id == "alice"
    with pytest.raises(StateUnavailable):
        await p.auth.refresh_revocations(force=True)
