"""The outbound fetch client against real loopback servers: one distinct verdict per outcome,
the streamed body limit, and the address guard on every connection, redirects included.

Only 127.0.0.1, 127.0.0.2 and ::1 are ever connected to."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from miniport.domain.acceptance import Verdict
from miniport.domain.address_guard import AddressPolicy
from miniport.domain.requests import (
    Launch,
    OutboundRequest,
    build_periodic_request,
    build_prefetch_request,
)
from miniport.fetch.client import Fetcher, post_guarded
from miniport.verify import SIGNATURE_HEADER, verify_request
from tests.conftest import free_port
from tests.support.platforms import StartServer

KB = 1024
LIMIT = 256 * KB


@dataclass
class Probe:
    """What the test server saw."""

    hits: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    stream_done: asyncio.Event = field(default_factory=asyncio.Event)
    stream_sent: int = 0
    stream_disconnected: bool = False


STREAM_TOTAL = 64 * 1024 * KB  # what /stream would send to a client that read it all


def make_app(probe: Probe) -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/ok")
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="hello 你好", content_type="application/json",
                            headers={"ETag": '"v1"',
                                     "Last-Modified": "Thu, 01 Jan 2026 00:00:00 GMT"})

    @routes.get("/cond")
    async def cond(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"v1"' or "always304" in request.query:
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return web.Response(text="fresh", headers={"ETag": '"v1"'})

    @routes.get("/status/{code}")
    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="nope")

    @routes.get("/slow")
    async def slow(request: web.Request) -> web.Response:
        await asyncio.wait_for(probe.release.wait(), 30)
        return web.Response(text="late")

    @routes.get("/trickle")
    async def trickle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(300):
            if probe.release.is_set():
                break
            await resp.write(b"x")
            await asyncio.sleep(0.1)
        return resp

    @routes.get("/loop")
    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    @routes.get("/hop/{n}")
    async def hop(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n == 0:
            return web.Response(text="arrived")
        raise web.HTTPMovedPermanently(f"/hop/{n - 1}")

    @routes.get("/noloc")
    async def noloc(request: web.Request) -> web.Response:
        return web.Response(status=302)

    @routes.get("/to-ftp")
    async def to_ftp(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": "ftp://127.0.0.1/file"})

    @routes.get("/redirect")
    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": request.query["to"]})

    @routes.get("/stream")
    async def stream(request: web.Request) -> web.StreamResponse:
        """A chunked body with no Content-Length, far past the limit."""
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        chunk = b"x" * (16 * KB)
        try:
            while probe.stream_sent < STREAM_TOTAL:
                await resp.write(chunk)
                probe.stream_sent += len(chunk)
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            probe.stream_disconnected = True
        finally:
            probe.stream_done.set()
        return resp

    @routes.get("/declared")
    async def declared(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (LIMIT + 1), content_type="text/plain")

    @routes.get("/exact")
    async def exact(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        for _ in range(4):
            await resp.write(b"y" * (64 * KB))
        await resp.write_eof()
        return resp

    @routes.get("/bad-utf8")
    async def bad_utf8(request: web.Request) -> web.Response:
        return web.Response(body=b"ok\xff\xfe", content_type="text/plain")

    @routes.get("/png")
    async def png(request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG\r\n\x1a\n", content_type="image/png")

    @routes.get("/gbk")
    async def gbk(request: web.Request) -> web.Response:
        return web.Response(body="你好".encode("gbk"),
                            headers={"Content-Type": "text/plain; charset=gbk"})

    @routes.get("/set-cookie")
    async def set_cookie(request: web.Request) -> web.Response:
        resp = web.Response(text="for user a")
        resp.set_cookie("session", "user-a", path="/", max_age=3600)
        return resp

    @routes.get("/echo")
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"path_qs": request.path_qs, "headers": dict(request.headers)})

    app = web.Application()
    app.router.add_routes(routes)

    @web.middleware
    async def count(request: web.Request, handler):  # type: ignore[no-untyped-def]
        probe.hits.append(request.path_qs)
        return await handler(request)

    app.middlewares.append(count)
    return app


@pytest.fixture
async def probe() -> AsyncIterator[Probe]:
    p = Probe()
    yield p
    p.release.set()


@pytest.fixture
async def server(loopback: StartServer, probe: Probe) -> str:
    return await loopback(make_app(probe))


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    f = Fetcher(AddressPolicy.build(dev=True), max_body_bytes=LIMIT, max_redirects=3)
    await f.start()
    yield f
    await f.close()


@pytest.fixture
async def guarded() -> AsyncIterator[Fetcher]:
    """Production policy: no dev mode, nothing allow-listed."""
    f = Fetcher(AddressPolicy.build(dev=False), max_body_bytes=LIMIT)
    await f.start()
    yield f
    await f.close()


def get(url: str) -> OutboundRequest:
    return OutboundRequest(url=url)


async def test_a_text_body_is_cached_as_it_came(fetcher: Fetcher, server: str) -> None:
    result = await fetcher.fetch(get(server + "/ok"), timeout_s=5)
    assert result.verdict is Verdict.CACHED
    assert result.status == 200
    assert result.text == "hello 你好"
    assert result.bytes == len("hello 你好".encode())
    assert result.etag == '"v1"'
    assert result.last_modified == "Thu, 01 Jan 2026 00:00:00 GMT"
    assert result.error is None


async def test_conditional_get_answered_304_is_not_modified(fetcher: Fetcher, server: str) -> None:
    fresh = await fetcher.fetch(get(server + "/cond"), timeout_s=5)
    assert fresh.verdict is Verdict.CACHED and fresh.text == "fresh"
    again = await fetcher.fetch(
        OutboundRequest(url=server + "/cond", headers={"If-None-Match": '"v1"'}), timeout_s=5)
    assert again.verdict is Verdict.NOT_MODIFIED
    assert again.status == 304 and again.text is None and again.error is None


async def test_a_304_to_a_request_that_was_not_conditional_is_an_error(
    fetcher: Fetcher, server: str
) -> None:
    plain = await fetcher.fetch(get(server + "/cond?always304=1"), timeout_s=5)
    assert plain.verdict is Verdict.HTTP_ERROR and plain.status == 304
    assert plain.error == "HTTP 304"


@pytest.mark.parametrize("code", [400, 401, 404, 500, 503])
async def test_non_2xx_is_http_error(fetcher: Fetcher, server: str, code: int) -> None:
    result = await fetcher.fetch(get(f"{server}/status/{code}"), timeout_s=5)
    assert result.verdict is Verdict.HTTP_ERROR
    assert result.status == code
    assert result.error == f"HTTP {code}"
    assert result.text is None


async def test_a_server_that_does_not_answer_times_out(fetcher: Fetcher, server: str) -> None:
    result = await fetcher.fetch(get(server + "/slow"), timeout_s=0.3)
    assert result.verdict is Verdict.TIMEOUT
    assert "0.3 s" in (result.error or "")


async def test_the_timeout_covers_a_body_that_trickles(fetcher: Fetcher, server: str) -> None:
    result = await fetcher.fetch(get(server + "/trickle"), timeout_s=0.5)
    assert result.verdict is Verdict.TIMEOUT


async def test_redirects_are_followed_up_to_the_limit(fetcher: Fetcher, server: str) -> None:
    result = await fetcher.fetch(get(server + "/hop/3"), timeout_s=5)
    assert result.verdict is Verdict.CACHED and result.text == "arrived"
    assert result.redirects == [f"{server}/hop/{n}" for n in (2, 1, 0)]
    assert result.url == server + "/hop/0"


async def test_too_many_redirects(fetcher: Fetcher, server: str, probe: Probe) -> None:
    result = await fetcher.fetch(get(server + "/hop/4"), timeout_s=5)
    assert result.verdict is Verdict.TOO_MANY_REDIRECTS
    assert "more than 3 redirects" in (result.error or "")
    assert probe.hits == [f"/hop/{n}" for n in (4, 3, 2, 1)]  # stopped: /hop/0 never asked
    looping = await fetcher.fetch(get(server + "/loop"), timeout_s=5)
    assert looping.verdict is Verdict.TOO_MANY_REDIRECTS


async def test_a_redirect_without_location_is_a_bad_redirect(fetcher: Fetcher, server: str) -> None:
    result = await fetcher.fetch(get(server + "/noloc"), timeout_s=5)
    assert result.verdict is Verdict.BAD_REDIRECT
    assert result.status == 302
    assert "Location" in (result.error or "")


async def test_a_redirect_to_another_scheme_is_a_bad_redirect(
    fetcher: Fetcher, server: str,
) -> None:
    result = await fetcher.fetch(get(server + "/to-ftp"), timeout_s=5)
    assert result.verdict is Verdict.BAD_REDIRECT
    assert "ftp://" in (result.error or "")


async def test_a_chunked_body_past_the_limit_is_refused_while_streaming(
    fetcher: Fetcher, server: str, probe: Probe,
) -> None:
    result = await fetcher.fetch(get(server + "/stream"), timeout_s=20)
    assert result.verdict is Verdict.OVERSIZE
    assert result.text is None
    assert f"exceeds {LIMIT} bytes" in (result.error or "")
    # the client counted only a little past the limit before it stopped reading ...
    assert LIMIT < result.bytes < LIMIT + 1024 * KB
    # ... and hung up: the server's next writes failed long before it sent everything
    await asyncio.wait_for(probe.stream_done.wait(), 20)
    assert probe.stream_disconnected
    assert probe.stream_sent < STREAM_TOTAL // 2


async def test_a_declared_content_length_past_the_limit_is_refused_unread(
    fetcher: Fetcher, server: str,
) -> None:
    result = await fetcher.fetch(get(server + "/declared"), timeout_s=5)
    assert result.verdict is Verdict.OVERSIZE
    assert result.bytes == LIMIT + 1
    assert "Content-Length 262145" in (result.error or "")


async def test_a_body_of_exactly_the_limit_is_accepted(fetcher: Fetcher, server: str) -> None:
    result = await fetcher.fetch(get(server + "/exact"), timeout_s=5)
    assert result.verdict is Verdict.CACHED
    assert result.bytes == LIMIT and len(result.text or "") == LIMIT


@pytest.mark.parametrize(("path", "reason"), [("/bad-utf8", "not valid UTF-8"),
                                              ("/png", "'image/png' is not text"),
                                              ("/gbk", "charset 'gbk' is not UTF-8")])
async def test_bad_encoding(fetcher: Fetcher, server: str, path: str, reason: str) -> None:
    result = await fetcher.fetch(get(server + path), timeout_s=5)
    assert result.verdict is Verdict.BAD_ENCODING
    assert reason in (result.error or "")
    assert result.text is None and result.status == 200


async def test_a_closed_port_is_a_connection_error(fetcher: Fetcher) -> None:
    result = await fetcher.fetch(get(f"http://127.0.0.1:{free_port()}/x"), timeout_s=5)
    assert result.verdict is Verdict.CONNECTION_ERROR
    assert result.error


async def test_the_signed_request_arrives_byte_for_byte(fetcher: Fetcher, server: str) -> None:
    req = build_prefetch_request(
        base_url=server + "/echo?lang=zh_CN&sp=a%20b", appid="mpA", secret="sec",
        timestamp=1_767_225_600, launch=Launch("pages/a", "x=1&y=两", 1007), token="t+/=?&",
    )
    result = await fetcher.fetch(req, timeout_s=5)
    seen = json.loads(result.text or "{}")
    header = seen["headers"][SIGNATURE_HEADER]
    assert verify_request("sec", header, "GET", seen["path_qs"], now=1_767_225_600)


# --- the address guard: production policy, loopback targets only ---

@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_loopback_is_blocked_without_dev_mode(
    guarded: Fetcher, server: str, probe: Probe, host: str,
) -> None:
    port = server.rsplit(":", 1)[1]
    result = await guarded.fetch(get(f"http://{host}:{port}/ok"), timeout_s=5)
    assert result.verdict is Verdict.BLOCKED_ADDRESS
    assert "loopback" in (result.error or "")
    assert probe.hits == []  # no connection was made


async def test_ipv6_loopback_is_blocked_without_dev_mode(
    guarded: Fetcher, loopback: StartServer, probe: Probe,
) -> None:
    url = await loopback(make_app(probe), host="::1")
    result = await guarded.fetch(get(url + "/ok"), timeout_s=5)
    assert result.verdict is Verdict.BLOCKED_ADDRESS
    assert "loopback" in (result.error or "")
    assert probe.hits == []


async def test_dev_mode_reaches_every_loopback_form(
    fetcher: Fetcher, loopback: StartServer, probe: Probe,
) -> None:
    v4 = await loopback(make_app(probe))
    v6 = await loopback(make_app(probe), host="::1")
    port = v4.rsplit(":", 1)[1]
    for url in (v4, f"http://localhost:{port}", f"http://[::ffff:127.0.0.1]:{port}", v6):
        result = await fetcher.fetch(get(url + "/ok"), timeout_s=5)
        assert result.verdict is Verdict.CACHED, (url, result)


@pytest.mark.parametrize("blocked_host", ["::1", "127.0.0.2"])
async def test_a_redirect_from_an_allowed_target_to_a_blocked_one_is_refused(
    loopback: StartServer, blocked_host: str,
) -> None:
    first, second = Probe(), Probe()
    allowed = await loopback(make_app(first), host="127.0.0.1")
    blocked = await loopback(make_app(second), host=blocked_host)
    f = Fetcher(AddressPolicy.build(dev=False, allow=("127.0.0.1/32",)), max_body_bytes=LIMIT)
    try:
        ok = await f.fetch(get(allowed + "/ok"), timeout_s=5)
        assert ok.verdict is Verdict.CACHED  # the allow-listed address is reachable
        result = await f.fetch(get(f"{allowed}/redirect?to={blocked}/ok"), timeout_s=5)
    finally:
        await f.close()
    assert result.verdict is Verdict.BLOCKED_ADDRESS
    assert result.redirects == [blocked + "/ok"]
    assert "loopback" in (result.error or "")
    assert second.hits == []  # the redirect target was never contacted


async def test_a_redirect_to_a_name_that_resolves_to_a_blocked_address_is_refused(
    loopback: StartServer,
) -> None:
    first, second = Probe(), Probe()
    allowed = await loopback(make_app(first), host="127.0.0.2")
    target = await loopback(make_app(second), host="127.0.0.1")
    port = target.rsplit(":", 1)[1]
    f = Fetcher(AddressPolicy.build(dev=False, allow=("127.0.0.2/32",)), max_body_bytes=LIMIT)
    try:
        result = await f.fetch(get(f"{allowed}/redirect?to=http://localhost:{port}/ok"),
                               timeout_s=5)
    finally:
        await f.close()
    assert result.verdict is Verdict.BLOCKED_ADDRESS
    assert "localhost resolves to address 127.0.0.1 is loopback" in (result.error or "")
    assert first.hits and second.hits == []


async def test_a_cookie_one_fetch_was_given_is_never_sent_with_another(
    fetcher: Fetcher, server: str
) -> None:
    """The fetcher's session is shared by every user and app of the process: a cookie that a
    developer server set in answer to one user's fetch must not ride along with the next user's
    (by host name: an HTTP client's cookie jar keeps none for IP addresses)."""
    by_name = "http://localhost:" + server.rsplit(":", 1)[1]
    first = await fetcher.fetch(get(by_name + "/set-cookie"), timeout_s=5)
    assert first.verdict is Verdict.CACHED
    assert any(k.lower() == "set-cookie" for k, _ in first.headers)
    second = await fetcher.fetch(get(by_name + "/echo"), timeout_s=5)
    assert second.verdict is Verdict.CACHED
    seen = {k.lower(): v for k, v in json.loads(second.text or "{}")["headers"].items()}
    assert "cookie" not in seen


async def test_an_allow_listed_host_name_is_reachable(loopback: StartServer, probe: Probe) -> None:
    url = await loopback(make_app(probe))
    port = url.rsplit(":", 1)[1]
    f = Fetcher(AddressPolicy.build(dev=False, allow=("localhost",)),
                allowed_names=("localhost",), max_body_bytes=LIMIT)
    try:
        by_name = await f.fetch(get(f"http://localhost:{port}/ok"), timeout_s=5)
        by_ip = await f.fetch(get(f"http://127.0.0.1:{port}/ok"), timeout_s=5)
    finally:
        await f.close()
    assert by_name.verdict is Verdict.CACHED
    assert by_ip.verdict is Verdict.BLOCKED_ADDRESS  # the name is allowed, not the address


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f000001", "017700000001",
                                  "0177.0.0.1", "127.0.0.1.", "LOCALHOST", "localhost.",
                                  "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:127.0.0.1]"])
async def test_other_spellings_of_loopback_are_not_reached(
    guarded: Fetcher, server: str, probe: Probe, host: str,
) -> None:
    port = server.rsplit(":", 1)[1]
    result = await guarded.fetch(get(f"http://{host}:{port}/ok"), timeout_s=5)
    assert result.verdict in (Verdict.BLOCKED_ADDRESS, Verdict.CONNECTION_ERROR), result
    assert probe.hits == []


@pytest.mark.parametrize("authority", ["user@127.0.0.1", "user:pw@127.0.0.1",
                                       "example.com@127.0.0.1", "example.com\\@127.0.0.1",
                                       "[::ffff:127.0.0.1]"])
async def test_userinfo_and_escapes_cannot_hide_a_loopback_host(
    guarded: Fetcher, server: str, probe: Probe, authority: str,
) -> None:
    """The guard reads the URL with the parser the connection uses: whatever it is shown, the
    host dialled is the host checked, so none of these reach the loopback server."""
    port = server.rsplit(":", 1)[1]
    result = await guarded.fetch(get(f"http://{authority}:{port}/ok"), timeout_s=5)
    assert result.verdict in (Verdict.BLOCKED_ADDRESS, Verdict.CONNECTION_ERROR), result
    assert probe.hits == []


@pytest.mark.parametrize("form", ["127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1"])
async def test_loopback_written_in_a_non_canonical_form_is_blocked(
    guarded: Fetcher, server: str, probe: Probe, form: str,
) -> None:
    port = server.rsplit(":", 1)[1]
    result = await guarded.fetch(get(f"http://{form}:{port}/ok"), timeout_s=5)
    assert result.verdict is Verdict.BLOCKED_ADDRESS
    assert "non-canonical" in (result.error or "")
    assert probe.hits == []


async def redirected_elsewhere(loopback: StartServer) -> tuple[str, list[dict[str, str]]]:
    """A URL on 127.0.0.1 that redirects to another host (127.0.0.2), and the headers each hop
    received, in order."""
    seen: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text="moved here")

    app = web.Application()
    app.router.add_get("/final", record)
    other = await loopback(app, host="127.0.0.2")

    async def redirect(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        raise web.HTTPFound(other + "/final")

    hop = web.Application()
    hop.router.add_get("/go", redirect)
    return await loopback(hop, host="127.0.0.1") + "/go", seen


async def test_a_redirect_to_another_host_does_not_carry_the_signature(
    fetcher: Fetcher, loopback: StartServer,
) -> None:
    url, seen = await redirected_elsewhere(loopback)
    signed = OutboundRequest(url=url, headers={
        "X-Miniport-Signature": "t=1,v1=abc", "X-Miniport-Appid": "mpA", "User-Agent": "M"})
    result = await fetcher.fetch(signed, timeout_s=5)
    assert result.verdict is Verdict.CACHED
    assert seen[0]["X-Miniport-Signature"] == "t=1,v1=abc"
    assert "X-Miniport-Signature" not in seen[1] and "X-Miniport-Appid" not in seen[1]
    assert seen[1]["User-Agent"] == "M"


async def test_a_redirect_to_another_host_does_not_carry_the_apps_own_headers(
    fetcher: Fetcher, loopback: StartServer,
) -> None:
    """The app's headers (an API key for its own server, shown only masked) are for the
    configured host: a redirect elsewhere (a CDN, an open redirect) must not receive them."""
    url, seen = await redirected_elsewhere(loopback)
    request = build_periodic_request(
        base_url=url, appid="mpA", secret="s", token="tok", timestamp=1,
        headers={"X-Api-Key": "key-123", "authorization": "Bearer abc"},
    )
    result = await fetcher.fetch(request, timeout_s=5)
    assert result.verdict is Verdict.CACHED
    assert seen[0]["X-Api-Key"] == "key-123" and seen[0]["Authorization"] == "Bearer abc"
    assert "X-Api-Key" not in seen[1] and "Authorization" not in seen[1]
    assert seen[1]["User-Agent"] == "Miniport-Fetcher/0.1"


async def test_a_webhook_answer_is_judged_by_its_status_without_reading_its_body(
    fetcher: Fetcher, loopback: StartServer, probe: Probe,
) -> None:
    """post_guarded read the whole answer into memory before judging it: a webhook endpoint
    answering 200 with an endless (or huge) body held the memory and ended as a timeout."""

    async def endless(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        chunk = b"x" * (64 * KB)
        try:
            while not probe.release.is_set() and probe.stream_sent < STREAM_TOTAL:
                await resp.write(chunk)
                probe.stream_sent += len(chunk)
        except (ConnectionError, RuntimeError):
            probe.stream_disconnected = True
        return resp

    app = web.Application()
    app.router.add_post("/hook", endless)
    url = await loopback(app)
    outcome = await post_guarded(fetcher, url + "/hook", b"{}", {}, timeout_s=2)
    assert outcome == "sent"
    assert probe.stream_sent < STREAM_TOTAL


@pytest.mark.parametrize(
    "location", ["http://a.example/q", "HTTP://a.example/q", "Http://b.example/", "hTTp:/q"]
)
def test_a_redirect_from_https_down_to_http_is_refused_however_the_scheme_is_written(
    location: str,
) -> None:
    """The scheme is case-insensitive: ``Location: HTTP://...`` took an https fetch down to
    plain http (the downgrade check compared the raw text with ``http:``)."""
    fetcher = Fetcher(AddressPolicy.build(dev=False))
    problem = fetcher._redirect_problem("https://a.example/p", location, 0)
    assert problem is not None and problem[0] is Verdict.BAD_REDIRECT
    assert "down to http" in problem[1]


@pytest.mark.parametrize(
    "location",
    ["http://[::1", "http://a.example:99999/", "http://a..b/", "http://ex%E4mple.com/",
     "//-a.example/", "http://" + "a" * 64 + ".example/", "http://a_b%00.example/",
     "http://数据.example/"],
)
def test_a_malformed_redirect_location_is_a_bad_redirect(location: str) -> None:
    """Checked without a connection or a name lookup: a Location that does not parse, or
    whose host is no host name, is the developer server's fault (it was logged as a
    connection error, after asking the resolver about the name). A host that is not ASCII is
    not turned into its xn-- form (IDNA maps full-width digits to an address), so it is one."""
    fetcher = Fetcher(AddressPolicy.build(dev=False))
    problem = fetcher._redirect_problem("http://a.example/p", location, 0)
    assert problem is not None and problem[0] is Verdict.BAD_REDIRECT, problem


@pytest.mark.parametrize(
    "location", ["http://b.example./x", "http://xn--exmple-cua.example/", "http://[::1]:8080/",
                 "/relative", "http://_srv.a-b.example:8443/"],
)
def test_well_formed_redirect_hosts_pass_the_syntax_check(location: str) -> None:
    fetcher = Fetcher(AddressPolicy.build(dev=False))
    assert fetcher._redirect_problem("http://a.example/p", location, 0) is None


def test_an_answer_header_that_is_not_utf8_is_shown_as_its_bytes() -> None:
    """aiohttp gives such bytes as lone surrogates, which JSON (fetch-now's answer) cannot
    carry."""
    import orjson

    from miniport.fetch.client import FetchResult

    raw = b'"v1-\xe9"'.decode("utf-8", "surrogateescape")
    result = FetchResult(Verdict.CACHED, "http://a.example/", headers=(("ETag", raw),))
    assert result.shown()["headers"] == [["ETag", '"v1-é"']]
    orjson.dumps(result.shown())


def test_a_redirect_from_http_to_https_is_followed() -> None:
    fetcher = Fetcher(AddressPolicy.build(dev=False))
    assert fetcher._redirect_problem("http://a.example/p", "HTTPS://a.example/q", 0) is None


@pytest.mark.parametrize(
    ("location", "path", "query"),
    [("/数据?city=北京", "/数据", {"city": "北京"}), ("/a b?q=x y", "/a b", {"q": "x y"}),
     ("/a%20b?q=%E5%8C%97", "/a b", {"q": "北"})],
)
async def test_a_redirect_to_a_non_ascii_or_spaced_location_is_followed(
    fetcher: Fetcher, loopback: StartServer, location: str, path: str, query: dict[str, str],
) -> None:
    """A Location with Chinese characters or a space (as browsers follow it) was sent raw on
    the request line: the developer's server answered 400 to a redirect of its own."""
    seen: list[tuple[str, dict[str, str]]] = []

    async def handle(request: web.Request) -> web.Response:
        if request.path == "/go":
            return web.Response(status=302, headers={"Location": location})
        seen.append((request.path, dict(request.query)))
        return web.Response(text="arrived")

    url = await loopback(handle)
    result = await fetcher.fetch(get(url + "/go"), timeout_s=5)
    assert result.verdict is Verdict.CACHED, result.error
    assert seen == [(path, query)]


@pytest.mark.parametrize("host", ["１２７.０.０.２", "127。0。0。2", "①②⑦.0.0.2", "127．0．0．2"])
async def test_a_redirect_to_another_spelling_of_a_blocked_address_is_not_followed_there(
    loopback: StartServer, host: str,
) -> None:
    """Redirect targets are %-encoded when not plain ASCII: a host spelled with full-width or
    circled digits or ideographic dots must not become 127.0.0.2 on the way (only 127.0.0.1
    is allow-listed here)."""
    reached: list[str] = []

    async def other(request: web.Request) -> web.Response:
        reached.append(request.path)
        return web.Response(text="must not be reached")

    target = await loopback(other, host="127.0.0.2")
    port = target.rsplit(":", 1)[1]

    async def hop(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": f"http://{host}:{port}/x"})

    first = await loopback(hop, host="127.0.0.1")
    policy = AddressPolicy.build(dev=False, allow=("127.0.0.1/32",))
    f = Fetcher(policy, max_body_bytes=LIMIT)
    await f.start()
    try:
        result = await f.fetch(get(first + "/go"), timeout_s=5)
    finally:
        await f.close()
    # a %-encoded host is no host name: refused as a malformed redirect, before any lookup
    assert result.verdict in (Verdict.BLOCKED_ADDRESS, Verdict.BAD_REDIRECT)
    assert reached == []


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_that_is_not_what_its_content_encoding_says_is_bad_encoding(
    fetcher: Fetcher, loopback: StartServer, encoding: str,
) -> None:
    """A server that labels plain JSON ``Content-Encoding: gzip`` answered fine: the verdict
    was connection_error (counted as a network failure by health and alerts)."""

    async def mislabelled(request: web.Request) -> web.Response:
        return web.Response(body=b'{"plain": "json"}', headers={
            "Content-Encoding": encoding, "Content-Type": "application/json"})

    url = await loopback(mislabelled)
    result = await fetcher.fetch(get(url + "/data"), timeout_s=5)
    assert result.verdict is Verdict.BAD_ENCODING
    assert result.status == 200 and result.text is None
    assert f"Content-Encoding {encoding}" in (result.error or "")


async def test_a_content_encoding_the_client_cannot_decode_is_bad_encoding(
    fetcher: Fetcher, loopback: StartServer,
) -> None:
    """An answer in an encoding the client cannot decode was a connection_error (aiohttp
    refuses it at the headers as a 400): a wrong answer of the server, not a network failure."""

    async def unrequested(request: web.Request) -> web.Response:
        assert "compress" not in request.headers.get("Accept-Encoding", "")
        return web.Response(body=b"\x1b\x03\x00compressed?", headers={
            "Content-Encoding": "compress", "Content-Type": "text/plain"})

    url = await loopback(unrequested)
    result = await fetcher.fetch(get(url + "/data"), timeout_s=5)
    assert result.verdict is Verdict.BAD_ENCODING, result.error
    assert result.status == 200
    assert "Content-Encoding" in (result.error or "") and result.text is None


def _brotli(data: bytes) -> bytes:
    import brotli

    return bytes(brotli.compress(data))


def _zstd(data: bytes) -> bytes:
    from backports import zstd

    return zstd.compress(data)


ENCODERS = {"gzip": gzip.compress, "br": _brotli, "zstd": _zstd}


@pytest.mark.parametrize("encoding", ["br", "zstd"])
async def test_br_and_zstd_are_offered_and_decoded(
    fetcher: Fetcher, loopback: StartServer, encoding: str,
) -> None:
    async def compressed(request: web.Request) -> web.Response:
        assert encoding in request.headers["Accept-Encoding"]
        return web.Response(body=ENCODERS[encoding]("数据".encode()), headers={
            "Content-Encoding": encoding, "Content-Type": "text/plain"})

    url = await loopback(compressed)
    result = await fetcher.fetch(get(url + "/data"), timeout_s=5)
    assert result.verdict is Verdict.CACHED and result.text == "数据"


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip"])
@pytest.mark.parametrize("status", [500, 302])
async def test_an_error_or_redirect_answer_keeps_its_status_whatever_its_encoding(
    loopback: StartServer, encoding: str, status: int,
) -> None:
    """A 500 (or a redirect) sent br-encoded, as a CDN's error page may be, was bad_encoding
    without a status (aiohttp, without a br decoder, refused it at its headers): the fetch log
    and the host's health must see the server's answer."""

    async def failing(request: web.Request) -> web.Response:
        return web.Response(status=status, body=ENCODERS[encoding](b"<h1>oops</h1>"), headers={
            "Content-Encoding": encoding, "Content-Type": "text/html", "Location": "/x"})

    url = await loopback(failing)
    f = Fetcher(AddressPolicy.build(dev=True), max_body_bytes=LIMIT, max_redirects=0)
    await f.start()
    try:
        result = await f.fetch(get(url + "/data"), timeout_s=5)
    finally:
        await f.close()
    expected = Verdict.HTTP_ERROR if status == 500 else Verdict.TOO_MANY_REDIRECTS
    assert result.verdict is expected and result.status == status, result


@pytest.mark.parametrize("encoding", ["br", "zstd"])
async def test_a_body_that_is_not_its_br_or_zstd_encoding_is_bad_encoding(
    fetcher: Fetcher, loopback: StartServer, encoding: str,
) -> None:
    async def mislabelled(request: web.Request) -> web.Response:
        return web.Response(body=b'{"plain": "json"}', headers={
            "Content-Encoding": encoding, "Content-Type": "application/json"})

    url = await loopback(mislabelled)
    result = await fetcher.fetch(get(url + "/data"), timeout_s=5)
    assert result.verdict is Verdict.BAD_ENCODING and result.status == 200, result
    assert result.text is None


async def test_a_compressed_body_is_cached_decompressed(
    fetcher: Fetcher, loopback: StartServer,
) -> None:
    async def compressed(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress("数据".encode()), headers={
            "Content-Encoding": "gzip", "Content-Type": "text/plain"})

    url = await loopback(compressed)
    result = await fetcher.fetch(get(url + "/data"), timeout_s=5)
    assert result.verdict is Verdict.CACHED and result.text == "数据"


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
async def test_a_small_compressed_body_that_expands_past_the_limit_is_oversize(
    fetcher: Fetcher, loopback: StartServer, encoding: str,
) -> None:
    """The limit is on the decompressed body: 50 KB of gzip expanding to 64 MB is refused once
    the expanded text passes 256 KB (aiohttp decompresses in bounded steps), never held. So
    for br and zstd, whose bombs are smaller still."""
    bomb = ENCODERS[encoding](b"{" * (64 * 1024 * KB))
    assert len(bomb) < LIMIT

    async def compressed(request: web.Request) -> web.Response:
        return web.Response(body=bomb, headers={
            "Content-Encoding": encoding, "Content-Type": "application/json"})

    url = await loopback(compressed)
    result = await fetcher.fetch(get(url + "/data"), timeout_s=5)
    assert result.verdict is Verdict.OVERSIZE and result.text is None
    assert LIMIT < result.bytes <= 4 * LIMIT


async def test_a_redirect_within_the_developers_server_is_signed_for_its_own_target(
    fetcher: Fetcher, loopback: StartServer,
) -> None:
    """A server that redirects /bg to /bg/ (a framework adding its slash) and checks the
    signature: the second request carried the first target's signature, and was refused."""
    seen: list[tuple[str, bool]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ok = verify_request("sec", request.headers.get(SIGNATURE_HEADER), "GET",
                            request.raw_path, now=1_767_225_600)  # fmt: skip
        seen.append((request.path, ok))
        if request.path == "/bg":
            raise web.HTTPMovedPermanently(location="/bg/?" + request.query_string)
        return web.Response(text="ok" if ok else "bad signature", status=200 if ok else 401)

    base = await loopback(handler)
    for build in (build_periodic_request, build_prefetch_request):
        seen.clear()
        extra: dict[str, Any] = {"token": "tok"}
        if build is build_prefetch_request:
            extra["launch"] = Launch("pages/a", "", 1001)
        request = build(base_url=base + "/bg", appid="mpA", secret="sec",
                        timestamp=1_767_225_600, **extra)  # fmt: skip
        result = await fetcher.fetch(request, timeout_s=5)
        assert seen == [("/bg", True), ("/bg/", True)], build
        assert result.verdict is Verdict.CACHED and result.text == "ok"


async def test_a_url_with_non_ascii_path_goes_out_percent_encoded_and_signed_so(
    fetcher: Fetcher, loopback: StartServer,
) -> None:
    """The URL validator takes https://例え.jp/数据 (tests/domain/test_urls.py); it went out
    byte for byte as UTF-8, which servers refuse on the request line (aiohttp: 400)."""
    seen: list[tuple[str, bool]] = []

    async def handler(request: web.Request) -> web.Response:
        ok = verify_request("sec", request.headers.get(SIGNATURE_HEADER), "GET",
                            request.raw_path, now=1_767_225_600)  # fmt: skip
        seen.append((request.raw_path.split("?")[0], ok))
        return web.Response(text=request.path + " " + request.query["city"])

    base = await loopback(handler)
    request = build_periodic_request(base_url=base + "/数据?city=北京", appid="mpA",
                                     secret="sec", token="tok", timestamp=1_767_225_600)
    result = await fetcher.fetch(request, timeout_s=5)
    assert result.verdict is Verdict.CACHED and result.text == "/数据 北京"
    assert seen == [("/%E6%95%B0%E6%8D%AE", True)]


@pytest.mark.parametrize("host", ["::00001", "::ffff:127.1", " ::1", "1:2"])
def test_a_host_with_a_colon_that_is_no_address_is_refused_before_any_lookup(host: str) -> None:
    """aiohttp takes any host with a colon for a literal address and skips the guarded
    resolver, so such a name would reach the system resolver unchecked."""
    assert "not a valid IPv6 address" in (
        Fetcher(AddressPolicy.build(dev=True))._check_host("https", host) or "")
