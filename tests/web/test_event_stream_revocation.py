"""A runtime event stream lives only as long as the token that opened it: once the user's tokens
are revoked, the streams they opened end (saying why), get none of the user's data pushed
after, and the token cannot open a stream again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from tests.conftest import LiveServer
from tests.support.platforms import SSE

Live = Callable[..., Awaitable[LiveServer]]
EVENTS = "/runtime/v1/events"
REVOKE = "/admin/v1/runtime-tokens/revoke"
LONG = aiohttp.ClientTimeout(total=60)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.mark.xfail(strict=True, reason="an open stream outlives its token's revocation")
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
    assert p.broker.connected("alice") == []
    async with session.get(f"{server.url}{EVENTS}", params={"access_token": token}) as again:
        assert again.status == 401
        assert (await again.json())["message"] == "runtime token revoked"
