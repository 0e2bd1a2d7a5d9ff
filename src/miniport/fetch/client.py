"""The outbound HTTP client: aiohttp, streamed bodies, manual redirects, and the address guard
applied to the resolved address of every connection.

This module is the transport boundary: it turns an OutboundRequest into a FetchResult whose
``verdict`` names the outcome. It never raises for anything the developer's server does."""

from __future__ import annotations

import functools
import ipaddress
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

from ..domain.acceptance import BodyLimit, BodyTooLarge, Verdict, decode_body, status_verdict
from ..domain.address_guard import AddressPolicy, looks_like_ipv4
from ..domain.requests import OutboundRequest, redact_url
from ..verify import APPID_HEADER, SIGNATURE_HEADER

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

# aiohttp and yarl are imported when the first session opens (``Fetcher.start``), not with this
# module: the platform (and so every local CLI command) imports it without fetching anything.

REDIRECT_STATUSES = {301, 302, 303, 307, 308}


@dataclass(frozen=True)
class FetchResult:
    verdict: Verdict
    url: str
    status: int | None = None
    text: str | None = None
    bytes: int = 0
    latency_ms: float = 0.0
    error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    redirects: list[str] = field(default_factory=list)
    headers: tuple[tuple[str, str], ...] = ()  # the final answer's, for the devtools

    def shown(self) -> dict[str, Any]:
        """What fetch-now shows: the log's fields plus the answer's headers and whole body."""
        headers = [[name, _shown_header(value)] for name, value in self.headers]
        return {**self.as_dict(), "headers": headers, "body": self.text}

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "status": self.status,
            "bytes": self.bytes,
            "latency_ms": round(self.latency_ms, 3),
            "error": self.error,
            "url": self.url,
            "redirects": self.redirects,
        }


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


# what a URL may hold as it is (reserved characters and existing %-escapes); anything else in a
# redirect target (a space, Chinese text, ...) is %-encoded as a browser would send it
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"


def _requoted(url: str) -> str:
    """``url`` as it may go on the request line (the client sends URLs byte for byte)."""
    if url.isascii() and " " not in url:
        return url
    return quote(url, safe=_URL_SAFE, errors="surrogateescape")


def _target(url: str) -> str:
    """The request target (path?query) of ``url``, as the server reads it and the signature
    covers it."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _for_another_origin(headers: dict[str, str], own: frozenset[str]) -> dict[str, str]:
    """The headers without what is meant for the configured host only: the platform's signature
    and appid, and the app's own headers (``own``: an API key, say, shown only masked)."""
    drop = {SIGNATURE_HEADER.lower(), APPID_HEADER.lower(), *(name.lower() for name in own)}
    return {k: v for k, v in headers.items() if k.lower() not in drop}


# the Content-Encodings aiohttp decodes, and offers in Accept-Encoding: br and zstd thanks to
# the Brotli and backports.zstd packages (pinned dependencies; without them aiohttp refuses such
# an answer at its headers, its status lost: see _unknown_coding)
_DECODED = frozenset({"", "identity", "gzip", "deflate", "br", "zstd"})
_UNKNOWN_CODING = (
    "the answer's Content-Encoding cannot be decoded (the request offered gzip, deflate, br "
    "and zstd)"
)


def _unknown_coding(exc: BaseException) -> bool:
    """Whether the answer was refused at its headers for a Content-Encoding the client has no
    decoder for (br, zstd, ...): a wrong answer of the developer's server, not a network
    failure. aiohttp raises it as a 400 ClientResponseError caused (two levels down) by a
    ContentEncodingError."""
    from aiohttp.http_exceptions import ContentEncodingError

    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, ContentEncodingError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


_INT32_MAX = 2**31 - 1
# a host name as resolvers take it (yarl gives IDNs as punycode): dot-separated labels of
# letters, digits, '-' and '_', 1-63 characters each, 253 in all, an optional final dot
_HOST_NAME = re.compile(
    r"(?=.{1,253}\.?$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
    r"(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?",
    re.IGNORECASE,
)


def _shown_header(value: str) -> str:
    """A header value as text that JSON can carry: aiohttp gives bytes that are not UTF-8
    as lone surrogates, shown here as the Latin-1 characters of those bytes."""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("latin-1")


def _validator(value: str | None) -> str | None:
    """An ETag or Last-Modified worth keeping: printable ASCII. RFC 9110 lets an ETag hold
    other bytes (obs-text), which aiohttp hands over as lone surrogates that can neither be
    stored nor sent back: such a validator is dropped, so the next fetch is a full one."""
    if value is None or not value.isascii() or not value.isprintable():
        return None
    return value


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class Fetcher:
    """One aiohttp session for the process; call ``start`` inside the event loop."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        allowed_names: tuple[str, ...] = (),
        max_body_bytes: int = 256 * 1024,
        max_redirects: int = 3,
        limit: int = 1000,
    ) -> None:
        self.policy = policy
        self.allowed_names = frozenset(
            n.lower() for n in allowed_names if _literal_ip(n) is None and "/" not in n
        )
        self.max_body_bytes = max_body_bytes
        self.max_redirects = max_redirects
        self.limit = limit
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            import aiohttp

            from .guarded import GuardedResolver

            connector = aiohttp.TCPConnector(
                limit=self.limit,
                limit_per_host=0,
                ttl_dns_cache=30,
                resolver=GuardedResolver(self.policy, self.allowed_names),
            )
            # No cookie jar: the session is shared by every user and app of the process, so a
            # cookie one developer server set for one user would ride along with the next
            # user's fetch to that host (and the jar's filtering is work on every request).
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=True,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _check_target(self, url: URL) -> str | None:
        """Why this URL may not be requested, or None. Names are checked at resolution.

        Read with yarl, the parser aiohttp connects with (``raw_host`` is the very host it
        dials; a literal IP never reaches the resolver): a guard that parsed the URL another
        way could be shown one host while the connection goes to another."""
        host = url.raw_host
        return self._check_host(url.scheme, host.lower() if host else host)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - bounded, and the fetcher lives as long
    def _check_host(self, scheme: str, host: str | None) -> str | None:
        if scheme not in ("http", "https") or not host:
            return f"not an http(s) URL (scheme {scheme!r}, host {host!r})"
        ip = _literal_ip(host)
        if ip is not None:
            return None if self.policy.permits(ip) else self.policy.reason(ip)
        if ":" in host:  # aiohttp takes it for an address and skips the guarded resolver
            return f"host {host!r} is not a valid IPv6 address"
        if looks_like_ipv4(host):  # not canonical: refuse rather than trust a parser's reading
            return f"host {host!r} is an IPv4 address in a non-canonical form"
        return None

    def _redirect_problem(
        self, url: str, location: str | None, hops: int
    ) -> tuple[Verdict, str] | None:
        """Why a redirect from ``url`` to ``location`` after ``hops`` others is not followed, or
        None (the next hop is then ``urljoin(url, location)``)."""
        if not location:
            return Verdict.BAD_REDIRECT, "redirect without a Location header"
        if hops >= self.max_redirects:
            return Verdict.TOO_MANY_REDIRECTS, f"more than {self.max_redirects} redirects"
        from yarl import URL

        try:  # as the next hop will be read: a Location that cannot be is the server's fault
            hop = URL(_requoted(urljoin(url, location)), encoded=True)
            host, _ = hop.raw_host or "", hop.port
        except ValueError as exc:  # UnicodeError is one
            return Verdict.BAD_REDIRECT, f"malformed redirect Location {location!r}: {exc}"
        if host and _literal_ip(host) is None and not _HOST_NAME.fullmatch(host):
            # not a name any resolver could answer for: refused before a lookup is made
            return Verdict.BAD_REDIRECT, (
                f"redirect to a malformed host name (an internationalised one must be written"
                f" in its xn-- form): {location!r}"
            )
        scheme = hop.scheme  # lowercased: HTTP:// is http
        if scheme not in ("http", "https"):
            return Verdict.BAD_REDIRECT, f"redirect to a non-http URL: {location!r}"
        if urlsplit(url).scheme == "https" and scheme == "http":
            return Verdict.BAD_REDIRECT, f"redirect from https down to http: {location!r}"
        return None

    async def _read_answer(
        self, resp: aiohttp.ClientResponse, conditional: bool
    ) -> tuple[Verdict, dict[str, Any]]:
        """The verdict on a final (not a redirect) answer, and what the result carries besides
        the status: the body is read only up to ``max_body_bytes`` and must decode as text."""
        bad = status_verdict(resp.status, conditional=conditional)
        if bad is not None:
            return bad, {"error": None if bad is Verdict.NOT_MODIFIED else f"HTTP {resp.status}"}
        coding = resp.headers.get("Content-Encoding", "").strip().lower()
        if coding not in _DECODED:  # aiohttp hands such a body over as it came: not the data
            error = f"the answer's Content-Encoding {coding!r} is not one the client decodes"
            return Verdict.BAD_ENCODING, {"error": error}
        declared = resp.content_length
        if declared is not None and declared > self.max_body_bytes:
            error = f"Content-Length {declared} exceeds {self.max_body_bytes} bytes"
            # the log's bytes column is 32-bit on PostgreSQL: a larger claim is in the error
            return Verdict.OVERSIZE, {"bytes": min(declared, _INT32_MAX), "error": error}
        import aiohttp  # loaded by start()
        from aiohttp.http_exceptions import ContentEncodingError

        limit = BodyLimit(self.max_body_bytes)
        try:
            async for chunk in resp.content.iter_any():
                limit.feed(chunk)
        except BodyTooLarge as exc:
            return Verdict.OVERSIZE, {"bytes": limit.size, "error": str(exc)}
        except aiohttp.ClientPayloadError as exc:
            if not isinstance(exc.__cause__, ContentEncodingError):
                raise  # cut short: a connection error
            error = f"the body does not decode as its Content-Encoding {coding}"
            return Verdict.BAD_ENCODING, {"bytes": limit.size, "error": error}
        decoded = decode_body(limit.body(), resp.headers.get("Content-Type"))
        if decoded.text is None:
            return Verdict.BAD_ENCODING, {"bytes": limit.size, "error": decoded.error}
        return Verdict.CACHED, {
            "text": decoded.text,
            "bytes": limit.size,
            "etag": _validator(resp.headers.get("ETag")),
            "last_modified": _validator(resp.headers.get("Last-Modified")),
        }

    async def fetch(self, request: OutboundRequest, *, timeout_s: float) -> FetchResult:
        import aiohttp  # loaded by start(): a lookup in sys.modules
        from yarl import URL

        from .guarded import BlockedAddress

        if self._session is None:
            await self.start()
        assert self._session is not None
        started = time.perf_counter()
        url = request.url
        redirects: list[str] = []

        def result(verdict: Verdict, **kw: Any) -> FetchResult:
            if kw.get("error"):  # aiohttp's messages quote the URL, with the user's token
                kw["error"] = redact_url(kw["error"])
            return FetchResult(
                verdict,
                url,
                latency_ms=(time.perf_counter() - started) * 1000,
                redirects=redirects,
                **kw,
            )

        # aiohttp's own per-request timeout is cheaper than asyncio.timeout; each hop gets what is
        # left of the total, so the limit covers the whole redirect chain and the body.
        deadline = started + timeout_s
        headers = request.headers
        conditional = "If-None-Match" in request.headers or "If-Modified-Since" in request.headers
        try:
            while True:
                # encoded=True: send the URL byte for byte as built (and as signed)
                hop = URL(url, encoded=True)
                blocked = self._check_target(hop)
                if blocked:
                    return result(Verdict.BLOCKED_ADDRESS, error=blocked)
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise TimeoutError
                async with self._session.get(
                    hop,
                    headers=headers,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=left),
                ) as resp:
                    if resp.status in REDIRECT_STATUSES:
                        location = resp.headers.get("Location")
                        problem = self._redirect_problem(url, location, len(redirects))
                        if problem is not None:
                            return result(problem[0], status=resp.status, error=problem[1])
                        target = _requoted(urljoin(url, location))
                        if _origin(target) != _origin(url):  # signature and app headers
                            headers = _for_another_origin(headers, request.secret_headers)
                        elif request.resign is not None and SIGNATURE_HEADER in headers:
                            headers = {**headers, SIGNATURE_HEADER: request.resign(_target(target))}
                        redirects.append(target)
                        url = target
                        continue
                    verdict, details = await self._read_answer(resp, conditional)
                    answer = tuple(resp.headers.items())
                    return result(verdict, status=resp.status, headers=answer, **details)
        except TimeoutError:
            return result(Verdict.TIMEOUT, error=f"no complete answer within {timeout_s:g} s")
        except BlockedAddress as exc:
            return result(Verdict.BLOCKED_ADDRESS, error=str(exc))
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, BlockedAddress):
                return result(Verdict.BLOCKED_ADDRESS, error=str(exc.os_error))
            return result(Verdict.CONNECTION_ERROR, error=str(exc))
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, BlockedAddress):
                return result(Verdict.BLOCKED_ADDRESS, error=str(cause))
            if _unknown_coding(exc):
                return result(Verdict.BAD_ENCODING, error=_UNKNOWN_CODING)
            return result(Verdict.CONNECTION_ERROR, error=f"{type(exc).__name__}: {exc}")


async def post_guarded(
    fetcher: Fetcher, url: str, body: bytes, headers: dict[str, str], timeout_s: float
) -> str:
    """POST ``body`` to ``url`` through the fetcher's guarded session (the same address guard
    as data URLs; no redirect followed): "sent", or why not."""
    import aiohttp
    from yarl import URL

    from .guarded import BlockedAddress

    try:
        target = URL(url, encoded=True)
    except ValueError as exc:
        return f"bad_url: {exc}"
    blocked = fetcher._check_target(target)
    if blocked:
        return f"blocked_address: {blocked}"
    if fetcher._session is None:
        await fetcher.start()
    assert fetcher._session is not None
    try:
        async with fetcher._session.post(
            target,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            # the status is the answer: the body is never read (an endless or huge one would be
            # held whole in memory); leaving the block closes the connection if it is unread
            return "sent" if 200 <= resp.status < 300 else f"http_error {resp.status}"
    except BlockedAddress as exc:
        return f"blocked_address: {exc}"
    except TimeoutError:
        return "timeout"
    except aiohttp.ClientError as exc:
        return f"connection_error: {exc.__class__.__name__}"
