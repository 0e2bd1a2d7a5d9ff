"""An app's health and devtools tab (``/apps/{appid}/health``): the page itself only names the
app and shows the pre-fetch effectiveness report and the alert history; its script reads the
charts' data and drives the devtools through the admin API."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ..render import render, state_of
from ._common import ViewerPage, app_context

router = APIRouter()


@router.get("/apps/{appid}/health")
async def health(ctx: ViewerPage, appid: str) -> Response:
    values = await app_context(ctx, appid, "health")
    p = state_of(ctx.request).platform
    since = str(int(p.clock.now() - 30 * 86400))
    prefetch = await p.background.prefetch_report(appid, since)
    alerts = await p.alerts.history(appid, 50)
    return render(
        ctx.request,
        "health.html",
        session=ctx.session,
        prefetch_rows=prefetch["rows"],
        alerts=alerts["alerts"],
        **values,
    )
