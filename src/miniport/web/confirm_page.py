"""The page a confirmation link (the QR code) opens."""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..errors import MiniportError
from .deps import platform_of

router = APIRouter(include_in_schema=False)


@router.get("/confirm/{code}")
async def confirm_page(code: str, request: Request) -> HTMLResponse:
    platform = platform_of(request)
    try:
        change = await platform.apps.change_for_code(code)
    except MiniportError as exc:
        return HTMLResponse(f"<h1>Cannot confirm</h1><p>{html.escape(exc.message)}</p>", 410)
    rows = "".join(
        f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in (("app", change.appid), ("kind", change.kind), ("change", change.op),
                     ("URL", change.url or "-"), ("requested by", change.requested_by),
                     ("status", change.status))
    )
    return HTMLResponse(
        f"<!doctype html><meta name=viewport content='width=device-width'><title>Confirm change</title>"
        f"<h1>Confirm a data URL change</h1><table>{rows}</table>"
        f"<p>An admin confirms in the console (signed in) or with "
        f"<code>miniport change confirm {html.escape(code)}</code>.</p>"
    )
