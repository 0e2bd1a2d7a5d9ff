"""An app's members tab (``/apps/{appid}/members``): members (and admins) see who has access;
admins add developers and viewers and remove them.

Invariants: the same rules as the admin API (``services.members``); a refused addition shows the
tab again with the error, nothing changed; to a non-member the app is not found."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import Response

from ....errors import MiniportError
from ...deps import members_of
from ..render import BASE, redirect, render
from ._common import AdminPage, Ctx, ViewerPage, app_context

router = APIRouter()


async def _page(ctx: Ctx, appid: str, error: str | None = None, status: int = 200) -> Response:
    context = await app_context(ctx, appid, "members")
    return render(
        ctx.request,
        "members.html",
        session=ctx.session,
        members=await members_of(ctx.request).list(appid),
        error=error,
        status=status,
        **context,
    )


@router.get("/apps/{appid}/members")
async def members_page(ctx: ViewerPage, appid: str) -> Response:
    return await _page(ctx, appid)


@router.post("/apps/{appid}/members")
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


@router.post("/apps/{appid}/members/remove")
async def remove_member(
    ctx: AdminPage, appid: str, user: Annotated[str, Form(max_length=160)]
) -> Response:
    await members_of(ctx.request).remove(appid, user, ctx.who.name)
    return redirect(f"{BASE}/apps/{appid}/members", ("flash.member_removed", {"user": user}))
