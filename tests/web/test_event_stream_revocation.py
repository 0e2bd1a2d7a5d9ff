"""A runtime event stream lives only as long as the token that opened it: once the user's tokens
are revoked, the streams they opened end (saying why), get none of the user's data pushed
after, and the token cannot open a stream again; a token's stream ends when it expires too.
(Across nodes through Redis: tests/events/test_redis_broker.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from miniport.domain.tokens import RuntimeIdentity, make_runtime_token
from miniport.events.broker import MemoryBroker
from miniport.services import node_watch
from miniport.services.auth import RUNTIME_TOKEN_MAX_AGE_S
from miniport.web.event_stream import run_stream
from tests.conftest import LiveServer
from tests.support.platforms import SSE, eventually

Live = Callable[..., Awaitable[LiveServer]]
EVENTS = "/runtime/v1/events"
REVOKE = "/admin/v1/runtime-tokens/revoke"
LONG = aiohttp.ClientTimeout(total=60)


async def test_a_revoked_tokens_open_stream_ends_before_the_users_next_push(
    live: Live, session: aiohttp.ClientSession,
) -> None:
    server = await live()
    p = server.platform
    token = p.auth.runtime_token("alice", "phone")
    async with session.get(f"{server.url}{EVENTS}", params={"access_token": token},
                           timeout=LONG) as stream:
        events = SSE(stream)
        assert (await events.next())[0] == "connected"
        async with session.post(f"{server.url}{REVOKE}", json={"user_id": "alice"},
                                headers={"Authorization": f"Bearer {server.admin_key}"}) as r:
            assert r.status == 200, await r.text()
        await p.broker.publish("alice", {"type": "backgroundFetchData", "fetchedData": "secret"})
        # the data does not arrive: the stream says why it ends, and ends
        assert await events.next(5) == ("unauthorized", {
            "type": "unauthorized", "error": "unauthorized", "message": "runtime token revoked"})
        with pytest.raises(EOFError):
            await events.next(5)

    async def let_go() -> bool:
        return p.broker.connected("alice") == []

    await eventually(let_go, timeout_s=5)
    async with session.get(f"{server.url}{EVENTS}", params={"access_token": token}) as again:
        assert again.status == 401
        assert (await again.json())["message"] == "runtime token revoked"


async def test_only_the_streams_of_tokens_issued_before_the_cutoff_end(
    live: Live, session: aiohttp.ClientSession,
) -> None:
    """``before``: the user's older tokens; a newer token's stream and other users' go on."""
    server = await live()
    p = server.platform
    now = int(time.time())
    old = make_runtime_token(p.auth.key, RuntimeIdentity("alice", "old-phone", now - 3600))
    new = p.auth.runtime_token("alice", "new-phone")
    bob = p.auth.runtime_token("bob", "phone")
    streams = [session.get(f"{server.url}{EVENTS}", params={"access_token": token},
                           timeout=LONG) for token in (old, new, bob)]
    async with streams[0] as s_old, streams[1] as s_new, streams[2] as s_bob:
        events = [SSE(s) for s in (s_old, s_new, s_bob)]
        for e in events:
            assert (await e.next())[0] == "connected"
        async with session.post(f"{server.url}{REVOKE}",
                                json={"user_id": "alice", "before": now - 60},
                                headers={"Authorization": f"Bearer {server.admin_key}"}) as r:
            assert r.status == 200, await r.text()
        assert (await events[0].next(5))[0] == "unauthorized"
        with pytest.raises(EOFError):
            await events[0].next(5)
        await p.broker.publish("alice", {"type": "a"})
        await p.broker.publish("bob", {"type": "b"})
        assert (await events[1].next(5))[0] == "a"
        assert (await events[2].next(5))[0] == "b"
    async with session.get(f"{server.url}{EVENTS}", params={"access_token": new},
                           timeout=LONG) as again:
        assert again.status == 200


async def test_a_tokens_stream_ends_once_the_token_expires(
    live: Live, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A token is checked when its stream opens: one opened just before it expires was kept
    open for as long as the client liked. The sweep (every keep-alive period) ends it."""
    monkeypatch.setattr(node_watch, "SWEEP_S", 0.2)
    server = await live()
    p = server.platform
    issued = int(time.time()) - RUNTIME_TOKEN_MAX_AGE_S + 2  # expires in a second or two
    token = make_runtime_token(p.auth.key, RuntimeIdentity("alice", "phone", issued))
    async with session.get(f"{server.url}{EVENTS}", params={"access_token": token},
                           timeout=LONG) as stream:
        events = SSE(stream)
        assert (await events.next())[0] == "connected"
        assert await events.next(10) == ("unauthorized", {
            "type": "unauthorized", "error": "unauthorized", "message": "runtime token expired"})
        with pytest.raises(EOFError):
            await events.next(5)
    async with session.get(f"{server.url}{EVENTS}", params={"access_token": token}) as again:
        assert again.status == 401
        assert (await again.json())["message"] == "runtime token expired"


async def test_a_stream_ended_before_its_response_started_ends_at_once() -> None:
    """Between subscribing and the response starting, the stream may be ended (its token
    revoked meanwhile): it is written its hello and why, then ends, rather than staying open
    unsubscribed from everything."""
    broker = MemoryBroker()
    sub = broker.subscribe("alice", "phone", issued_at=100)
    assert broker.end_streams("alice", 101, {"type": "unauthorized", "message": "why"}) == 1
    sent: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def send(message: Any) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    async def receive() -> dict[str, Any]:
        await done.wait()
        return {"type": "http.disconnect"}

    await asyncio.wait_for(run_stream(broker, sub, {"type": "connected"}, receive, send), 5)
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert body.startswith(b"event: connected\n") and b"event: unauthorized\n" in body
    assert sent[-1]["more_body"] is False and broker.connected("alice") == []
