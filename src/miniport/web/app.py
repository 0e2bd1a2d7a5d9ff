"""The ASGI application: ``create_app(platform)`` mounts every router on one FastAPI app whose
lifespan starts the platform and, unless told not to, the periodic fetch engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from ..errors import InvalidInput, MiniportError, Problem, join_problems
from ..platform import Platform
from . import (
    admin_api,
    analytics_api,
    analytics_users_api,
    confirm_page,
    console,
    members_api,
    open_api,
    operator,
    runtime_api,
    saved_reports_api,
)
from .analytics_api import ingest_batch
from .cors import ContainerCORS
from .deps import error_body, error_response
from .event_stream import EventStreamResponse, run_stream
from .limits import BodySizeLimit

log = logging.getLogger("miniport.web")

_API_NAMES = {
    "/background-fetch/token": "setBackgroundFetchToken",
    "/background-fetch/data": "getBackgroundFetchData",
    "/launch": "launch",
    "/login": "login",
}


def _api_name(request: Request) -> str | None:
    path = request.url.path
    if not path.startswith("/runtime/"):
        return None
    for suffix, name in _API_NAMES.items():
        if path.endswith(suffix):
            if name == "setBackgroundFetchToken" and request.method == "GET":
                return "getBackgroundFetchToken"
            return name
    return "runtime"


def _problem(error: dict[str, Any]) -> Problem:
    """One validation problem: the field's path; a problem with the body as a whole (missing,
    not an object, not JSON) names the body."""
    if error["type"] == "json_invalid":
        why = error.get("ctx", {}).get("error", error["msg"])
        return Problem("request body", f"invalid JSON: {why}")
    where = ".".join(str(p) for p in error["loc"] if p != "body") or "request body"
    return Problem(where, error["msg"])


EVENTS_PATH = "/runtime/v1/events"
# a request with any of these goes the framework's way: CORS headers for a browser on another
# origin (when configured), the request-body limit for a request that has a body
_ROUTED_HEADERS = frozenset((b"origin", b"content-length", b"transfer-encoding"))


RUNTIME_APPS = "/runtime/v1/apps/"
DATA_SUFFIX, INGEST_SUFFIX = "/background-fetch/data", "/analytics/events"
Handler = Callable[[Request, str], Awaitable[Response]]


def path_appid(path: str, suffix: str) -> str | None:
    """The app of a ``/runtime/v1/apps/{appid}<suffix>`` path (what the route's ``{appid}``
    matches: one non-empty segment), else None."""
    if path.startswith(RUNTIME_APPS) and path.endswith(suffix):
        appid = path[len(RUNTIME_APPS) : -len(suffix)]
        if appid and "/" not in appid:
            return appid
    return None


def data_appid(path: str) -> str | None:
    """The app of a getBackgroundFetchData path, else None."""
    return path_appid(path, DATA_SUFFIX)


def declared_body(headers: list[tuple[bytes, bytes]], limit: int) -> bool:
    """Whether a request's body may be read here, ahead of the body-limit middleware: no
    ``Origin`` (CORS is the framework's), no chunked body, and a ``Content-Length`` within
    ``limit`` (the server reads no more than it declares). Anything else goes the
    framework's way (its 413, its chunk counting)."""
    length = None
    for name, value in headers:
        if name in (b"origin", b"transfer-encoding"):
            return False
        if name == b"content-length":
            if length is not None or not value.isdigit():
                return False
            length = int(value)
    return length is not None and length <= limit


class MiniportAPI(FastAPI):
    """The FastAPI app, with its three hottest requests answered ahead of its middleware and
    routing, by their routes' own code (issue 13), when they carry no ``Origin`` (CORS is the
    framework's):

    - the runtimes' event stream (``GET /runtime/v1/events``, ``open_events``): an open stream
      then holds no Request, no middleware frames and no framework state, only its
      subscription and the server's connection (10,000 open streams in a few tens of MB);
    - getBackgroundFetchData (``GET /runtime/v1/apps/{appid}/background-fetch/data``,
      ``read_data``) and reportAnalytics (``POST /runtime/v1/apps/{appid}/analytics/events``,
      ``ingest_batch``, when its ``Content-Length`` is within the body limit): the middleware
      stack cost more per request than the storage read, and a good share of a batch's.

    The access log line is written here, as ``AccessLog`` would; an unexpected error is logged
    and answered 500, as the framework's outermost middleware would."""

    max_body = 1_000_000  # create_app sets the platform's limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if method == "POST":
            appid = path_appid(path, INGEST_SUFFIX)
            if appid is not None and declared_body(scope["headers"], self.max_body):
                await self._answer(scope, receive, send, ingest_batch, appid)
                return
            await super().__call__(scope, receive, send)
            return
        if method != "GET" or any(name in _ROUTED_HEADERS for name, _ in scope["headers"]):
            await super().__call__(scope, receive, send)
            return
        appid = data_appid(path)
        if appid is not None:
            await self._answer(scope, receive, send, runtime_api.read_data, appid)
            return
        if path != EVENTS_PATH:
            await super().__call__(scope, receive, send)
            return
        # the stream, here rather than in a method: one coroutine frame less per open stream
        started = time.perf_counter()
        scope["app"] = self  # what Request.app (and so platform_of) reads
        response = await runtime_api.open_events(Request(scope, receive))
        status = response.status_code
        try:
            if isinstance(response, EventStreamResponse):
                broker, sub, hello = response.broker, response.sub, response.hello
                del response  # held for the stream's life otherwise
                await run_stream(broker, sub, hello, receive, send)
            else:
                await response(scope, receive, send)
        finally:
            if operator.access_log.isEnabledFor(logging.INFO):
                operator.log_request(scope, status, (time.perf_counter() - started) * 1000)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, handler: Handler, appid: str
    ) -> None:
        started = time.perf_counter()
        scope["app"] = self
        status = 500
        try:
            response = await handler(Request(scope, receive), appid)
            status = response.status_code
        except ClientDisconnect:  # the client left before its body was in: nobody to answer
            status = 499
            if operator.access_log.isEnabledFor(logging.INFO):
                operator.log_request(scope, status, (time.perf_counter() - started) * 1000)
            return
        except Exception:
            log.exception("%s %s failed", scope["method"], scope["path"])
            response = PlainTextResponse("Internal Server Error", status_code=500)
        try:
            await response(scope, receive, send)
        finally:
            if operator.access_log.isEnabledFor(logging.INFO):
                operator.log_request(scope, status, (time.perf_counter() - started) * 1000)


def warm_routes(routes: list[Any]) -> int:
    """Build now what FastAPI builds at the first request through each included router (its
    routes' parameter models and matchers, ~140 ms for all of Miniport's): otherwise the first
    admin request after a start pays for every router tried before its own (60 ms for
    ``devtools push``, spent before its devices get the message). ``miniport serve`` calls it
    once started, before ``gc_tuning`` freezes what start-up built (so these objects are never
    scanned either). Returns how many included routers it built (0 if a FastAPI release no
    longer builds them lazily: a test pins it)."""
    warmed = 0
    for route in routes:
        candidates = getattr(route, "effective_candidates", None)
        if not callable(candidates):
            continue
        warmed += 1 + warm_routes(candidates())
        low_priority = getattr(route, "effective_low_priority_routes", None)
        if callable(low_priority):
            low_priority()
    return warmed


def create_app(platform: Platform, *, run_scheduler: bool | None = None) -> MiniportAPI:
    run = platform.settings.start_scheduler if run_scheduler is None else run_scheduler

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await platform.start()
        stop = asyncio.Event()
        task = None
        retention = None
        if run:
            engine = platform.make_engine()
            task = asyncio.create_task(engine.run(stop))
            retention = asyncio.create_task(platform.analytics.retention_loop(stop))
            alerts = asyncio.create_task(
                platform.alerts.loop(stop, platform.settings.alert_check_s)
            )
            wakes = asyncio.create_task(platform.apps.wake_loop(stop))
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                platform._wake_engine()  # do not wait out the engine's idle sleep
                await task
            if retention is not None:
                await retention
                await alerts
                await wakes
            await platform.close()

    app = MiniportAPI(
        title="Miniport",
        version="0.1.0",
        lifespan=lifespan,
        description="Background data and custom analytics for mini-programs",
        docs_url=None,  # served by .operator from the package, not a CDN
        redoc_url=None,
    )
    app.state.platform = platform

    @app.exception_handler(MiniportError)
    async def _miniport_error(request: Request, exc: MiniportError) -> JSONResponse:
        return error_response(exc, _api_name(request))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_problem(e) for e in exc.errors()]
        error = InvalidInput(join_problems(problems), problems)
        body = error_body(error, _api_name(request))
        body["detail"] = [{"loc": e["loc"], "msg": e["msg"]} for e in exc.errors()]
        return JSONResponse(body, status_code=error.http_status)

    app.router.routes.append(runtime_api.DATA_ROUTE)  # first: the hot read, before any router
    app.router.routes.append(analytics_api.INGEST_ROUTE)  # and the hot write (ingest)
    app.include_router(runtime_api.router)
    app.include_router(analytics_api.runtime)
    app.include_router(analytics_api.admin)
    app.include_router(analytics_users_api.router)
    app.include_router(saved_reports_api.router)
    app.include_router(open_api.router)
    app.include_router(admin_api.router)
    app.include_router(members_api.router)
    app.include_router(confirm_page.router)
    console.install(app, platform)  # /console, /sdk and the console session for /admin/v1
    app.add_middleware(BodySizeLimit, max_bytes=platform.settings.max_request_bytes)
    app.max_body = platform.settings.max_request_bytes  # the same limit for the fast routes
    operator.install(app)  # /, /metrics, /docs; its access log wraps everything above
    if platform.settings.cors_origins:  # outermost: a refused body still carries CORS headers
        app.add_middleware(ContainerCORS, origins=platform.settings.cors_origins)
    return app
