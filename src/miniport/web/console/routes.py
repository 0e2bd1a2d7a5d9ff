"""The console application: its error pages and the one place its page routers are registered
(``pages.ROUTERS``, one router per area). Every page and every form action checks the role on
the server through ``deps.require`` (the session resolver behind it also checks the CSRF token
of every POST). Reads and writes go through the same services as the admin API; the pages'
scripts call the admin API itself (``/admin/v1``) with the session cookie and the
``X-CSRF-Token`` header."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from ...errors import MiniportError
from ...platform import Platform
from .pages import ROUTERS
from .pages._common import PasswordChangeNeeded, Refused, SignInNeeded, safe_next
from .render import (
    BASE,
    QR_BORDER,
    QR_BOX,
    STATIC_DIR,
    ConsoleState,
    message_page,
    qr_png,
    redirect,
    render,
)


def create_console_app(platform: Platform, state: ConsoleState) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.platform = platform
    app.state.console = state
    app.state.session_resolver = state.auth.resolve
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded) -> Response:
        return redirect(f"{BASE}/login?{urlencode({'next': exc.next_url})}")

    @app.exception_handler(PasswordChangeNeeded)
    async def _password(request: Request, exc: PasswordChangeNeeded) -> Response:
        return redirect(f"{BASE}/account/password?{urlencode({'next': exc.next_url})}")

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        return message_page(request, "error.refused", exc.message, 403)

    @app.exception_handler(MiniportError)
    async def _error(request: Request, exc: MiniportError) -> Response:
        page = message_page(request, "error.title", exc.message, exc.http_status)
        if exc.retry_after_s is not None:  # as the API says it (a 503: try again later)
            page.headers["Retry-After"] = str(int(exc.retry_after_s))
        return page

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        text = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return message_page(request, "error.title", text, 422)

    register_pages(app)
    return app


def register_pages(app: FastAPI) -> None:
    """Every area's router, in the order of ``pages.ROUTERS``."""
    for router in ROUTERS:
        app.include_router(router)


__all__ = [
    "BASE",
    "QR_BORDER",
    "QR_BOX",
    "ConsoleState",
    "create_console_app",
    "qr_png",
    "redirect",
    "render",
    "safe_next",
]
