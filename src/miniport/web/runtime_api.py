"""The runtime HTTP API: what a host container calls on behalf of a signed-in user."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, StrictInt, StrictStr, ValidationError
from starlette.routing import Route

from ..domain.requests import Launch
from ..domain.tokens import RuntimeIdentity
from ..errors import InvalidInput, MiniportError, Problem, join_problems
from ..events.broker import sse_frame
from .deps import app_runtime_identity, bearer, error_response, platform_of, runtime_identity
from .event_stream import EventStreamResponse, reconnect_field
from .openapi_doc import ERRORS, EVENT_STREAM
from .strict_json import StrictJSONRoute

router = APIRouter(
    prefix="/runtime/v1", tags=["runtime"], route_class=StrictJSONRoute, responses=ERRORS
)
Identity = Annotated[RuntimeIdentity, Depends(runtime_identity)]


class LaunchIn(BaseModel):
    path: StrictStr = Field(default="", max_length=1024)
    query: StrictStr | dict[str, StrictStr | StrictInt] = Field(default="")
    scene: StrictInt = Field(default=1001, ge=0, le=99999)
    version: StrictStr = Field(default="", max_length=64)
    envVersion: Literal["develop", "trial", "release", ""] = ""
    platform: StrictStr = Field(default="", max_length=16, pattern=r"^[a-z0-9_-]*$")

    def to_launch(self) -> Launch:
        query = self.query if isinstance(self.query, str) else urlencode(self.query)
        if len(query) > 4096:
            raise InvalidInput("query is longer than 4096 characters")
        for name, value in (("path", self.path), ("query", query)):
            if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
                raise InvalidInput(f"{name} contains control characters")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in self.version):
            raise InvalidInput("version contains control characters")
        return Launch(
            self.path.lstrip("/"), query, self.scene, self.version, self.envVersion, self.platform
        )


class TokenIn(BaseModel):
    token: StrictStr


@router.post(
    "/apps/{appid}/launch",
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": LaunchIn.model_json_schema()}},
        }
    },
)
async def launch(appid: str, request: Request) -> Any:
    """A cold start: the platform pre-fetches at once. On the cold-start path, so the body is
    read by hand rather than through dependency injection (it costs more than the launch)."""
    try:
        who = await app_runtime_identity(request, appid)
        raw = await request.body()
        try:
            body = LaunchIn.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            problems = [
                Problem(".".join(str(p) for p in e["loc"]) or "request body", e["msg"])
                for e in exc.errors()
            ]
            raise InvalidInput(join_problems(problems), problems) from exc
        result = await platform_of(request).background.launch(appid, who.user_id, body.to_launch())
        return JSONResponse(result)
    except MiniportError as exc:
        return error_response(exc, "launch")


@router.post("/apps/{appid}/background-fetch/token")
async def set_token(appid: str, body: TokenIn, request: Request, who: Identity) -> Any:
    try:
        await platform_of(request).background.set_token(appid, who.user_id, body.token)
    except MiniportError as exc:
        return error_response(exc, "setBackgroundFetchToken")
    return {"errMsg": "setBackgroundFetchToken:ok"}


@router.get("/apps/{appid}/background-fetch/token")
async def get_token(appid: str, request: Request, who: Identity) -> Any:
    try:
        token = await platform_of(request).background.get_token(appid, who.user_id)
    except MiniportError as exc:
        return error_response(exc, "getBackgroundFetchToken")
    return {"token": token, "errMsg": "getBackgroundFetchToken:ok"}


_DATA_PARAMS: dict[str, Any] = {
    "parameters": [
        {
            "name": "fetchType",
            "in": "query",
            "schema": {"type": "string", "enum": ["periodic", "pre"], "default": "periodic"},
        },
        {
            "name": "waitMs",
            "in": "query",
            "description": "wait up to this long for an in-flight fetch",
            "schema": {"type": "integer", "minimum": 0, "maximum": 10000, "default": 0},
        },
    ]
}


@router.get("/apps/{appid}/background-fetch/data", openapi_extra=_DATA_PARAMS)
async def get_data(appid: str, request: Request) -> Any:
    """getBackgroundFetchData, as documented. Requests are served by :data:`DATA_ROUTE`, which
    matches the same path ahead of every router and runs :func:`read_data` directly."""
    return await read_data(request, appid)


async def read_data(request: Request, appid: str) -> Response:
    """The hot read path: parameters are read by hand rather than through dependency injection,
    which costs more than the read itself."""
    try:
        who = await app_runtime_identity(request, appid)
        params = request.query_params
        wait = params.get("waitMs", "0")
        # ASCII digits, and few: str.isdigit takes "²", which int() refuses, and int() refuses
        # a number of thousands of digits (a 500 either way)
        if not (wait.isascii() and wait.isdigit() and len(wait) <= 9):
            raise InvalidInput("waitMs must be a whole number of milliseconds")
        background = platform_of(request).background
        result = await background.get_data(
            appid, who.user_id, params.get("fetchType", "periodic"), int(wait)
        )
        return JSONResponse(result)  # already JSON-ready: skip FastAPI's encoder
    except MiniportError as exc:
        return error_response(exc, "getBackgroundFetchData")


async def _serve_data(request: Request) -> Response:
    return await read_data(request, request.path_params["appid"])


def _data_route() -> Route:
    """A plain route for getBackgroundFetchData, mounted by ``create_app`` ahead of the routers:
    matched first instead of after a walk through nested routers, and called without the
    framework's dependency and parameter machinery (the endpoint reads its parameters itself).
    Everything around the route is the same: the app's middleware (CORS, body limit, access log,
    server errors) and exception handlers. GET only, as the documented route (no implicit
    HEAD), so every other method gets the same 405."""
    route = Route(
        router.prefix + "/apps/{appid}/background-fetch/data",
        _serve_data,
        methods=["GET"],
        name="get_data",
        include_in_schema=False,  # documented by the APIRoute above
    )
    route.methods = {"GET"}
    return route


DATA_ROUTE = _data_route()


@router.post("/apps/{appid}/login")
async def login(appid: str, request: Request, who: Identity) -> Any:
    platform = platform_of(request)
    try:
        await platform.apps.get(appid)
        code = platform.auth.login_code(appid, who.user_id)
    except MiniportError as exc:
        return error_response(exc, "login")
    return {"code": code, "errMsg": "login:ok"}


@router.get("/events", response_class=StreamingResponse, responses=EVENT_STREAM)
async def events(request: Request) -> Any:
    """Server-sent events for this runtime. Browsers' EventSource cannot send headers, so the
    token may also come as ``?access_token=``. With ``?appid=`` the stream carries only that
    app's messages (and the user's messages that name no app); a token minted for one app
    (the simulator's) opens a stream of that app only. (The server answers most of
    these requests ahead of the framework's routing, with the same ``open_events``: see
    ``web.app.MiniportAPI``.)"""
    return await open_events(request)


async def open_events(request: Request) -> Response:
    """The event stream of the runtime ``request`` identifies, or the error response."""
    token = request.query_params.get("access_token") or bearer(request)
    appid = request.query_params.get("appid")
    platform = platform_of(request)
    try:
        await platform.auth.refresh_revocations()
        # checked once for the whole connection: not kept in the verified-token cache
        who = (
            platform.auth.identify(token, remember=False)
            if token
            else await runtime_identity(request)  # no token: its "missing token" error
        )
        if who.appid is not None:  # a token for one app: a stream of that app only
            appid = who.for_app(appid or who.appid).appid
        if appid is not None:
            await platform.background.apps.get(appid)
        # a revocation learned meanwhile would end the streams open, not this one yet: checked
        # again, with no wait from here to subscribing
        platform.auth.not_revoked(who)
    except MiniportError as exc:
        return error_response(exc)
    broker = platform.broker
    hello = {"type": "connected", "user": who.user_id, "device": who.device_id}
    # then when to reconnect once the stream drops: each browser its own time
    frames = sse_frame(hello) + reconnect_field()
    # the token's issue time goes with the stream: it ends once the token is revoked or expires
    sub = broker.subscribe(who.user_id, who.device_id, appid=appid, issued_at=who.issued_at)
    platform.stream_guard.watch()
    return EventStreamResponse(broker, sub, frames)
