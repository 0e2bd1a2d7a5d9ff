"""Console users, for admins (``/users``): create, change role, disable and enable, reset a
password.

Invariants: a new or reset one-time password is shown once, on the page that answers the
action (never in a redirect or a flash cookie); an admin cannot disable themselves; a refused
action shows the list again with the error, nothing changed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import Response

from ....errors import MiniportError
from ..render import BASE, redirect, render, state_of
from ._common import AdminPage, Ctx

router = APIRouter()


async def users_page(
    ctx: Ctx,
    *,
    created: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    users_list = await state_of(ctx.request).auth.users.list_users()
    return render(
        ctx.request,
        "users.html",
        session=ctx.session,
        users=users_list,
        created=created,
        error=error,
        status=status,
    )


@router.get("/users")
async def users(ctx: AdminPage) -> Response:
    return await users_page(ctx)


@router.post("/users")
async def create_user(
    ctx: AdminPage,
    name: Annotated[str, Form(max_length=64)],
    role: Annotated[str, Form(max_length=16)] = "viewer",
) -> Response:
    try:
        user, password = await state_of(ctx.request).auth.users.create_user(
            name, role, None, actor=ctx.who.name
        )
    except MiniportError as exc:
        return await users_page(ctx, error=exc.message, status=exc.http_status)
    return await users_page(ctx, created={"name": user.name, "password": password or ""})


@router.post("/users/{name}/role")
async def set_role(
    ctx: AdminPage, name: str, role: Annotated[str, Form(max_length=16)]
) -> Response:
    try:
        await state_of(ctx.request).auth.users.set_role(name, role, ctx.who.name)
    except MiniportError as exc:
        return await users_page(ctx, error=exc.message, status=exc.http_status)
    return redirect(f"{BASE}/users", ("flash.role_changed", {"name": name, "role": role}))


@router.post("/users/{name}/disable")
async def disable_user(ctx: AdminPage, name: str) -> Response:
    if name == ctx.who.name:
        return await users_page(ctx, error="you cannot disable yourself", status=409)
    try:
        await state_of(ctx.request).auth.users.set_disabled(name, True, ctx.who.name)
    except MiniportError as exc:
        return await users_page(ctx, error=exc.message, status=exc.http_status)
    return redirect(f"{BASE}/users", ("flash.user_disabled", {"name": name}))


@router.post("/users/{name}/enable")
async def enable_user(ctx: AdminPage, name: str) -> Response:
    await state_of(ctx.request).auth.users.set_disabled(name, False, ctx.who.name)
    return redirect(f"{BASE}/users", ("flash.user_enabled", {"name": name}))


@router.post("/users/{name}/password")
async def reset_password(ctx: AdminPage, name: str) -> Response:
    password = await state_of(ctx.request).auth.users.reset_password(name, ctx.who.name)
    return await users_page(ctx, created={"name": name, "password": password, "reset": "1"})
