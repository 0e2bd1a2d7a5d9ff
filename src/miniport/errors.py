"""The typed error hierarchy. Every error a user can cause is a MiniportError with a stable
``code`` (for the HTTP API and the CLI's --json output) and a readable message."""

from __future__ import annotations


class MiniportError(Exception):
    code = "error"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(MiniportError):
    code = "invalid_input"
    http_status = 422


class InvalidURL(InvalidInput):
    code = "invalid_url"


class NotFound(MiniportError):
    code = "not_found"
    http_status = 404


class Unauthorized(MiniportError):
    code = "unauthorized"
    http_status = 401


class Forbidden(MiniportError):
    code = "forbidden"
    http_status = 403


class Conflict(MiniportError):
    code = "conflict"
    http_status = 409


class ChangeNotConfirmable(MiniportError):
    """A confirmation code that is unknown, used, or expired."""

    code = "change_not_confirmable"
    http_status = 410


class TokenNotSet(MiniportError):
    code = "token_not_set"
    http_status = 404

    def __init__(self) -> None:
        super().__init__("token not set, maybe you should setBackgroundFetchToken first")


class NoData(MiniportError):
    code = "no_data"
    http_status = 404


class ServerNotRunning(MiniportError):
    code = "server_not_running"
    http_status = 503


class AnalyticsUnavailable(MiniportError):
    """The analytics event store (ClickHouse) cannot be reached: nothing was stored, retry."""

    code = "analytics_unavailable"
    http_status = 503
