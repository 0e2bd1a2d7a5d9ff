"""The admin API for an app's members: members (and admins) list them; admins add and remove
developers and viewers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, StrictStr

from ..services.auth import Principal
from .deps import members_of, require
from .openapi_doc import ERRORS
from .strict_json import StrictJSONRoute

router = APIRouter(
    prefix="/admin/v1/apps/{appid}/members",
    tags=["admin"],
    route_class=StrictJSONRoute,
    responses=ERRORS,
)
Viewer = Annotated[Principal, Depends(require("viewer"))]
Admin = Annotated[Principal, Depends(require("admin"))]


class MemberIn(BaseModel):
    user: StrictStr = Field(min_length=1, max_length=160, description="user name, or key:NAME")
    role: Literal["developer", "viewer"]


@router.get("")
async def list_members(appid: str, request: Request, who: Viewer) -> dict[str, Any]:
    return {"appid": appid, "members": await members_of(request).list(appid)}


@router.post("", status_code=201)
async def add_member(appid: str, body: MemberIn, request: Request, who: Admin) -> dict[str, Any]:
    return await members_of(request).add(appid, body.user, body.role, who.name)


@router.delete("/{user}")
async def remove_member(appid: str, user: str, request: Request, who: Admin) -> dict[str, Any]:
    return await members_of(request).remove(appid, user, who.name)
