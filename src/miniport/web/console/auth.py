"""The console's sign-in over HTTP: the session cookie, the CSRF token, and the admin API's
session resolver. Users, passwords, throttling and sessions themselves are
``services.console_users`` (``platform.console_users``).

- The session id is sent only in an HttpOnly cookie; each session has its own CSRF token. Every
  state-changing request made with the session cookie must carry it, as the ``X-CSRF-Token``
  header (fetch) or the ``csrf_token`` form field.
- The cookie is ``SameSite=Lax``, not ``Strict``: an admin opens a confirmation link from a
  phone's camera app, a navigation that browsers may treat as cross-site; under ``Strict`` the
  cookie would not be sent and a signed-in admin would be asked to sign in again. ``Lax`` still
  withholds the cookie from cross-site POSTs, and the CSRF token covers the rest.
- ``Secure`` is set whenever the console is served over https.
- Until a user with a one-time password chooses a new one, every page leads to the password
  form and the admin API refuses the session.
"""

from __future__ import annotations

import secrets

from fastapi import Request

from ...errors import Forbidden
from ...platform import Platform
from ...services.auth import Principal
from ...services.console_users import SESSION_TTL_S as SESSION_TTL_S
from ...services.console_users import Session as Session

SESSION_COOKIE = "mp_session"
LOGIN_CSRF_COOKIE = "mp_login_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ConsoleAuth:
    """The HTTP side of ``platform.console_users`` (``self.users``): the session cookie, the
    CSRF check and the admin API's session resolver."""

    def __init__(self, platform: Platform) -> None:
        self.users = platform.console_users

    async def session(self, request: Request) -> Session | None:
        """The request's session (looked up once per request)."""
        if hasattr(request.state, "console_session"):
            cached: Session | None = request.state.console_session
            return cached
        found = await self.users.session_for(request.cookies.get(SESSION_COOKIE) or "")
        request.state.console_session = found
        return found

    async def csrf_ok(self, request: Request, expected: str) -> bool:
        sent = request.headers.get(CSRF_HEADER)
        if sent is None:
            ctype = request.headers.get("content-type", "")
            if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
                form = await request.form()
                value = form.get(CSRF_FIELD)
                sent = value if isinstance(value, str) else None
        return sent is not None and secrets.compare_digest(sent.encode(), expected.encode())

    async def resolve(self, request: Request) -> Principal | None:
        """``app.state.session_resolver``: the signed-in console user as an admin API principal.
        A state-changing method must carry the session's CSRF token."""
        session = await self.session(request)
        if session is None:
            return None
        if request.method not in SAFE_METHODS and not await self.csrf_ok(request, session.csrf):
            raise Forbidden("missing or wrong CSRF token; reload the page and try again")
        if session.user.must_change_password:
            raise Forbidden("choose a new password first (the console asks for it at sign-in)")
        return session.user.principal


def is_https(request: Request, public_url: str) -> bool:
    return request.url.scheme == "https" or public_url.startswith("https://")
