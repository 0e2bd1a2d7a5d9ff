"""CORS for container pages on other origins, limited to what a container needs: the runtime API
(``/runtime/``) and the JavaScript runtime's files (``/sdk/``). Only the origins listed in
``MINIPORT_CORS_ORIGINS`` get CORS headers (none by default); the admin API and the console
never do. Preflight requests (OPTIONS with Access-Control-Request-Method) are answered here:
200 with the allowed methods and headers for a listed origin, 400 for any other. Answers expose
``Retry-After`` and ``Date`` (not headers a page on another origin may read otherwise): the
JavaScript runtime waits at least that long after a 503 or 429 before it sends a batch again,
an HTTP-date counted from the answer's ``Date`` (the server's clock, not the phone's)."""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

CORS_PATHS = ("/runtime/", "/sdk/")


class ContainerCORS:
    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After", "Date"],
            allow_credentials=False,  # runtime calls carry a bearer token, never cookies
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(CORS_PATHS):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
