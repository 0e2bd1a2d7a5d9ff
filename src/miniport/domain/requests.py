"""Building the request the platform sends to the developer's server (pure).

Query parameters follow SPEC section 1's table and are merged into the URL's own: a configured
parameter of the same name is replaced, the others are kept in their order."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..verify import APPID_HEADER, SIGNATURE_HEADER, sign


@dataclass(frozen=True)
class OutboundRequest:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "GET"

    def as_dict(self) -> dict[str, object]:
        return {"method": self.method, "url": self.url, "headers": dict(self.headers)}


@dataclass(frozen=True)
class Launch:
    path: str = ""
    query: str = ""
    scene: int = 1001


@dataclass(frozen=True)
class Validators:
    """Conditional GET validators from the last successful periodic response."""

    etag: str | None = None
    last_modified: str | None = None


def merge_query(url: str, params: list[tuple[str, str]]) -> str:
    parts = urlsplit(url)
    ours = {name for name, _ in params}
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ours]
    return urlunsplit(parts._replace(query=urlencode(kept + params)))


def request_target(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _signed(appid: str, secret: str, url: str, timestamp: int) -> dict[str, str]:
    return {
        APPID_HEADER: appid,
        SIGNATURE_HEADER: sign(secret, timestamp, "GET", request_target(url)),
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
) -> OutboundRequest:
    url = merge_query(
        base_url, [("appid", appid), ("token", token), ("timestamp", str(timestamp))]
    )
    headers = _signed(appid, secret, url, timestamp)
    if validators is not None:
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
    return OutboundRequest(url=url, headers=headers)


def build_prefetch_request(
    *,
    base_url: str,
    appid: str,
    secret: str,
    timestamp: int,
    launch: Launch,
    token: str | None = None,
    code: str | None = None,
) -> OutboundRequest:
    """``token`` when the user has one, else a one-time login ``code``: never both."""
    if (token is None) == (code is None):
        raise ValueError("a pre-fetch request carries exactly one of token and code")
    params = [("appid", appid)]
    params.append(("token", token) if token is not None else ("code", code or ""))
    params += [
        ("timestamp", str(timestamp)),
        ("path", launch.path),
        ("query", launch.query),
        ("scene", str(launch.scene)),
    ]
    url = merge_query(base_url, params)
    return OutboundRequest(url=url, headers=_signed(appid, secret, url, timestamp))
