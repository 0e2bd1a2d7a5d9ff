"""The page a confirmation link (the QR code) opens, usually on an admin's phone.

- Not signed in: the console's sign-in page, then back to this link.
- Signed in as an admin: the change (app, kind, operation, URL, who asked) and a Confirm button
  (a POST with the session's CSRF token); confirming applies the change.
- Signed in without the admin role: refused, saying why, and shown nothing of the change (not
  even its app: a code that reached someone else tells them nothing).
The confirmation itself goes through ``deps.require("admin")`` like the admin API."""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from ..errors import Forbidden, MiniportError, Unauthorized, Unavailable
from ..services.apps import ChangeRequest
from .console.routes import BASE, ConsoleState, render
from .deps import platform_of, require

router = APIRouter(include_in_schema=False)
_admin = require("admin")


def _console(request: Request) -> ConsoleState:
    return request.app.state.console  # type: ignore[no-any-return]


def _sign_in(request: Request, code: str) -> RedirectResponse:
    return RedirectResponse(f"{BASE}/login?{urlencode({'next': f'/confirm/{code}'})}", 303)


async def _describe(request: Request, change: ChangeRequest) -> dict[str, Any]:
    platform = platform_of(request)
    try:
        app = await platform.apps.get(change.appid)
        name = app.name
    except MiniportError:
        name = change.appid
    urls = await platform.db.read(platform.registry.fetch_urls, change.appid)
    current = urls.get(change.kind)
    expired = change.status == "pending" and platform.clock.now() > change.expires_at
    return {
        "change": change,
        "app_name": name,
        "expired": expired,
        "current_url": current.url if current else None,
        "current_enabled": bool(current and current.enabled),
        # a grey change applies to (or promotes) the grey URL: shown with its ratio
        "current_grey_url": current.grey_url if current else None,
        "current_grey_ratio": current.grey_ratio if current else 0,
        "expires_in_s": max(0, int(change.expires_at - platform.clock.now())),
    }


@router.get("/confirm/{code}")
async def confirm_page(code: str, request: Request) -> Response:
    state = _console(request)
    session = await state.auth.session(request)
    if session is None:
        return _sign_in(request, code)
    if session.user.must_change_password:
        return RedirectResponse(
            f"{BASE}/account/password?{urlencode({'next': f'/confirm/{code}'})}", 303
        )
    if not session.user.can("admin"):  # refused, told nothing of the change (nor if it exists)
        return render(
            request, "confirm.html", session=session, status=403, refused=True, code=code
        )
    platform = platform_of(request)
    try:
        change = await platform.apps.change_for_code(code)
    except MiniportError as exc:  # gone (410), or the database away for now (503)
        status = exc.http_status if isinstance(exc, Unavailable) else 410
        return render(
            request, "confirm.html", session=session, status=status, error=exc.message, code=code
        )
    return render(
        request, "confirm.html", session=session, code=code, **await _describe(request, change)
    )


@router.post("/confirm/{code}")
async def confirm(code: str, request: Request) -> Response:
    state = _console(request)
    session = await state.auth.session(request)
    if session is None:
        return _sign_in(request, code)
    try:
        who = await _admin(request)  # the session, its CSRF token (form field) and the role
    except Unauthorized:
        return _sign_in(request, code)
    except Forbidden as exc:
        return render(
            request,
            "confirm.html",
            session=session,
            status=403,
            refused=True,
            code=code,
            error=exc.message,
        )
    platform = platform_of(request)
    try:
        change = await platform.apps.confirm(code, who.name)
    except MiniportError as exc:
        found = None
        with contextlib.suppress(MiniportError):
            found = await platform.apps.change_for_code(code)
        extra = await _describe(request, found) if found is not None else {}
        return render(
            request,
            "confirm.html",
            session=session,
            status=exc.http_status,
            error=exc.message,
            code=code,
            **extra,
        )
    return render(
        request,
        "confirm.html",
        session=session,
        code=code,
        applied=True,
        **await _describe(request, change),
    )
