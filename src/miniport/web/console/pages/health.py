"""An app's health and devtools tab (``/apps/{appid}/health``): the page itself only names the
app; its script reads the charts' data and drives the devtools through the admin API."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ..render import render
from ._common import ViewerPage, app_context

router = APIRouter()


@router.get("/apps/{appid}/health")
async def health(ctx: ViewerPage, appid: str) -> Response:
    values = await app_context(ctx, appid, "health")
    return render(ctx.request, "health.html", session=ctx.session, **values)
