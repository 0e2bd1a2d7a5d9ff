"""The audit log (``/audit``): newest first, a page at a time (keyset: ``before`` = the last
id shown), filtered by app, by who (actor) and by what (an action prefix), for viewers; a
developer or viewer sees only the entries of its apps (another app's audit is not found)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ...deps import members_of, visible_apps
from ..render import render, state_of
from ._common import ViewerPage

router = APIRouter()
PAGE = 50


@router.get("/audit")
async def audit(
    ctx: ViewerPage,
    appid: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    before: int | None = None,
) -> Response:
    p = state_of(ctx.request).platform
    if appid:
        await members_of(ctx.request).check(appid, ctx.who, "viewer")
    apps = await visible_apps(ctx.request, ctx.who)
    shown = {a.appid for a in apps} if ctx.who.role != "admin" else None
    found = await p.db.read(
        p.registry.list_audit,
        appid or None,
        PAGE + 1,
        actor=actor or None,
        action=action or None,
        before_id=before,
        appids=shown,
    )
    entries, more = found[:PAGE], len(found) > PAGE
    actors = await p.db.read(p.registry.audit_actors, shown)
    return render(
        ctx.request,
        "audit.html",
        session=ctx.session,
        entries=entries,
        apps=apps,
        actors=actors,
        appid=appid or "",
        actor=actor or "",
        action=action or "",
        paged=before is not None,
        older=entries[-1].id if more and entries else None,
    )
