"""What the runtime's analytics needs from the network, and the error every runtime call
raises. :class:`~miniport.runtime.client.RuntimeClient` owns the one implementation (its HTTP
calls with the device's token); :class:`~miniport.runtime.analytics.RuntimeAnalytics` only
knows this interface, so the two modules do not import each other.

Invariant: a transport either returns the server's JSON answer or raises
:class:`RuntimeAPIError` (``status`` 0 for a network failure; ``retry_after_s`` what the
answer's ``Retry-After`` header asked for, see :func:`retry_after_seconds`); a timeout may
surface as :class:`TimeoutError`."""

from __future__ import annotations

import re
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

_DELTA_SECONDS = re.compile(r"[0-9]+")


class RuntimeAPIError(Exception):
    def __init__(
        self, err_msg: str, status: int, code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:  # fmt: skip
        super().__init__(err_msg)
        self.err_msg = err_msg
        self.status = status
        self.code = code
        self.retry_after_s = retry_after_s  # the answer's Retry-After, in seconds from now


def retry_after_seconds(value: str | None, date: str | None, now: float) -> float | None:
    """How long a ``Retry-After`` header asks the client to wait, in seconds (None: no header,
    or one that cannot be read). Its two forms: delta-seconds (``"5"``), and an HTTP-date,
    counted from the answer's own ``Date`` header when it has a readable one (the server's
    clock: a phone's own clock may be off by hours), else from ``now`` (Unix seconds); a date
    already past is 0. Not capped here: the caller caps it at its longest retry delay."""
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)  # inf for an absurd number of digits: capped by the caller
    at = _http_date(text)
    if at is None:
        return None
    sent = _http_date(date.strip()) if date else None
    return max(0.0, at - (now if sent is None else sent))


def _http_date(text: str) -> float | None:
    """An HTTP-date (``Wed, 21 Oct 2015 07:28:00 GMT``, or its obsolete forms) as Unix
    seconds, or None."""
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # "-0000": UTC, of unknown origin
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


class AnalyticsTransport(Protocol):
    """The two runtime API calls of custom analytics, for one app and one device."""

    async def get_config(self) -> dict[str, Any]:
        """``GET .../analytics/config``: the configuration in force for this device."""
        ...

    async def send_events(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST .../analytics/events`` with ``{"sent_at", "events"}``; the server's verdict."""
        ...


__all__ = ["AnalyticsTransport", "RuntimeAPIError", "retry_after_seconds"]
