"""Endpoints for developer servers (WeChat-compatible) and for host backends."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, StrictStr

from ..domain import json_text
from ..errors import StateUnavailable, Unauthorized, Unavailable
from .deps import bearer, platform_of
from .openapi_doc import ERRORS
from .strict_json import StrictJSONRoute

READY_TIMEOUT_S = 5.0

router = APIRouter(tags=["open"], route_class=StrictJSONRoute, responses=ERRORS)


@router.get("/sns/jscode2session")
async def jscode2session(
    request: Request,
    appid: Annotated[str, Query()] = "",
    secret: Annotated[str, Query()] = "",
    js_code: Annotated[str, Query()] = "",
    grant_type: Annotated[str, Query()] = "",
) -> dict[str, Any]:
    """Exchange a login code for the user's openid, in WeChat's response shape."""
    auth = platform_of(request).auth
    return await _busy_as_wechat(auth.jscode2session(appid, secret, js_code, grant_type))


@router.get("/cgi-bin/token")
async def wechat_token(
    request: Request,
    grant_type: Annotated[str, Query()] = "",
    appid: Annotated[str, Query()] = "",
    secret: Annotated[str, Query()] = "",
) -> dict[str, Any]:
    """WeChat's server API access token: {access_token, expires_in} or {errcode, errmsg}."""
    return await _busy_as_wechat(platform_of(request).wechat.token(grant_type, appid, secret))


@router.post("/wxa/fetchdatasetting")
async def wechat_fetchdatasetting(
    request: Request, access_token: Annotated[str, Query()] = ""
) -> dict[str, Any]:
    """WeChat's pre-fetch / periodic-update settings API (get, set_pre_fetch,
    set_period_fetch); a set waits for an admin unless the app is trusted for API changes."""
    body = await _json_or_none(request)
    return await _busy_as_wechat(platform_of(request).wechat.fetchdatasetting(access_token, body))


async def _busy_as_wechat(answer: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """WeChat's APIs answer in their own shape: the state database away is its ``-1`` "system
    busy" (retry), not Miniport's 503, which a WeChat client library reads as no answer (and
    jscode2session said ``40013 invalid appid``: a configuration error, never retried)."""
    try:
        return await answer
    except Unavailable as exc:
        return {"errcode": -1, "errmsg": f"system busy, try again later: {exc.message}"}


async def _json_or_none(request: Request) -> Any:
    """The body's JSON value, or None when it is not JSON for the strict reader (the same as
    every other route's: no lone surrogate, no nesting past the parser's depth)."""
    try:
        return json_text.loads(await request.body() or b"null")
    except ValueError:
        return None


async def _developer(request: Request, appid: str, access_token: str, secret: str) -> None:
    """The developer's back end: an access token (/cgi-bin/token) for this app, or its secret."""
    platform = platform_of(request)
    if access_token:
        app = await platform.wechat.app_for_token(access_token)
        if isinstance(app, dict):
            raise Unauthorized(str(app["errmsg"]))
        if app.appid != appid:
            raise Unauthorized("this access token is for another app")
        return
    if not secret:
        raise Unauthorized("send access_token (from /cgi-bin/token) or the app's secret")
    app = await platform.apps.get(appid)
    if not secrets.compare_digest(app.secret.encode(), secret.encode()):
        raise Unauthorized("invalid app secret")


Token = Annotated[str, Query()]
REFRESH = "/api/v1/apps/{appid}/background-fetch/refresh"


@router.post(REFRESH, tags=["developer"])
async def refresh_start(
    appid: str, request: Request, access_token: Token = "", secret: Token = ""
) -> dict[str, Any]:
    """Fetch now for {"users": [...]} or {"all": true} (every active user) and push the new data
    to their connected devices; one refresh per app at a time, on every node."""
    await _developer(request, appid, access_token, secret)
    return await platform_of(request).refresh.start(appid, await _json_or_none(request))


@router.get(REFRESH + "/{refresh_id}", tags=["developer"])
async def refresh_progress(
    appid: str, refresh_id: str, request: Request, access_token: Token = "", secret: Token = ""
) -> dict[str, Any]:
    await _developer(request, appid, access_token, secret)
    return await platform_of(request).refresh.progress(appid, refresh_id)


@router.delete(REFRESH + "/{refresh_id}", tags=["developer"])
async def refresh_cancel(
    appid: str, refresh_id: str, request: Request, access_token: Token = "", secret: Token = ""
) -> dict[str, Any]:
    await _developer(request, appid, access_token, secret)
    return await platform_of(request).refresh.cancel(appid, refresh_id)


@router.get("/healthz")
async def healthz(request: Request) -> dict[str, Any]:
    platform = platform_of(request)
    engine = platform.engine
    return {
        "ok": True,
        "scheduler": engine is not None,
        "fetches_completed": engine.completed if engine else 0,
    }


@router.get("/readyz")
async def readyz(request: Request) -> dict[str, Any]:
    """Whether this node can serve now: its state database answers within 5 s (a load
    balancer's or an orchestrator's readiness check; ``/healthz`` says the process is up).
    503 with ``state_unavailable`` and a Retry-After when it does not."""
    db = platform_of(request).db
    try:
        await asyncio.wait_for(db.read(db.fetch_one, "SELECT 1", ()), READY_TIMEOUT_S)
    except TimeoutError:
        raise StateUnavailable("the state database did not answer in time") from None
    return {"ok": True, "database": "ok"}


class RuntimeTokenIn(BaseModel):
    user_id: StrictStr = Field(min_length=1, max_length=128)
    device_id: StrictStr | None = Field(default=None, max_length=128)


@router.post("/host/v1/runtime-tokens", tags=["host"])
async def runtime_token(body: RuntimeTokenIn, request: Request) -> dict[str, Any]:
    """A host backend (authenticated with a host key) gets a runtime token for its user."""
    platform = platform_of(request)
    key = bearer(request)
    if key is None:
        raise Unauthorized("missing host key (Authorization: Bearer ...)")
    await platform.auth.host_key(key)
    token = platform.auth.runtime_token(body.user_id, body.device_id)
    return {
        "runtime_token": token,
        "user_id": body.user_id,
        "device_id": body.device_id or "default",
    }
