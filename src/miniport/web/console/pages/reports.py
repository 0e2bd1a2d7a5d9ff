"""An app's analytics reports (``/apps/{appid}/analytics/reports``): event analysis and funnels
with charts and tables, CSV export. The page embeds the definitions as JSON; its script asks
the admin API for the figures."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ....analytics.system_props import BUILTIN_EVENTS, DIMENSIONS, SYSTEM_PROPERTIES
from ..render import page_json, render, state_of
from ._common import ViewerPage, app_context

router = APIRouter()


@router.get("/apps/{appid}/analytics/reports")
async def analytics_reports(ctx: ViewerPage, appid: str) -> Response:
    """Event analysis and funnels with charts and tables, CSV export."""
    values = await app_context(ctx, appid, "reports")
    p = state_of(ctx.request).platform
    definitions = await p.analytics.definitions(appid)
    return render(
        ctx.request,
        "analytics_reports.html",
        session=ctx.session,
        page_data=page_json({"definitions": definitions, "system": _system()}),
        **values,
    )


def _system() -> dict[str, object]:
    """What the report forms offer besides the app's own fields and events."""
    data_names = {key: f"${key}" for keys in BUILTIN_EVENTS.values() for key in keys}
    return {
        "properties": list(SYSTEM_PROPERTIES),
        "events": {name: [data_names[k] for k in keys] for name, keys in BUILTIN_EVENTS.items()},
        "kinds": {
            name: "int" if dim.kind in ("int", "bigint") else dim.kind
            for name, dim in DIMENSIONS.items()
        },
    }
