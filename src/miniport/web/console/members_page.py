"""The console's members tab of an app: members (and admins) see who has access; admins add
developers and viewers and remove them. The same rules as the admin API (services.members)."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Form, Response

from ...errors import MiniportError
from ..deps import members_of
from .routes import BASE, AdminPage, Ctx, ViewerPage, redirect, render


async def _page(ctx: Ctx, appid: str, error: str | None = None, status: int = 200) -> Response:
    members = members_of(ctx.request)
    app = await ctx.request.app.state.platform.apps.get(appid)
    return render(
        ctx.request,
        "members.html",
        session=ctx.session,
        app=app,
        tab="members",
        can=ctx.can,
        members=await members.list(appid),
        error=error,
        status=status,
    )


def install(app: FastAPI) -> None:
    @app.get("/apps/{appid}/members")
    async def members_page(ctx: ViewerPage, appid: str) -> Response:
        return await _page(ctx, appid)

    @app.post("/apps/{appid}/members")
    async def add_member(
        ctx: AdminPage,
        appid: str,
        user: Annotated[str, Form(max_length=160)],
        role: Annotated[str, Form(max_length=16)],
    ) -> Response:
        try:
            await members_of(ctx.request).add(appid, user.strip(), role, ctx.who.name)
        except MiniportError as exc:
            return await _page(ctx, appid, exc.message, exc.http_status)
        flash = ("flash.member_added", {"user": user.strip(), "role": role})
        return redirect(f"{BASE}/apps/{appid}/members", flash)

    @app.post("/apps/{appid}/members/remove")
    async def remove_member(
        ctx: AdminPage, appid: str, user: Annotated[str, Form(max_length=160)]
    ) -> Response:
        await members_of(ctx.request).remove(appid, user, ctx.who.name)
        return redirect(f"{BASE}/apps/{appid}/members", ("flash.member_removed", {"user": user}))
