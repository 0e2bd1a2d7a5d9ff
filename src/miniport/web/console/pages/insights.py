"""An app's insights (``/apps/{appid}/analytics/insights``): the overview (active and new users,
launches, sessions, page views, top pages, scenes), real time (pushed as events are accepted),
retention cohorts and paths (a Sankey chart), drawn from the admin API by the page's script.
The analytics section opens here. The page embeds the app's event names (for the retention and
paths forms) and the system properties (for the overview's split)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ....analytics.system_props import BUILTIN_EVENTS, SYSTEM_PROPERTIES
from ..render import page_json, render, state_of
from ._common import ViewerPage, app_context

router = APIRouter()


@router.get("/apps/{appid}/analytics/insights")
async def insights(ctx: ViewerPage, appid: str) -> Response:
    """Overview, real time, retention and paths."""
    values = await app_context(ctx, appid, "insights")
    definitions = await state_of(ctx.request).platform.analytics.definitions(appid)
    custom = sorted(e["name"] for e in definitions["events"])
    data = {
        "events": [*sorted(BUILTIN_EVENTS), *custom],
        "properties": list(SYSTEM_PROPERTIES),
    }
    return render(
        ctx.request,
        "analytics_insights.html",
        session=ctx.session,
        page_data=page_json(data),
        **values,
    )
