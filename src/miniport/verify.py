"""Verify that a request came from Miniport: a helper for Python developer servers.

Every fetch carries the header ``X-Miniport-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>``
is HMAC-SHA256, keyed with the app secret, of ``"<t>\\n<METHOD>\\n<path?query>"`` (the request
target exactly as sent: path plus the raw query string). A server should check the signature and
refuse a timestamp older than a few minutes, so a captured request cannot be replayed later::

    from miniport.verify import verify_request
    ok = verify_request(secret, request.headers["X-Miniport-Signature"], "GET", request.path_qs)

The module uses only the standard library, so it can be copied into any project.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Miniport-Signature"
APPID_HEADER = "X-Miniport-Appid"


def sign(secret: str, timestamp: int, method: str, target: str) -> str:
    message = f"{timestamp}\n{method.upper()}\n{target}".encode()
    # not hmac.digest: that one-shot releases the interpreter lock around a microsecond of work,
    # and a thread that gives the lock up waits for it again while another thread runs Python
    # (up to the 5 ms switch interval): in the fetch engine, whose recorder thread runs beside
    # the requests, each signature then stalled the event loop
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def parse_signature(header: str) -> tuple[int, str] | None:
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        return int(parts["t"]), parts["v1"]
    except (KeyError, ValueError):
        return None


def verify_request(
    secret: str,
    header: str | None,
    method: str,
    target: str,
    *,
    now: float | None = None,
    tolerance_s: int = 300,
) -> bool:
    """True when ``header`` is a valid signature of this request made within ``tolerance_s``."""
    if not header:
        return False
    parsed = parse_signature(header)
    if parsed is None:
        return False
    timestamp, _ = parsed
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, method, target)
    return hmac.compare_digest(expected.encode(), header.strip().encode())
