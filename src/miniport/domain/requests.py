"""Building the request the platform sends to the developer's server (pure).

Query parameters follow SPEC section 1's table and are merged into the URL's own: a configured
parameter of the same name is replaced, the others are kept in their order."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit

from ..verify import APPID_HEADER, SIGNATURE_HEADER, sign
from .fetch_settings import mask


@dataclass(frozen=True)
class OutboundRequest:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "GET"
    secret_headers: frozenset[str] = frozenset()  # the app's own headers: shown masked
    # the signature of another target (path?query) of the same origin, as of the same moment:
    # a redirect within the developer's server is signed for what it asks, not for the first
    # target (which its check refused)
    resign: Callable[[str], str] | None = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict[str, object]:
        """What devtools show: the app's header values masked, never in the clear."""
        headers = {k: mask(v) if k in self.secret_headers else v for k, v in self.headers.items()}
        return {"method": self.method, "url": self.url, "headers": headers}


@dataclass(frozen=True)
class Launch:
    path: str = ""
    query: str = ""
    scene: int = 1001
    version: str = ""  # the mini-program's version, "" when unknown
    env_version: str = ""  # develop | trial | release, "" when unknown
    platform: str = ""  # ios | android | devtools ..., "" when unknown (not sent to developers)


@dataclass(frozen=True)
class Validators:
    """Conditional GET validators from the last successful periodic response."""

    etag: str | None = None
    last_modified: str | None = None


@functools.lru_cache(maxsize=4096)
def _split_base(url: str, names: tuple[str, ...]) -> tuple[str, str, str]:
    """(scheme://host, path, the URL's own query minus ``names``), cached: every fetch of an app
    starts from the same configured URL. A fragment is never sent."""
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in names]
    netloc, path = parts.netloc, parts.path or "/"
    if not (netloc.isascii() and path.isascii()):
        netloc, path = _on_the_wire(parts.scheme, netloc, path)
    return f"{parts.scheme}://{netloc}", path, urlencode(kept)


def _on_the_wire(scheme: str, netloc: str, path: str) -> tuple[str, str]:
    """An internationalised host in its IDNA (``xn--``) form and a path percent-encoded, as the
    request goes on the wire and is signed: sent as typed (UTF-8 bytes on the request line, a
    Unicode Host header), every fetch of such a URL was refused by the developer's server."""
    from yarl import URL  # rare, and not on a CLI command's import path

    wire = URL(f"{scheme}://{netloc}{path}")
    return wire.raw_authority, wire.raw_path


_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def _q(value: str) -> str:
    return value if _SAFE.issuperset(value) else quote_plus(value)


def merge_target(
    url: str, params: list[tuple[str, str]], drop: tuple[str, ...] = ()
) -> tuple[str, str]:
    """The full URL and its request target (path?query) with ``params`` merged in (replacing
    the URL's own parameters of the same names) and the URL's ``drop`` parameters removed."""
    origin, path, kept = _split_base(url, tuple(name for name, _ in params) + drop)
    ours = "&".join(f"{_q(k)}={_q(v)}" for k, v in params)
    target = f"{path}?{kept}&{ours}" if kept else f"{path}?{ours}"
    return origin + target, target


def merge_query(url: str, params: list[tuple[str, str]]) -> str:
    return merge_target(url, params)[0]


_SECRET_PARAM = re.compile(r"([?&](?:token|code)=)[^&#]*")  # no look-behind: scans for ? and &


def redact_url(url: str) -> str:
    """The URL with the user's ``token`` and login ``code`` masked: what the fetch log keeps, so
    reading the log (a viewer may) does not hand out users' credentials."""
    return _SECRET_PARAM.sub(r"\1***", url)


def request_target(url: str) -> str:
    """Path and query as sent on the request line (what the signature covers)."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _signed(
    appid: str, secret: str, target: str, timestamp: int, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The app's own headers first: the platform's (signature, appid) always win."""
    return {
        **(extra or {}),
        APPID_HEADER: appid,
        SIGNATURE_HEADER: sign(secret, timestamp, "GET", target),
        "User-Agent": "Miniport-Fetcher/0.1",
    }


def build_periodic_request(
    *,
    base_url: str,
    appid: str,
    secret: str,
    token: str,
    timestamp: int,
    validators: Validators | None = None,
    headers: dict[str, str] | None = None,
    version: str = "",
    env_version: str = "",
) -> OutboundRequest:
    """``headers``: the app's own request headers (sent as they are, shown masked)."""
    extra = headers or {}
    # the URL's own ``code`` would sit beside the token: token and code are never both
    url, target = merge_target(
        base_url,
        [
            ("appid", appid),
            ("token", token),
            ("timestamp", str(timestamp)),
            ("version", version),
            ("envVersion", env_version),
        ],
        drop=("code",),
    )
    headers = _signed(appid, secret, target, timestamp, extra)
    if validators is not None:
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
    return OutboundRequest(
        url=url,
        headers=headers,
        secret_headers=frozenset(extra),
        resign=functools.partial(sign, secret, timestamp, "GET"),
    )


def build_prefetch_request(
    *,
    base_url: str,
    appid: str,
    secret: str,
    timestamp: int,
    launch: Launch,
    token: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> OutboundRequest:
    """``token`` when the user has one, else a one-time login ``code``: never both.
    ``headers``: the app's own request headers (sent as they are, shown masked)."""
    if (token is None) == (code is None):
        raise ValueError("a pre-fetch request carries exactly one of token and code")
    params = [("appid", appid)]
    params.append(("token", token) if token is not None else ("code", code or ""))
    params += [
        ("timestamp", str(timestamp)),
        ("path", launch.path),
        ("query", launch.query),
        ("scene", str(launch.scene)),
        ("version", launch.version),
        ("envVersion", launch.env_version),
    ]
    url, target = merge_target(
        base_url, params, drop=("code",) if token is not None else ("token",)
    )
    extra = headers or {}
    return OutboundRequest(
        url=url,
        headers=_signed(appid, secret, target, timestamp, extra),
        secret_headers=frozenset(extra),
        resign=functools.partial(sign, secret, timestamp, "GET"),
    )
