"""An app's dashboards (``/apps/{appid}/analytics/dashboards``): each a grid of saved reports
sharing a date range, drawn as the report pages draw them. Viewers see them; developers create
dashboards, add, move and remove reports and change the range (through the admin API, from the
page's script). The page embeds the dashboards and saved reports as JSON; the script runs the
chosen dashboard through ``POST .../dashboards/{name}/run``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from ..render import page_json, render, state_of
from ._common import ViewerPage, app_context

router = APIRouter()


@router.get("/apps/{appid}/analytics/dashboards")
async def dashboards(
    ctx: ViewerPage, appid: str, name: Annotated[str, Query(max_length=64)] = ""
) -> Response:
    """The app's dashboards; ``?name=`` opens one (the first by default)."""
    values = await app_context(ctx, appid, "dashboards")
    saved = state_of(ctx.request).platform.saved
    boards = (await saved.dashboards(appid))["dashboards"]
    names = [b["name"] for b in boards]
    current = name if name in names else (names[0] if names else "")
    reports = (await saved.list_saved(appid))["reports"]
    data = {
        "dashboards": boards,
        "current": current,
        "reports": [{"name": r["name"], "kind": r["kind"]} for r in reports],
        "can_edit": ctx.can("developer"),
    }
    return render(
        ctx.request,
        "dashboards.html",
        session=ctx.session,
        page_data=page_json(data),
        boards=boards,
        current=current,
        **values,
    )
