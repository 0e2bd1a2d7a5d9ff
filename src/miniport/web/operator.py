"""What an operator reaches without signing in: ``/`` (sends a browser to the console),
``/metrics`` (Prometheus text format), ``/docs`` (Swagger UI served from the installed
``swagger_ui_bundle`` package, so it works on a machine without internet), and the access log.

Invariants: nothing here reads a CDN; the access log writes one ``miniport.access`` line per
finished HTTP request (status, duration), never a query string or a header (they may carry
codes and tokens)."""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

from ..metrics import CONTENT_TYPE
from .deps import platform_of

access_log = logging.getLogger("miniport.access")
router = APIRouter(include_in_schema=False)
ASSETS = "/docs/assets"


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/console", status_code=302)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(platform_of(request).metrics.exposition(), media_type=CONTENT_TYPE)


@router.get("/docs")
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Miniport API",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
    )


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="swagger-ui")
    app.add_middleware(AccessLog)


class AccessLog:
    """One line per finished request: client, method, path, status, milliseconds. 4xx are
    logged as warnings, 5xx as errors."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not access_log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            log_request(scope, status, (time.perf_counter() - started) * 1000)


def log_request(scope: Scope, status: int, ms: float) -> None:
    """The access-log line of a finished request."""
    client = scope.get("client")
    address = client[0] if client else "-"
    method, path = scope["method"], scope["path"]
    level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
    access_log.log(
        level,
        '%s "%s %s" %d %.0fms', address, method, path, status, ms,
        extra={"fields": {"client": address, "method": method, "path": path,
                          "status": status, "ms": round(ms, 1)}},
    )  # fmt: skip
