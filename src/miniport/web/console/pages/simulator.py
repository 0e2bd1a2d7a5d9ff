"""The simulator (``/simulator``), for developers: a mini-program host in the browser that
talks to the runtime API like a device (``?appid=`` and ``?user=`` preselect the app and the
simulated user)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ..render import render, state_of
from ._common import DeveloperPage

router = APIRouter()


@router.get("/simulator")
async def simulator(
    ctx: DeveloperPage, appid: str | None = None, user: str | None = None
) -> Response:
    p = state_of(ctx.request).platform
    apps = await p.db.read(p.registry.list_apps)
    return render(
        ctx.request,
        "simulator.html",
        session=ctx.session,
        apps=apps,
        appid=appid or "",
        sim_user=(user or "")[:128],
        tab="simulator",
    )
