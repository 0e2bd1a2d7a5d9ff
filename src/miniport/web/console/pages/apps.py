"""The app list, creating an app, an app's overview and rotating its secret (``/apps``,
``/apps/{appid}``, ``/apps/{appid}/secret``).

Invariants: viewers see (developers and viewers only the apps they are members of);
developers create (and become the new app's developer) and rotate; a refused name shows the
list again with the error, nothing created."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import Response

from ....errors import MiniportError
from ...deps import members_of, visible_apps
from ..render import BASE, redirect, render, state_of
from ._common import DeveloperPage, ViewerPage, app_context

router = APIRouter()


@router.get("/apps")
async def apps_page(ctx: ViewerPage) -> Response:
    apps = await visible_apps(ctx.request, ctx.who)
    return render(ctx.request, "apps.html", session=ctx.session, apps=apps, can=ctx.can, error=None)


@router.post("/apps")
async def create_app(ctx: DeveloperPage, name: Annotated[str, Form(max_length=128)]) -> Response:
    p = state_of(ctx.request).platform
    try:
        created = await p.apps.create(name, ctx.who.name)
        await members_of(ctx.request).add_creator(created.appid, ctx.who)
    except MiniportError as exc:
        apps = await visible_apps(ctx.request, ctx.who)
        return render(
            ctx.request,
            "apps.html",
            session=ctx.session,
            apps=apps,
            can=ctx.can,
            error=exc.message,
            status=exc.http_status,
        )
    return redirect(f"{BASE}/apps/{created.appid}", ("flash.app_created", {"name": created.name}))


@router.get("/apps/{appid}")
async def app_page(ctx: ViewerPage, appid: str) -> Response:
    p = state_of(ctx.request).platform
    values = await app_context(ctx, appid, "overview")
    settings = await p.apps.settings(appid)
    events = await p.db.read(p.analytics.defs.events, appid)
    has_url = any(u.get("url") for u in settings["urls"].values())
    steps = {"url": has_url, "event": bool(events)}  # what a new app still needs
    return render(
        ctx.request, "app.html", session=ctx.session, settings=settings, steps=steps, **values
    )


@router.post("/apps/{appid}/secret")
async def rotate_secret(ctx: DeveloperPage, appid: str) -> Response:
    await state_of(ctx.request).platform.apps.rotate_secret(appid, ctx.who.name)
    return redirect(f"{BASE}/apps/{appid}", ("flash.secret_rotated", {}))
