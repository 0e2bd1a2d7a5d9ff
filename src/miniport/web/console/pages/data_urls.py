"""An app's data URLs: the settings, the pending changes with their QR codes, the history, and
requesting a change (``/apps/{appid}/urls``, ``/apps/{appid}/changes``).

Invariants: developers request changes here; an admin confirms or rejects a pending change
here (or through its link), whoever requested it and however (console, CLI, API), unless the
two-person rule (``MINIPORT_TWO_PERSON_RULE``) forbids confirming one's own request; a QR code
is shown only to developers and only while the code is kept sealed in the state database
(:class:`~miniport.web.console.qr_codes.SharedQRCodes`, alike on every node); a refused request
shows the page again with the error at the field at fault and the value typed."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form
from fastapi.responses import Response

from ....errors import InvalidInput, MiniportError
from ..render import BASE, qr_png, redirect, render, state_of
from ._common import AdminPage, Ctx, DeveloperPage, ViewerPage, app_context

router = APIRouter()


def _whole(text: str) -> bool:
    """A whole number ``int`` reads: ASCII digits (``str.isdigit`` also takes "²")."""
    text = text.strip()
    return text.isascii() and text.isdigit()


async def urls_page(
    ctx: Ctx,
    appid: str,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    state = state_of(ctx.request)
    p = state.platform
    context = await app_context(ctx, appid, "urls")
    settings = await p.apps.settings(appid)
    fetch_settings = await p.apps.fetch_settings(appid)
    history = await p.db.read(p.registry.list_changes, appid, 20)
    now = p.clock.now()
    pending = []
    for change in settings["pending"]:
        qr = await state.qr.get(change["id"], now) if ctx.can("developer") else None
        pending.append({**change, "qr": qr})
    return render(
        ctx.request,
        "urls.html",
        session=ctx.session,
        settings=settings,
        fetch_settings=fetch_settings,
        pending=pending,
        history=history,
        errors=errors or {},
        values=values or {},
        highlight=ctx.request.query_params.get("change"),
        me=ctx.who.name,
        two_person=p.apps.two_person_rule,
        status=status,
        **context,
    )


@router.get("/apps/{appid}/urls")
async def urls(ctx: ViewerPage, appid: str) -> Response:
    return await urls_page(ctx, appid)


@router.post("/apps/{appid}/changes")
async def request_change(
    ctx: DeveloperPage,
    appid: str,
    kind: Annotated[str, Form(max_length=16)],
    op: Annotated[str, Form(max_length=16)] = "set",
    url: Annotated[str, Form(max_length=4096)] = "",
    ratio: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    state = state_of(ctx.request)
    field = f"grey-{kind}" if op.startswith("grey") else kind  # where an error is shown
    try:
        if ratio.strip() and not _whole(ratio):
            raise InvalidInput("the grey ratio must be a whole percentage 0..100")
        pending = await state.platform.apps.request_change(
            appid, kind, op, url.strip() or None, ctx.who.name,
            int(ratio) if ratio.strip() else None,
        )  # fmt: skip
    except MiniportError as exc:
        return await urls_page(
            ctx, appid, errors={field: exc.message}, values={field: url}, status=exc.http_status
        )
    await state.qr.remember(pending)
    change_id = pending.change.id
    return redirect(
        f"{BASE}/apps/{appid}/urls?change={quote(change_id)}#change-{change_id}",
        ("flash.change_requested", {}),
    )


@router.post("/apps/{appid}/fetch-settings")
async def save_fetch_settings(
    ctx: DeveloperPage,
    appid: str,
    interval: Annotated[str, Form(max_length=16)] = "",
    active_days: Annotated[str, Form(max_length=4)] = "",
    fetch_timeout: Annotated[str, Form(max_length=16, alias="timeout")] = "",
    header: Annotated[str, Form(max_length=1200)] = "",
    clear_headers: Annotated[str, Form(max_length=4)] = "",
) -> Response:
    """The app's fetch settings; empty fields keep their value, a header line adds or
    replaces one (its value is never shown again, only masked)."""
    changes: dict[str, Any] = {
        "interval": interval.strip() or None,
        "timeout": fetch_timeout.strip() or None,
        "headers": [header] if header.strip() else None,
        "clear_headers": bool(clear_headers),
    }
    try:
        if active_days.strip():
            if not _whole(active_days):
                raise InvalidInput("active days must be a whole number")
            changes["active_days"] = int(active_days)
        await state_of(ctx.request).platform.apps.update_fetch_settings(
            appid, changes, ctx.who.name
        )
    except MiniportError as exc:
        return await urls_page(ctx, appid, errors={"settings": exc.message}, status=exc.http_status)
    return redirect(f"{BASE}/apps/{appid}/urls#fetch-settings", ("flash.fetch_settings_saved", {}))


@router.get("/apps/{appid}/changes/{change_id}/qr.png")
async def change_qr(ctx: DeveloperPage, appid: str, change_id: str) -> Response:
    state = state_of(ctx.request)
    found = await state.qr.get(change_id, state.platform.clock.now())
    change = await state.platform.db.read(state.platform.registry.get_change, change_id)
    if found is None or change.appid != appid:
        return Response(status_code=404)
    return Response(qr_png(found[1]), media_type="image/png", headers={"Cache-Control": "no-store"})


@router.post("/apps/{appid}/changes/{change_id}/confirm")
async def confirm_change(ctx: AdminPage, appid: str, change_id: str) -> Response:
    return await _decide(ctx, appid, change_id, confirm=True)


@router.post("/apps/{appid}/changes/{change_id}/reject")
async def reject_change(ctx: AdminPage, appid: str, change_id: str) -> Response:
    return await _decide(ctx, appid, change_id, confirm=False)


async def _decide(ctx: Ctx, appid: str, change_id: str, *, confirm: bool) -> Response:
    apps = state_of(ctx.request).platform.apps
    back = f"{BASE}/apps/{appid}/urls"
    try:
        change = await apps.db.read(apps.registry.get_change, change_id)
        if change.appid != appid:
            return Response(status_code=404)
        if confirm:
            await apps.confirm_by_id(change_id, ctx.who.name)
        else:
            await apps.reject(change_id, ctx.who.name)
    except MiniportError as exc:
        return redirect(back, ("flash.change_refused", {"reason": exc.message}), kind="error")
    done = "flash.change_confirmed" if confirm else "flash.change_rejected"
    return redirect(back, (done, {}))
