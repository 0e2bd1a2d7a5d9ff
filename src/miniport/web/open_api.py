"""Endpoints for developer servers (WeChat-compatible) and for host backends."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, StrictStr

from ..errors import Unauthorized
from .deps import bearer, platform_of

router = APIRouter(tags=["open"])


@router.get("/sns/jscode2session")
async def jscode2session(
    request: Request,
    appid: Annotated[str, Query()] = "",
    secret: Annotated[str, Query()] = "",
    js_code: Annotated[str, Query()] = "",
    grant_type: Annotated[str, Query()] = "",
) -> dict[str, Any]:
    """Exchange a login code for the user's openid, in WeChat's response shape."""
    return await platform_of(request).auth.jscode2session(appid, secret, js_code, grant_type)


@router.get("/cgi-bin/token")
async def wechat_token(
    request: Request,
    grant_type: Annotated[str, Query()] = "",
    appid: Annotated[str, Query()] = "",
    secret: Annotated[str, Query()] = "",
) -> dict[str, Any]:
    """WeChat's server API access token: {access_token, expires_in} or {errcode, errmsg}."""
    return await platform_of(request).wechat.token(grant_type, appid, secret)


@router.post("/wxa/fetchdatasetting")
async def wechat_fetchdatasetting(
    request: Request, access_token: Annotated[str, Query()] = ""
) -> dict[str, Any]:
    """WeChat's pre-fetch / periodic-update settings API (get, set_pre_fetch,
    set_period_fetch); a set waits for an admin unless the app is trusted for API changes."""
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        body = None
    return await platform_of(request).wechat.fetchdatasetting(access_token, body)


@router.get("/healthz")
async def healthz(request: Request) -> dict[str, Any]:
    platform = platform_of(request)
    engine = platform.engine
    return {
        "ok": True,
        "scheduler": engine is not None,
        "fetches_completed": engine.completed if engine else 0,
    }


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
