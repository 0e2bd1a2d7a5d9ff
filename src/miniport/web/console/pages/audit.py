"""The audit log (``/audit``, optionally for one app): the newest 300 entries, for viewers;
a developer or viewer sees only the entries of its apps (another app's audit is not found)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ...deps import members_of, visible_apps
from ..render import render, state_of
from ._common import ViewerPage

router = APIRouter()


@router.get("/audit")
async def audit(ctx: ViewerPage, appid: str | None = None) -> Response:
    p = state_of(ctx.request).platform
    if appid:
        await members_of(ctx.request).check(appid, ctx.who, "viewer")
    entries = await p.db.read(p.registry.list_audit, appid or None, 300)
    apps = await visible_apps(ctx.request, ctx.who)
    shown = {a.appid for a in apps} if ctx.who.role != "admin" else None
    entries = [e for e in entries if shown is None or e.appid in shown]
    return render(
        ctx.request,
        "audit.html",
        session=ctx.session,
        entries=entries,
        apps=apps,
        appid=appid or "",
    )
