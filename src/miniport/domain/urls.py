"""Rules for the developer's data URLs (pure): ONE rule for both kinds, checked when the URL is
set, with the same message whichever kind or path (CLI, admin API, console) sets it. A URL that
passes reads as what is fetched: no white space, control, bidirectional-override, zero-width or
other invisible character."""

from __future__ import annotations

import ipaddress
import unicodedata
from typing import Literal
from urllib.parse import urlsplit

from ..errors import InvalidURL
from .address_guard import AddressPolicy, looks_like_ipv4

FetchKind = Literal["periodic", "pre"]
FETCH_KINDS: tuple[FetchKind, ...] = ("periodic", "pre")
MAX_URL_LENGTH = 2048
# control, format (bidi overrides, isolates, zero-width), separators, surrogate, private, unassigned
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def is_loopback_host(host: str) -> bool:
    host = host.rstrip(".")  # "localhost." is the same name, fully qualified
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def shown_url(url: str) -> str:
    """The URL as text that reads as what is fetched: every invisible, control or
    direction-changing character written as ``<U+202E>`` (for URLs stored before such
    characters were refused, and anything else displayed)."""
    return "".join(
        f"<U+{ord(ch):04X}>"
        if unicodedata.category(ch) in _INVISIBLE or (ch.isspace() and ch != " ")
        else ch
        for ch in url
    )


def validate_fetch_url(
    kind: str, url: str, *, dev: bool, policy: AddressPolicy | None = None
) -> str:
    """Return the URL if it may be configured as a ``kind`` URL, else raise InvalidURL.

    Both kinds: https, except in development mode where http is accepted for loopback hosts
    (as WeChat's tools accept a local server); a literal IP address (or ``localhost``) must be
    one the fetcher may reach (``policy``, by default that of ``dev`` with no allow-list), so a
    URL the fetcher would refuse is refused now, not at its first fetch."""
    if kind not in FETCH_KINDS:
        raise InvalidURL(f"unknown kind {kind!r}: use periodic or pre")
    if not isinstance(url, str) or not url.strip():
        raise InvalidURL("the URL is empty")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise InvalidURL(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise InvalidURL("the URL contains white space or control characters")
    hidden = next((ch for ch in url if unicodedata.category(ch) in _INVISIBLE), None)
    if hidden is not None:
        # bidirectional overrides (U+202E), zero-width and other format characters make the URL
        # read differently from what is fetched, to the admin who confirms it
        raise InvalidURL(
            f"the URL contains an invisible or direction-changing character (U+{ord(hidden):04X})"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"the URL cannot be parsed: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidURL(f"scheme {parts.scheme or '(none)'!r} is not allowed: use https")
    host = parts.hostname
    if not host:
        raise InvalidURL("the URL has no host")
    if parts.username or parts.password:
        raise InvalidURL("credentials in the URL are not allowed")
    if parts.fragment:
        raise InvalidURL("a fragment (#...) is not sent to a server; remove it")
    if port == 0:
        raise InvalidURL("port 0 is not allowed")
    if ":" in host and not _is_ip(host):  # [::00001], [::ffff:127.1]: no name, no address
        raise InvalidURL(f"the host {host!r} is not a valid IPv6 address")
    policy = policy or AddressPolicy.build(dev=dev)
    if (
        parts.scheme != "https"
        and not (dev and is_loopback_host(host))
        and not _listed(host, policy)
    ):
        raise InvalidURL(
            "a data URL must use https (http is accepted only for loopback in dev mode "
            "and for allow-listed addresses)"
        )
    _check_address(host, policy)
    return url


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _listed(host: str, policy: AddressPolicy) -> bool:
    """An address the operator allow-listed (their network: http is their choice there)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in policy.allow)


def _check_address(host: str, policy: AddressPolicy) -> None:
    """A literal address the fetcher would refuse (private, metadata, loopback outside dev
    mode, …); host names are checked when they resolve, at each fetch."""
    bare = host.rstrip(".")  # "localhost." is the same name, fully qualified
    address = "127.0.0.1" if bare == "localhost" or bare.endswith(".localhost") else host
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        if looks_like_ipv4(host):  # 127.1, 0x7f.0.0.1, 2130706433: the fetcher refuses them all
            raise InvalidURL(
                f"host {host!r} is an IPv4 address in a non-canonical form: write it as a.b.c.d"
            ) from None
        return
    if not policy.permits(ip):
        raise InvalidURL(
            f"{policy.reason(ip)}: a data URL must reach a public address "
            "(loopback in dev mode, private networks only when allow-listed)"
        )
