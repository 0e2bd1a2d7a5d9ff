"""Sign-in, sign-out and the password change (``/login``, ``/logout``, ``/account/password``).

Invariants: the sign-in form carries its own CSRF token (a cookie scoped to ``/login``, since
there is no session yet); a user with a one-time password is sent to the password page first;
``next`` is only ever a local path (:func:`safe_next`)."""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from ....errors import Forbidden, MiniportError, Unauthorized
from .. import i18n
from ..auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE, SESSION_TTL_S, is_https
from ..render import BASE, redirect, render, state_of
from ._common import AnyUserPage, safe_next

router = APIRouter()


@router.get("/")
async def home() -> Response:
    return redirect(f"{BASE}/apps")


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    state = state_of(request)
    session = await state.auth.session(request)
    if session is not None and not session.user.must_change_password:
        return redirect(safe_next(next))
    return _login_page(request, next, None)


@router.post("/login")
async def login(
    request: Request,
    name: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    state = state_of(request)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(expected.encode(), csrf_token.encode()):
        return _login_page(request, next, "login.expired", status=403, name=name)
    try:
        client = request.client.host if request.client else None
        user = await state.auth.users.authenticate(name, password, client)
    except (Unauthorized, Forbidden) as exc:
        key = "login.failed" if isinstance(exc, Unauthorized) else None
        return _login_page(request, next, key or exc.message, status=exc.http_status, name=name)
    token, _ = await state.auth.users.start_session(user)
    target = safe_next(next)
    if user.must_change_password:
        target = f"{BASE}/account/password?{urlencode({'next': target})}"
    response = redirect(target)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_TTL_S),
        httponly=True,
        samesite="lax",
        path="/",
        secure=is_https(request, state.platform.public_url),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=f"{BASE}/login")
    return response


@router.post("/logout")
async def logout(ctx: AnyUserPage) -> Response:
    await state_of(ctx.request).auth.users.end_session(ctx.session)
    response = redirect(f"{BASE}/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/account/password")
async def password_form(ctx: AnyUserPage, next: str | None = None) -> Response:
    return render(
        ctx.request, "password.html", session=ctx.session, next=safe_next(next), error=None
    )


@router.post("/account/password")
async def change_password(
    ctx: AnyUserPage,
    current: Annotated[str, Form(max_length=256)],
    new: Annotated[str, Form(max_length=256)],
    repeat: Annotated[str, Form(max_length=256)],
    next: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    error = None
    if new != repeat:
        error = i18n.translator(i18n.pick_language(ctx.request))("password.mismatch")
    else:
        try:
            await state_of(ctx.request).auth.users.change_password(ctx.session, current, new)
        except MiniportError as exc:
            error = exc.message
    if error:
        return render(
            ctx.request,
            "password.html",
            session=ctx.session,
            next=safe_next(next),
            error=error,
            status=422,
        )
    return redirect(safe_next(next), ("flash.password_changed", {}))


def _login_page(
    request: Request, next_url: str | None, error: str | None, *, status: int = 200, name: str = ""
) -> Response:
    csrf = secrets.token_urlsafe(24)
    t = i18n.translator(i18n.pick_language(request))
    shown = t(error) if error and "." in error and " " not in error else error
    response = render(
        request,
        "login.html",
        status=status,
        login_csrf=csrf,
        next=safe_next(next_url),
        error=shown,
        name=name,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        csrf,
        max_age=3600,
        httponly=True,
        samesite="strict",
        path=f"{BASE}/login",
        secure=is_https(request, state_of(request).platform.public_url),
    )
    return response
