"""Who is asking, for every console page: :func:`page` is the dependency that turns the
session into a :class:`Ctx` (or raises :class:`SignInNeeded`, :class:`PasswordChangeNeeded`,
:class:`Refused`, which the console application turns into a redirect or a 403 page).

Invariants: every page and form action depends on one of the ``*Page`` aliases below, so the
role is checked on the server through ``deps.require`` (whose session resolver also checks the
CSRF token of every POST); a user with a one-time password reaches only the password page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from ....errors import Forbidden, Unauthorized
from ....services.auth import Principal
from ...deps import require
from ..auth import Session
from ..render import BASE, here, state_of


class SignInNeeded(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class PasswordChangeNeeded(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class Refused(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


@dataclass(frozen=True)
class Ctx:
    request: Request
    session: Session
    who: Principal

    def can(self, role: str) -> bool:
        return self.who.can(role)


def safe_next(value: str | None, default: str = f"{BASE}/apps") -> str:
    """Only a local path: never another site (``//host``, ``/\\host``) or a scheme."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    # no control characters at all: browsers drop tabs and newlines from a URL, which would
    # turn "/\t/evil.example" into "//evil.example" wherever the value is used unquoted
    if any(ch == "\\" or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return default
    return value


def page(
    role: str = "viewer", *, password_change: bool = False
) -> Callable[[Request], Awaitable[Ctx]]:
    """A page or form action for ``role`` and above (checked by ``deps.require``)."""
    guard = require(role)

    async def dependency(request: Request) -> Ctx:
        state = state_of(request)
        session = await state.auth.session(request)
        if session is None:
            raise SignInNeeded(here(request) if request.method == "GET" else f"{BASE}/apps")
        if password_change:  # the one page a user with a one-time password may use
            if request.method != "GET" and not await state.auth.csrf_ok(request, session.csrf):
                raise Refused("missing or wrong CSRF token; reload the page and try again")
            return Ctx(request, session, session.user.principal)
        if session.user.must_change_password:
            raise PasswordChangeNeeded(here(request))
        try:
            who = await guard(request)
        except Forbidden as exc:
            raise Refused(exc.message) from exc
        except Unauthorized as exc:
            raise SignInNeeded(here(request)) from exc
        return Ctx(request, session, who)

    return dependency


ViewerPage = Annotated[Ctx, Depends(page("viewer"))]
DeveloperPage = Annotated[Ctx, Depends(page("developer"))]
AdminPage = Annotated[Ctx, Depends(page("admin"))]
AnyUserPage = Annotated[Ctx, Depends(page("viewer", password_change=True))]


async def app_context(ctx: Ctx, appid: str, tab: str) -> dict[str, Any]:
    """What every tab of an app's pages shows: the app (a 404 page when unknown) and the tab."""
    p = state_of(ctx.request).platform
    app_row = await p.apps.get(appid)
    return {"app": app_row, "tab": tab, "can": ctx.can}


__all__ = [
    "AdminPage",
    "AnyUserPage",
    "Ctx",
    "DeveloperPage",
    "PasswordChangeNeeded",
    "Refused",
    "SignInNeeded",
    "ViewerPage",
    "app_context",
    "page",
    "safe_next",
]
