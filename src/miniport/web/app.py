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

from ..analytics.definitions import DefinitionsInvalid
from ..errors import MiniportError
from ..platform import Platform
from . import admin_api, analytics_api, confirm_page, console, open_api, runtime_api
from .deps import error_response
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
    )
    app.state.platform = platform

    @app.exception_handler(MiniportError)
    async def _miniport_error(request: Request, exc: MiniportError) -> JSONResponse:
        return error_response(exc, _api_name(request))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # the field's path; a problem with the body as a whole (missing, not an object) names it
        problems = [
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'request body'}: {e['msg']}"
            for e in exc.errors()
        ]
        body: dict[str, Any] = {
            "error": "invalid_input",
            "message": "; ".join(problems),
            "detail": [{"loc": e["loc"], "msg": e["msg"]} for e in exc.errors()],
        }
        name = _api_name(request)
        if name:
            body["errMsg"] = f"{name}:fail {body['message']}"
        return JSONResponse(body, status_code=422)

    @app.exception_handler(DefinitionsInvalid)
    async def _bad_definition(request: Request, exc: DefinitionsInvalid) -> JSONResponse:
        errors = [e.as_dict() for e in exc.errors]
        return JSONResponse(
            {
                "error": "invalid_definition",
                "message": "; ".join(f"{e['path']}: {e['message']}" for e in errors),
                "errors": errors,
            },
            status_code=422,
        )

    app.include_router(runtime_api.router)
    app.include_router(analytics_api.runtime)
    app.include_router(analytics_api.admin)
    app.include_router(open_api.router)
    app.include_router(admin_api.router)
    app.include_router(confirm_page.router)
    console.install(app, platform)  # /console, /sdk and the console session for /admin/v1
    app.add_middleware(BodySizeLimit, max_bytes=platform.settings.max_request_bytes)
    return app
