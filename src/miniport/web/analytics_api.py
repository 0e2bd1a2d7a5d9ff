"""Analytics over HTTP: the runtime's configuration and event reporting, and the admin API the
console and the CLI use (definitions, test and publish, live test view, reports, CSV)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, StrictBool, StrictStr
from starlette.routing import Route

from ..domain import json_text
from ..domain import saved_reports as rules
from ..errors import InvalidInput, MiniportError, TooLarge
from ..services.analytics import parse_time, test_channel
from ..services.auth import Principal
from ..services.saved_reports import run_params
from .deps import (
    StreamAccess,
    app_runtime_identity,
    error_response,
    platform_of,
    require,
    stream_access,
)
from .event_stream import EventStreamResponse
from .openapi_doc import CSV, ERRORS, EVENT_STREAM
from .strict_json import StrictJSONRoute

runtime = APIRouter(
    prefix="/runtime/v1", tags=["runtime"], route_class=StrictJSONRoute, responses=ERRORS
)
admin = APIRouter(
    prefix="/admin/v1/apps/{appid}/analytics",
    tags=["analytics"],
    route_class=StrictJSONRoute,
    responses=ERRORS,
)
VIEWER = require("viewer")
Viewer = Annotated[Principal, Depends(VIEWER)]
Developer = Annotated[Principal, Depends(require("developer"))]


async def may_watch_test(request: Request) -> Principal:
    """Who may have a test's live view: a viewer of the app, of a test of that app. Checked
    when it opens and again while it is open (services.console_guard)."""
    who = await VIEWER(request)
    params = request.path_params
    await platform_of(request).analytics.get_test(params["appid"], params["test_id"])
    return who


async def may_watch_realtime(request: Request) -> Principal:
    """Who may have an app's real-time view: a viewer of the app. Checked when it opens and
    again while it is open (services.console_guard)."""
    who = await VIEWER(request)
    await platform_of(request).apps.get(request.path_params["appid"])
    return who


TestWatcher = Annotated[StreamAccess, Depends(stream_access(may_watch_test))]
RealtimeWatcher = Annotated[StreamAccess, Depends(stream_access(may_watch_realtime))]
MAX_BATCH_BYTES = 1_000_000


# --- runtime ---
@runtime.get("/apps/{appid}/analytics/config")
async def runtime_config(appid: str, request: Request) -> Any:
    """The published configuration, or a running test's for the tester's devices."""
    try:
        who = await app_runtime_identity(request, appid)
        return await platform_of(request).analytics.runtime_config(appid, who.user_id)
    except MiniportError as exc:
        return error_response(exc, "getAnalyticsConfig")


@runtime.post(
    "/apps/{appid}/analytics/events",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["events"],
                        "properties": {
                            "sent_at": {
                                "type": "integer",
                                "description": "client time of sending, ms",
                            },
                            "events": {
                                "type": "array",
                                "maxItems": 1000,
                                "items": {"type": "object"},
                            },
                        },
                    }
                }
            },
        }
    },
)
async def report_events(appid: str, request: Request) -> Any:
    """A batch of reports: ``{"sent_at", "events": [{"id", "event", "data", "ts", "page",
    "trigger", "action"}]}`` -> ``{"accepted", "duplicates", "rejected": [{"index", "id",
    "reason"}]}``. Bad events are refused one by one; the good ones are kept. (Requests are
    served by :data:`INGEST_ROUTE`, which matches the same path ahead of every router and runs
    :func:`ingest_batch` directly.)"""
    return await ingest_batch(request, appid)


async def ingest_batch(request: Request, appid: str) -> Response:
    """The ingest path: parameters and body read by hand rather than through the framework's
    request handling, which cost more per batch than the batch's JSON."""
    try:
        who = await app_runtime_identity(request, appid)
        raw = await request.body()
        if len(raw) > MAX_BATCH_BYTES:
            # 413, as the request-size limit answers: the runtimes send such a batch in halves
            raise TooLarge(f"batch larger than {MAX_BATCH_BYTES} bytes")
        try:
            batch = json_text.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise InvalidInput(f"invalid JSON: {exc}") from exc
        result = await platform_of(request).analytics.ingest(appid, who.user_id, batch)
        return JSONResponse(result)
    except MiniportError as exc:
        return error_response(exc, "reportAnalytics")


async def _serve_ingest(request: Request) -> Response:
    return await ingest_batch(request, request.path_params["appid"])


def _ingest_route() -> Route:
    """A plain route for reportAnalytics, mounted by ``create_app`` ahead of the routers (as
    ``runtime_api.DATA_ROUTE``): matched first, called without the framework's dependency and
    parameter machinery. Everything around it is the same: the app's middleware (CORS, body
    limit, access log, server errors) and exception handlers; the documented route above keeps
    the OpenAPI description. POST only, so every other method gets the same 405."""
    return Route(
        runtime.prefix + "/apps/{appid}/analytics/events",
        _serve_ingest,
        methods=["POST"],
        name="report_events",
        include_in_schema=False,  # documented by the APIRoute above
    )


INGEST_ROUTE = _ingest_route()


# --- admin: definitions and lifecycle ---
class FieldIn(BaseModel):
    name: StrictStr
    type: Literal["int", "string", "float", "bool"]


class TestIn(BaseModel):
    user_id: StrictStr = Field(min_length=1, max_length=128)


@admin.get("/definitions")
async def definitions(appid: str, request: Request, who: Viewer) -> dict[str, Any]:
    return await platform_of(request).analytics.definitions(appid)


@admin.post("/fields", status_code=201)
async def add_field(appid: str, body: FieldIn, request: Request, who: Developer) -> dict[str, Any]:
    return await platform_of(request).analytics.add_field(appid, body.model_dump())


class RetypeIn(BaseModel):
    type: StrictStr


@admin.post("/fields/{name}/retype")
async def retype_field(
    appid: str, name: str, body: RetypeIn, request: Request, who: Developer
) -> dict[str, Any]:
    """Change a field's type (a published field's at the next publish; the old values stay
    readable under the old type). Refused for an unknown field or type, the same type, a
    ``$`` name or when no slot of the new type is free. Audited."""
    return await platform_of(request).analytics.retype_field(appid, name, body.type, who.name)


BASE = Query(
    None,
    max_length=64,
    description="the event's `revision` (from GET /definitions) the edit was made on; 409 if "
    "someone changed it since (`\"\"` for a new event); absent: replace whatever is there",
)


@admin.post("/events", status_code=201)
async def save_event(
    appid: str,
    request: Request,
    who: Developer,
    body: Annotated[dict[str, Any], Body()],
    base: str | None = BASE,
) -> dict[str, Any]:
    """Save an event definition as a draft (the schema: docs/analytics-definitions.md)."""
    return await platform_of(request).analytics.save_event(appid, body, base)


@admin.delete("/events/{name}")
async def delete_event(
    appid: str, name: str, request: Request, who: Developer, base: str | None = BASE
) -> dict[str, Any]:
    return await platform_of(request).analytics.delete_event(appid, name, base)


@admin.post("/publish")
async def publish(appid: str, request: Request, who: Developer) -> dict[str, Any]:
    return await platform_of(request).analytics.publish(appid, who.name)


class BuiltinIn(BaseModel):
    builtin_events: StrictBool


@admin.get("/builtin-events")
async def builtin_events(appid: str, request: Request, who: Viewer) -> dict[str, Any]:
    """``{"appid", "builtin_events"}``: whether the app takes built-in events ($launch...)."""
    return await platform_of(request).analytics.builtin_events(appid)


@admin.put("/builtin-events")
async def set_builtin_events(
    appid: str, body: BuiltinIn, request: Request, who: Developer
) -> dict[str, Any]:
    """Switch built-in events on or off (pushed to connected runtimes; audited)."""
    return await platform_of(request).analytics.set_builtin_events(
        appid, body.builtin_events, who.name
    )


@admin.post("/reset")
async def reset(appid: str, request: Request, who: Developer) -> dict[str, Any]:
    return await platform_of(request).analytics.reset(appid)


@admin.get("/versions")
async def versions(appid: str, request: Request, who: Viewer) -> dict[str, Any]:
    platform = platform_of(request)
    await platform.apps.get(appid)
    return {"versions": await platform.db.read(platform.analytics.defs.versions, appid)}


# --- admin: tests ---
@admin.post("/tests", status_code=201)
async def start_test(appid: str, body: TestIn, request: Request, who: Developer) -> dict[str, Any]:
    """Save-and-test: push the draft to the tester's connected devices only."""
    return await platform_of(request).analytics.start_test(appid, body.user_id, who.name)


@admin.get("/tests")
async def list_tests(appid: str, request: Request, who: Viewer) -> dict[str, Any]:
    platform = platform_of(request)
    await platform.apps.get(appid)
    tests = await platform.db.read(platform.analytics.defs.list_tests, appid)
    return {"tests": [t.as_dict() for t in tests]}


@admin.get("/tests/{test_id}")
async def get_test(appid: str, test_id: str, request: Request, who: Viewer) -> dict[str, Any]:
    return (await platform_of(request).analytics.get_test(appid, test_id)).as_dict()


@admin.post("/tests/{test_id}/stop")
async def stop_test(appid: str, test_id: str, request: Request, who: Developer) -> dict[str, Any]:
    return await platform_of(request).analytics.stop_test(appid, test_id)


@admin.post("/tests/{test_id}/sync")
async def sync_test(appid: str, test_id: str, request: Request, who: Developer) -> dict[str, Any]:
    return await platform_of(request).analytics.sync_test(appid, test_id)


@admin.get("/tests/{test_id}/events", response_class=StreamingResponse, responses=EVENT_STREAM)
async def watch_test(appid: str, test_id: str, request: Request, access: TestWatcher) -> Response:
    """Live test view (server-sent events): one ``testReport`` per batch from the tester, with
    each event's page, trigger, action, values, coercions, and every rejection's reason. Ends
    (after an ``unauthorized`` message saying why) once the access that opened it is gone."""
    platform = platform_of(request)
    sub = platform.broker.subscribe(test_channel(test_id), "console", broadcast=False)
    platform.console_guard.watch(sub, access.check, access.since)
    hello = {"type": "connected", "test_id": test_id}
    return EventStreamResponse(platform.broker, sub, hello, until=("testStopped",))


# --- admin: reports ---
@admin.post("/report")
async def report(
    appid: str, body: rules.ReportParams, request: Request, who: Viewer
) -> dict[str, Any]:
    """Event analysis: metrics (count, users, per_user, sum:F, max:F, min:F, avg:F,
    per_user:F, distinct:F), group-bys, filters (all AND, or all OR with any=true)."""
    return await run_params(platform_of(request).analytics, appid, body)


@admin.post("/funnel")
async def funnel(
    appid: str, body: rules.FunnelParams, request: Request, who: Viewer
) -> dict[str, Any]:
    """Steps ``EVENT[:FILTER;FILTER]``, at most one group-by, a conversion ``window``
    (``30m``, ``1h``, ``1d``...: default one day, at most 90 days) after the step-1 event,
    ``order`` ``strict`` (default) or ``any``. Rows: users, conversion, step_conversion,
    drop_off and median_s (median seconds to the next step) per step."""
    return await run_params(platform_of(request).analytics, appid, body)


@admin.post("/overview")
async def overview(
    appid: str, body: rules.OverviewParams, request: Request, who: Viewer
) -> dict[str, Any]:
    """``rows`` per bucket (active_users, new_users, launches, sessions, avg_session_s,
    page_views, avg_page_s, pages_per_session), ``top_pages`` and ``scenes``, each split by
    one system property with ``group_by``."""
    return await run_params(platform_of(request).analytics, appid, body)


@admin.get("/realtime")
async def realtime(
    appid: str,
    request: Request,
    who: Viewer,
    tz: str = "UTC",
    minutes: Annotated[int, Query(ge=1, le=180)] = 30,
    latest: Annotated[int, Query(ge=0, le=200)] = 50,
) -> dict[str, Any]:
    """``minutes``: active users and events per minute for the last 30 minutes (by event
    time); ``latest``: the events received last, newest first."""
    return await platform_of(request).analytics.realtime(
        appid, tz=tz, minutes=minutes, latest=latest
    )


@admin.get("/realtime/events", response_class=StreamingResponse, responses=EVENT_STREAM)
async def watch_realtime(appid: str, request: Request, access: RealtimeWatcher) -> Response:
    """The real-time view, pushed (server-sent events): after ``connected``, one ``realtime``
    message per batch of accepted events (batches within a quarter second go as one, from
    every node together: at most four a second):
    ``minutes`` (``minute_ms``, ``events`` added, the ``users`` who sent them), the
    ``latest`` events as the real-time report lists them, ``received_ms`` (first, last) and
    ``resync`` (fetch the report again: what was added is not known). Only this app's.
    Ends (after an ``unauthorized`` message saying why) once the access that opened it is
    gone: the API key revoked, the session ended, the member removed."""
    platform = platform_of(request)
    sub = await platform.live.watch(appid)
    platform.console_guard.watch(sub, access.check, access.since)
    hello = {"type": "connected", "appid": appid}
    return EventStreamResponse(platform.broker, sub, hello)


@admin.post("/retention")
async def retention(
    appid: str, body: rules.RetentionParams, request: Request, who: Viewer
) -> dict[str, Any]:
    """Cohorts by local day or week: users who did ``start`` (an event, ``$any`` or
    ``$new``) and, ``k`` periods later, ``return`` (an event or ``$any``)."""
    return await run_params(platform_of(request).analytics, appid, body)


@admin.post("/paths")
async def paths(
    appid: str, body: rules.PathsParams, request: Request, who: Viewer
) -> dict[str, Any]:
    """The most common next steps (pages or events, up to 5) after a start page or event,
    as Sankey nodes and links."""
    return await run_params(platform_of(request).analytics, appid, body)


@admin.get("/export", response_class=Response, responses=CSV)
async def export(
    appid: str,
    request: Request,
    who: Viewer,
    event: str,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    tz: str = "UTC",
) -> Response:
    csv_text = await platform_of(request).analytics.export_csv(
        appid, event, parse_time(from_, tz), parse_time(to, tz, end=True)
    )
    return Response(
        csv_text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{appid}-{event}.csv"'},
    )


@admin.get("/count")
async def count(
    appid: str, request: Request, who: Viewer, event: str | None = None, include_tests: bool = False
) -> dict[str, Any]:
    return {"count": await platform_of(request).analytics.count(appid, event, include_tests)}
