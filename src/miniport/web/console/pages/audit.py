"""The audit log (``/audit``, optionally for one app): the newest 300 entries, for viewers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ..render import render, state_of
from ._common import ViewerPage

router = APIRouter()


@router.get("/audit")
async def audit(ctx: ViewerPage, appid: str | None = None) -> Response:
    p = state_of(ctx.request).platform
    entries = await p.db.read(p.registry.list_audit, appid or None, 300)
    apps = await p.db.read(p.registry.list_apps)
    return render(
        ctx.request,
        "audit.html",
        session=ctx.session,
        entries=entries,
        apps=apps,
        appid=appid or "",
    )
