"""One user's analytics over the admin API: their events (for support) and their erasure
(personal-information law: a user may ask for it). Both need the developer role of the app
(or admin): a user's events are personal data, which viewers do not see one by one. The user
id travels in the query string or the body, never in the path (it may hold a slash)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, StrictStr

from ..analytics.user_events import DEFAULT_LIMIT, MAX_LIMIT
from ..services.auth import Principal
from .deps import platform_of, require
from .openapi_doc import ERRORS
from .strict_json import StrictJSONRoute

router = APIRouter(
    prefix="/admin/v1/apps/{appid}/analytics/users",
    tags=["analytics"],
    route_class=StrictJSONRoute,
    responses=ERRORS,
)
Developer = Annotated[Principal, Depends(require("developer"))]


class ForgetIn(BaseModel):
    user_id: StrictStr = Field(min_length=1, max_length=128)


@router.get("/events")
async def user_events(
    appid: str,
    request: Request,
    who: Developer,
    user: Annotated[str, Query(min_length=1, max_length=128)],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    before: Annotated[str | None, Query(max_length=400)] = None,
) -> dict[str, Any]:
    """``{"user_id", "events": [...], "before", "more"}``: the user's newest ``limit`` events
    (before the cursor ``before``), in time order, newest last, fields decoded by name."""
    return await platform_of(request).analytics.user_events(appid, user, limit=limit, before=before)


@router.post("/forget")
async def forget(appid: str, body: ForgetIn, request: Request, who: Developer) -> dict[str, Any]:
    """Erase a user's events and live tests: ``{"deleted": n, "tests": k}`` (audited)."""
    return await platform_of(request).analytics.forget_user(appid, body.user_id, who.name)
