"""The typed error hierarchy. Every error the program raises on purpose is a MiniportError with a
stable ``code`` (for the HTTP API and the CLI's --json output), an ``http_status``, a readable
``message`` and, where it has them, a list of ``problems`` (each a ``{path, message}``: where in
the input and what is wrong there). The web layer renders every one of them with one handler
(``web/deps.error_body``), the CLI with one function (``cli/common.fail``).

The tree (code, HTTP status)::

    MiniportError                   error                  400
    ├── InvalidInput                invalid_input          422
    │   ├── InvalidURL              invalid_url            422
    │   ├── BatchInvalid            invalid_input          422  an analytics batch as a whole
    │   ├── ReportQueryError        invalid_input          422  a malformed report query
    │   └── DefinitionsInvalid      invalid_definition     422  with every problem found
    ├── TooLarge                    too_large              413  a body over a size limit
    ├── NotFound                    not_found              404
    │   ├── TokenNotSet             token_not_set          404
    │   └── NoData                  no_data                404
    ├── Unauthorized                unauthorized           401
    ├── Forbidden                   forbidden              403
    ├── Conflict                    conflict               409  also a unique-key violation
    ├── ChangeNotConfirmable        change_not_confirmable 410
    ├── SchemaTooNew                schema_too_new         500  a database a newer version made
    ├── StorageFull                 storage_full           507  no room to write (a backup)
    └── Unavailable                 unavailable            503  "not now": retry, not a refusal
        ├── ServerNotRunning        server_not_running     503  Retry-After 10
        ├── StateUnavailable        state_unavailable      503  state database away; Retry-After 5
        └── AnalyticsUnavailable    analytics_unavailable  503  ClickHouse away; Retry-After 5

``TokenNotSet`` and ``NoData`` keep their own base (``MiniportError``) in code; they are drawn
under ``NotFound`` only because they share its status.

An error that means "not now, try again" (503; a 429 would too: the platform makes none) has a
``retry_after_s``, which the web layer sends as the answer's ``Retry-After`` header (integer
seconds): how long a client should wait before it tries again. The runtimes wait at least that
long (capped at their longest retry delay) and spread their retries beyond it with jitter, so
10,000 devices that failed at the same moment do not all come back at the same moment.
``AnalyticsUnavailable``: 5 s, about what a ClickHouse restart or a failover takes.
``StateUnavailable``: 5 s, as the state database (PostgreSQL) restarts or fails over; on
SQLite a write still locked out after the busy timeout (another process held the file).
``ServerNotRunning``: 10 s, about what a restart of ``miniport serve`` takes (the CLI raises it
when the server does not answer; no route answers with it today).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the input: where (``events[2].actions[0].element``; empty for the
    input as a whole) and what, in words."""

    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def join_problems(problems: Sequence[Problem]) -> str:
    """The problems as one line: ``path: message; path: message``."""
    return "; ".join(str(p) for p in problems)


class MiniportError(Exception):
    code = "error"
    http_status = 400
    retry_after_s: int | None = None  # sent as Retry-After (a 503 or 429 has one)

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.problems: list[Problem] = list(problems)

    def as_dict(self) -> dict[str, Any]:
        """``{"error": code, "message": ...[, "problems": [{path, message}, ...]]}``."""
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.problems:
            body["problems"] = [p.as_dict() for p in self.problems]
        return body


class InvalidInput(MiniportError):
    code = "invalid_input"
    http_status = 422


class TooLarge(MiniportError):
    """A request body over a limit: smaller requests are taken (a runtime splits its batch)."""

    code = "too_large"
    http_status = 413


class InvalidURL(InvalidInput):
    code = "invalid_url"


class BatchInvalid(InvalidInput):
    """An analytics batch that cannot be read as a whole; nothing of it is kept."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ReportQueryError(InvalidInput):
    """A report query (or one of its parts) is malformed or does not fit the app's fields."""


class DefinitionsInvalid(InvalidInput):
    """Analytics definitions that break rules; carries every problem found."""

    code = "invalid_definition"

    def __init__(self, errors: Sequence[Problem]) -> None:
        super().__init__(join_problems(errors) or "invalid definition", errors)

    @property
    def errors(self) -> list[Problem]:
        return self.problems


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


class StorageFull(MiniportError):
    """The server's disk has no room for what it was asked to write (a backup): nothing is
    left half-written; retrying will not help until room is made."""

    code = "storage_full"
    http_status = 507


class ChangeNotConfirmable(MiniportError):
    """A confirmation code that is unknown, used, or expired."""

    code = "change_not_confirmable"
    http_status = 410


class SchemaTooNew(MiniportError):
    """A database (the state database, the events store) at a schema revision this version
    does not know: a newer version made it. Nothing was changed; run the version that made it
    (``serve`` refuses to start with it, exit 2)."""

    code = "schema_too_new"
    http_status = 500


class TokenNotSet(MiniportError):
    code = "token_not_set"
    http_status = 404

    def __init__(self) -> None:
        super().__init__("token not set, maybe you should setBackgroundFetchToken first")


class NoData(MiniportError):
    code = "no_data"
    http_status = 404


class Unavailable(MiniportError):
    """Not an answer to the request but "not now": something it needs is away for the
    moment. A caller that reads errors as the user's fault (access gone, bad input) must
    tell these apart: catch ``Unavailable`` first."""

    code = "unavailable"
    http_status = 503
    retry_after_s = 5


class ServerNotRunning(Unavailable):
    code = "server_not_running"
    retry_after_s = 10


class StateUnavailable(Unavailable):
    """The state database cannot be reached (PostgreSQL restarting, a failover, its
    connections used up), on SQLite stayed locked, or a write kept losing to other
    transactions (deadlocks): nothing was done, retry (raised at the storage boundary,
    ``storage.db``)."""

    code = "state_unavailable"


class AnalyticsUnavailable(Unavailable):
    """The analytics event store (ClickHouse) cannot be reached, or is closed because the
    server is stopping (``analytics.group_commit.StoreClosed``): nothing was stored, retry."""

    code = "analytics_unavailable"
