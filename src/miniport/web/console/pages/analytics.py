"""An app's analytics tab (``/apps/{appid}/analytics``): fields, events, the event editor and
the live test panel (``?test=``). The page's script calls
``/admin/v1/apps/{appid}/analytics/...``; the page embeds the definitions and the latest tests
as JSON so it shows them without a round trip. Only developers get the editor."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form
from fastapi.responses import Response

from ..render import BASE, page_json, redirect, render, state_of
from ._common import Ctx, DeveloperPage, ViewerPage, app_context

router = APIRouter()
ANALYTICS_TESTS_SHOWN = 10


async def analytics_data(ctx: Ctx, appid: str) -> dict[str, Any]:
    p = state_of(ctx.request).platform
    definitions = await p.analytics.definitions(appid)
    tests = await p.db.read(p.analytics.defs.list_tests, appid)
    return {
        "definitions": definitions,
        "tests": [test.as_dict() for test in tests[:ANALYTICS_TESTS_SHOWN]],
    }


@router.get("/apps/{appid}/analytics")
async def analytics(ctx: ViewerPage, appid: str, test: str | None = None) -> Response:
    """Fields, events and the event editor; the live test panel (``?test=``)."""
    values = await app_context(ctx, appid, "analytics")
    data = await analytics_data(ctx, appid)
    switch = await state_of(ctx.request).platform.analytics.builtin_events(appid)
    return render(
        ctx.request,
        "analytics.html",
        session=ctx.session,
        page_data=page_json({**data, "open_test": test or None, "can_edit": ctx.can("developer")}),
        builtin_events=switch["builtin_events"],
        **values,
    )


@router.post("/apps/{appid}/analytics/builtin")
async def switch_builtin(
    ctx: DeveloperPage, appid: str, state: Annotated[Literal["on", "off"], Form()]
) -> Response:
    """The page's switch: built-in events on or off (the service pushes and audits it)."""
    analytics = state_of(ctx.request).platform.analytics
    await analytics.set_builtin_events(appid, state == "on", ctx.who.name)
    key = "flash.builtin_on" if state == "on" else "flash.builtin_off"
    return redirect(f"{BASE}/apps/{appid}/analytics", (key, {}))
