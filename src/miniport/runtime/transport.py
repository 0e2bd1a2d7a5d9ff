"""What the runtime's analytics needs from the network, and the error every runtime call
raises. :class:`~miniport.runtime.client.RuntimeClient` owns the one implementation (its HTTP
calls with the device's token); :class:`~miniport.runtime.analytics.RuntimeAnalytics` only
knows this interface, so the two modules do not import each other.

Invariant: a transport either returns the server's JSON answer or raises
:class:`RuntimeAPIError` (``status`` 0 for a network failure); a timeout may surface as
:class:`TimeoutError`."""

from __future__ import annotations

from typing import Any, Protocol


class RuntimeAPIError(Exception):
    def __init__(self, err_msg: str, status: int, code: str | None = None) -> None:
        super().__init__(err_msg)
        self.err_msg = err_msg
        self.status = status
        self.code = code


class AnalyticsTransport(Protocol):
    """The two runtime API calls of custom analytics, for one app and one device."""

    async def get_config(self) -> dict[str, Any]:
        """``GET .../analytics/config``: the configuration in force for this device."""
        ...

    async def send_events(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST .../analytics/events`` with ``{"sent_at", "events"}``; the server's verdict."""
        ...


__all__ = ["AnalyticsTransport", "RuntimeAPIError"]
