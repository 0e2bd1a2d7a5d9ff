"""Request bodies are limited before anything parses them (raw sockets: the client must be
free to send what a well-behaved HTTP library would not)."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.conftest import LiveServer


async def exchange(url: str, head: bytes, chunks: list[bytes]) -> bytes:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head)
        for chunk in chunks:
            writer.write(chunk)
            try:
                await writer.drain()
            except ConnectionError:
                break
        return await asyncio.wait_for(reader.read(4096), 10)
    finally:
        writer.close()


async def test_a_declared_oversized_body_is_refused_before_auth(live_server: LiveServer) -> None:
    declared = live_server.platform.settings.max_request_bytes + 1
    head = (
        f"POST /runtime/v1/apps/x/launch HTTP/1.1\r\nHost: t\r\n"
        f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    ).encode()
    answer = await exchange(live_server.url, head, [])
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"too_large"' in answer


async def test_a_chunked_oversized_body_is_refused_while_it_streams(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture,
) -> None:
    """413 while the body streams, on an endpoint that reads the body by hand and on ones that
    FastAPI parses, and no traceback in the server log: the refusal is not an error."""
    uvicorn_log = logging.getLogger("uvicorn.error")  # it does not propagate to the root
    uvicorn_log.addHandler(caplog.handler)
    try:
        await _refuse_chunked_bodies(live_server, caplog)
    finally:
        uvicorn_log.removeHandler(caplog.handler)


async def _refuse_chunked_bodies(live_server: LiveServer, caplog: pytest.LogCaptureFixture
                                 ) -> None:
    limit = live_server.platform.settings.max_request_bytes
    token = live_server.platform.auth.runtime_token("u")  # signed in: the body is then read
    app = await live_server.platform.apps.create("shop", "test")
    piece = b" " * 65536
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    for path, bearer in [
        ("/runtime/v1/apps/x/launch", token),
        (f"/runtime/v1/apps/{app.appid}/background-fetch/token", token),
        (f"/runtime/v1/apps/{app.appid}/analytics/events", token),
        ("/admin/v1/apps", live_server.admin_key),
    ]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {bearer}"
            "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        with caplog.at_level(logging.INFO):
            answer = await exchange(live_server.url, head, [chunk] * (limit // len(piece) + 4))
            await asyncio.sleep(0.2)  # let the server finish the request it refused
        assert answer.startswith(b"HTTP/1.1 413"), (path, answer[:200])
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
        assert not errors, (path, [r.getMessage() for r in errors])


async def test_deeply_nested_json_in_a_batch_is_a_clear_error(live_server: LiveServer) -> None:
    p = live_server.platform
    app = await p.apps.create("deep", "test")
    token = p.auth.runtime_token("u")
    body = b"[" * 100_000 + b"]" * 100_000
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{live_server.url}/runtime/v1/apps/{app.appid}/analytics/events",
            data=body,
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        assert resp.status == 422
        assert (await resp.json())["errMsg"].startswith("reportAnalytics:fail invalid JSON")


async def test_the_data_read_is_inside_the_limit_and_a_bodiless_get_is_served(
    live_server: LiveServer,
) -> None:
    """The data read (a route ahead of the routers) is refused like any endpoint when its
    declared body is too large; the same GET without a body passes the limit untouched."""
    token = live_server.platform.auth.runtime_token("u")
    app = await live_server.platform.apps.create("shop", "test")
    path = f"/runtime/v1/apps/{app.appid}/background-fetch/data"
    declared = live_server.platform.settings.max_request_bytes + 1
    base = f"GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n"
    answer = await exchange(live_server.url, (base + f"Content-Length: {declared}\r\n\r\n"
                                              ).encode(), [])  # fmt: skip
    assert answer.startswith(b"HTTP/1.1 413") and b'"too_large"' in answer
    answer = await exchange(live_server.url, (base + "Connection: close\r\n\r\n").encode(), [])
    assert answer.startswith(b"HTTP/1.1 404") and b"getBackgroundFetchData:fail" in answer


@pytest.mark.parametrize(
    ("headers", "limit", "here"),
    [
        ([(b"content-length", b"10")], 10, True),
        ([(b"content-length", b"11")], 10, False),  # over the limit: the framework's 413
        ([], 10, False),  # no length: the framework's way
        ([(b"transfer-encoding", b"chunked")], 10, False),
        ([(b"content-length", b"5"), (b"transfer-encoding", b"chunked")], 10, False),
        ([(b"content-length", b"5"), (b"content-length", b"5")], 10, False),
        ([(b"content-length", b"-5")], 10, False),
        ([(b"content-length", b"5"), (b"origin", b"https://x")], 10, False),  # CORS
    ],
)
def test_which_bodies_are_read_ahead_of_the_body_limit(
    headers: list[tuple[bytes, bytes]], limit: int, here: bool
) -> None:
    from miniport.web.app import declared_body

    assert declared_body(headers, limit) is here


async def test_a_batch_that_stops_short_of_its_length_is_no_error(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture,
) -> None:
    """A batch read ahead of the middleware whose client leaves before sending the body it
    declared: nothing stored, nothing logged as an error; then a whole batch is served."""
    app = await live_server.platform.apps.create("shop", "test")
    token = live_server.platform.auth.runtime_token("u")
    path = f"/runtime/v1/apps/{app.appid}/analytics/events"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n"
    ).encode()
    parts = urlsplit(live_server.url)
    with caplog.at_level(logging.INFO):
        _, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(head + b'{"events": [')
        await writer.drain()
        writer.close()
        await asyncio.sleep(0.3)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]
    body = b'{"events": []}'
    whole = head.replace(b"Content-Length: 500", f"Content-Length: {len(body)}".encode())
    answer = await exchange(live_server.url, whole, [body])
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b'"accepted":0' in answer.replace(b" ", b"")
