"""One user's analytics in the console (``/apps/{appid}/analytics/users``), for developers and
admins of the app: look a user up (their events in time order, newest last, paged back with
"older events"), and erase them behind a confirmation page that asks for the user id again.
The same service calls as the admin API; erasure is audited there."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query
from fastapi.responses import Response

from ....errors import MiniportError
from ..render import BASE, redirect, render, state_of
from ._common import DeveloperPage, app_context

router = APIRouter()
PAGE = 50


@router.get("/apps/{appid}/analytics/users")
async def user_lookup(
    ctx: DeveloperPage,
    appid: str,
    user: Annotated[str, Query(max_length=128)] = "",
    before: Annotated[str, Query(max_length=400)] = "",
) -> Response:
    """A user's events (``?user=``), ``PAGE`` at a time (``&before=`` for older ones)."""
    values = await app_context(ctx, appid, "users")
    found, error = None, None
    user = user.strip()
    if user:
        try:
            found = await state_of(ctx.request).platform.analytics.user_events(
                appid, user, limit=PAGE, before=before or None
            )
        except MiniportError as exc:
            error = exc.message
    older = None
    if found and found["before"]:
        query = urlencode({"user": user, "before": found["before"]})
        older = f"{BASE}/apps/{appid}/analytics/users?{query}"
    return render(
        ctx.request,
        "analytics_users.html",
        session=ctx.session,
        user_id=user,
        found=found,
        older=older,
        error=error,
        **values,
    )


@router.get("/apps/{appid}/analytics/users/forget")
async def forget_confirm(
    ctx: DeveloperPage, appid: str, user: Annotated[str, Query(min_length=1, max_length=128)]
) -> Response:
    """The confirmation: what goes, and the user id to type again."""
    values = await app_context(ctx, appid, "users")
    p = state_of(ctx.request).platform
    shown = await p.analytics.user_events(appid, user, limit=1)
    return render(
        ctx.request,
        "analytics_forget.html",
        session=ctx.session,
        user_id=user,
        has_events=bool(shown["events"]),
        error=None,
        **values,
    )


@router.post("/apps/{appid}/analytics/users/forget")
async def forget(
    ctx: DeveloperPage,
    appid: str,
    user: Annotated[str, Form(min_length=1, max_length=128)],
    confirm: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Erase the user once the id typed again matches."""
    if confirm != user:
        values = await app_context(ctx, appid, "users")
        return render(
            ctx.request,
            "analytics_forget.html",
            session=ctx.session,
            user_id=user,
            has_events=True,
            error=True,
            status=422,
            **values,
        )
    done = await state_of(ctx.request).platform.analytics.forget_user(appid, user, ctx.who.name)
    flash = ("flash.user_forgotten", {"user": user, "n": done["deleted"]})
    return redirect(f"{BASE}/apps/{appid}/analytics/users", flash)
