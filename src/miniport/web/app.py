"""The ASGI application: ``create_app(platform)`` mounts every router on one FastAPI app whose
lifespan starts the platform and, unless told not to, the periodic fetch engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..errors import InvalidInput, MiniportError, Problem, join_problems
from ..platform import Platform
from . import (
    admin_api,
    analytics_api,
    confirm_page,
    console,
    members_api,
    open_api,
    operator,
    runtime_api,
)
from .cors import ContainerCORS
from .deps import error_body, error_response
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


def create_app(platform: Platform, *, run_scheduler: bool | None = None) -> FastAPI:
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
            await platform.close()

    app = FastAPI(
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
    app.include_router(runtime_api.router)
    app.include_router(analytics_api.runtime)
    app.include_router(analytics_api.admin)
    app.include_router(open_api.router)
    app.include_router(admin_api.router)
    app.include_router(members_api.router)
    app.include_router(confirm_page.router)
    console.install(app, platform)  # /console, /sdk and the console session for /admin/v1
    app.add_middleware(BodySizeLimit, max_bytes=platform.settings.max_request_bytes)
    operator.install(app)  # /, /metrics, /docs; its access log wraps everything above
    if platform.settings.cors_origins:  # outermost: a refused body still carries CORS headers
        app.add_middleware(ContainerCORS, origins=platform.settings.cors_origins)
    return app
