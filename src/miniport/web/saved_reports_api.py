"""Saved reports and dashboards over the admin API. Viewers read and run them (a dashboard is
for everyone of the app); developers save, delete and arrange them. Names travel in the path
(URL-encoded) or the body."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, StrictInt, StrictStr

from ..services.auth import Principal
from .deps import platform_of, require
from .openapi_doc import ERRORS
from .strict_json import StrictJSONRoute

router = APIRouter(
    prefix="/admin/v1/apps/{appid}/analytics",
    tags=["analytics"],
    route_class=StrictJSONRoute,
    responses=ERRORS,
)
Viewer = Annotated[Principal, Depends(require("viewer"))]
Developer = Annotated[Principal, Depends(require("developer"))]
JsonObject = Annotated[dict[str, Any], Body()]


class ItemIn(BaseModel):
    report: StrictStr
    width: StrictInt = 1


class MoveIn(BaseModel):
    position: StrictInt


# --- saved reports ---
@router.post("/saved", status_code=201)
async def save(appid: str, body: JsonObject, request: Request, who: Developer) -> dict[str, Any]:
    """``{"name", "kind": report|funnel|retention|paths|overview, "params": {...}}``; the
    parameters are those of the kind's own report call. 409 when the name is taken."""
    return await platform_of(request).saved.save(appid, body, who.name)


@router.get("/saved")
async def list_saved(appid: str, request: Request, who: Viewer) -> dict[str, Any]:
    return await platform_of(request).saved.list_saved(appid)


@router.get("/saved/{name}")
async def show(appid: str, name: str, request: Request, who: Viewer) -> dict[str, Any]:
    return await platform_of(request).saved.show(appid, name)


@router.post("/saved/{name}/run")
async def run(appid: str, name: str, request: Request, who: Viewer) -> dict[str, Any]:
    """The saved report's result: the same answer as its kind's report call."""
    return await platform_of(request).saved.run(appid, name)


@router.delete("/saved/{name}")
async def delete(appid: str, name: str, request: Request, who: Developer) -> dict[str, Any]:
    return await platform_of(request).saved.delete(appid, name, who.name)


# --- dashboards ---
@router.post("/dashboards", status_code=201)
async def create_dashboard(
    appid: str, body: JsonObject, request: Request, who: Developer
) -> dict[str, Any]:
    """``{"name", "last_days": N}`` or ``{"name", "from", "to"}`` (dates), and ``tz``."""
    return await platform_of(request).saved.create_dashboard(appid, body, who.name)


@router.get("/dashboards")
async def list_dashboards(appid: str, request: Request, who: Viewer) -> dict[str, Any]:
    return await platform_of(request).saved.dashboards(appid)


@router.get("/dashboards/{name}")
async def dashboard(appid: str, name: str, request: Request, who: Viewer) -> dict[str, Any]:
    return await platform_of(request).saved.dashboard(appid, name)


@router.post("/dashboards/{name}/run")
async def run_dashboard(appid: str, name: str, request: Request, who: Viewer) -> dict[str, Any]:
    """Every report on the dashboard under its range, each with its result or its error."""
    return await platform_of(request).saved.run_dashboard(appid, name)


@router.put("/dashboards/{name}/range")
async def set_range(
    appid: str, name: str, body: JsonObject, request: Request, who: Developer
) -> dict[str, Any]:
    return await platform_of(request).saved.set_range(appid, name, body, who.name)


@router.delete("/dashboards/{name}")
async def delete_dashboard(
    appid: str, name: str, request: Request, who: Developer
) -> dict[str, Any]:
    return await platform_of(request).saved.delete_dashboard(appid, name, who.name)


@router.post("/dashboards/{name}/items", status_code=201)
async def add_item(
    appid: str, name: str, body: ItemIn, request: Request, who: Developer
) -> dict[str, Any]:
    return await platform_of(request).saved.add(appid, name, body.report, body.width, who.name)


@router.post("/dashboards/{name}/items/{report}/move")
async def move_item(
    appid: str, name: str, report: str, body: MoveIn, request: Request, who: Developer
) -> dict[str, Any]:
    return await platform_of(request).saved.move(appid, name, report, body.position, who.name)


@router.delete("/dashboards/{name}/items/{report}")
async def remove_item(
    appid: str, name: str, report: str, request: Request, who: Developer
) -> dict[str, Any]:
    return await platform_of(request).saved.remove(appid, name, report, who.name)
