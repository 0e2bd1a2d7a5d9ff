"""The simulator (``/simulator``), for developers: a mini-program host in the browser that
talks to the runtime API like a device (``?appid=`` and ``?user=`` preselect the app and the
simulated user); the app list holds only the user's apps."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ...deps import visible_apps
from ..render import render
from ._common import DeveloperPage

router = APIRouter()


@router.get("/simulator")
async def simulator(
    ctx: DeveloperPage, appid: str | None = None, user: str | None = None
) -> Response:
    apps = await visible_apps(ctx.request, ctx.who)
    return render(
        ctx.request,
        "simulator.html",
        session=ctx.session,
        apps=apps,
        appid=appid or "",
        sim_user=(user or "")[:128],
        tab="simulator",
    )
