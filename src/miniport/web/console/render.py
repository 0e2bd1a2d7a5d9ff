"""The console's shared state and how a page becomes a response: the Jinja2 environment, the
QR codes of changes requested from the console (shared by every node, ``qr_codes``), the flash
message cookie and the security headers every page carries.

Invariants: every HTML page goes through :func:`render` (so it has the security headers, the
CSRF field of its session and the language links); a flash message lives in a short-lived
cookie that the next rendered page shows once and deletes."""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import qrcode
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from ...domain.urls import shown_url
from ...platform import Platform
from ...services.auth import ROLES
from . import i18n
from .auth import CSRF_FIELD, ConsoleAuth, Session
from .qr_codes import SharedQRCodes

BASE = "/console"
STATIC_DIR = Path(__file__).resolve().parent / "static"
FLASH_COOKIE = "mp_flash"
QR_BOX = 8
QR_BORDER = 2


# --- state shared by the pages ---
def qr_png(link: str) -> bytes:
    """The PNG of a QR code that encodes ``link`` (qrcode + Pillow)."""
    qr = qrcode.QRCode(
        border=QR_BORDER, box_size=QR_BOX, error_correction=qrcode.constants.ERROR_CORRECT_M
    )
    qr.add_data(link)
    qr.make(fit=True)
    image = qr.make_image(fill_color="black", back_color="white")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _static_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(
                f"{path.relative_to(STATIC_DIR)}:{stat.st_size}:{stat.st_mtime_ns}".encode()
            )
    return digest.hexdigest()[:10]


def page_json(value: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` block (no ``</script>`` inside)."""
    return Markup(json.dumps(value, ensure_ascii=False).replace("<", "\\u003c"))


def _format_ts(value: float | None) -> str:
    if value is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))


class ConsoleState:
    def __init__(self, platform: Platform, auth: ConsoleAuth) -> None:
        self.platform = platform
        self.auth = auth
        self.qr = SharedQRCodes(platform)
        self.version = _static_version()
        self.env = Environment(
            loader=PackageLoader("miniport.web.console", "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["ts"] = _format_ts
        self.env.filters["shown_url"] = shown_url  # invisible and bidi characters made visible
        self.env.filters["tojson_attr"] = lambda v: json.dumps(v, ensure_ascii=False)

    def static(self, path: str) -> str:
        return f"{BASE}/static/{path}?v={self.version}"


def state_of(request: Request) -> ConsoleState:
    return request.app.state.console  # type: ignore[no-any-return]


def here(request: Request) -> str:
    path = request.url.path
    return f"{path}?{request.url.query}" if request.url.query else path


# --- rendering ---
def render(
    request: Request,
    template: str,
    *,
    session: Session | None = None,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    state = state_of(request)
    lang = i18n.pick_language(request)
    t = i18n.translator(lang)
    if session is None:
        session = getattr(request.state, "console_session", None)
    flash = None
    raw = request.cookies.get(FLASH_COOKIE)
    if raw:
        flash = _flash(raw, t)
    html = state.env.get_template(template).render(
        request=request,
        t=t,
        lang=lang,
        languages=i18n.LANGUAGES,
        base=BASE,
        user=session.user if session else None,
        csrf=session.csrf if session else "",
        csrf_field=Markup('<input type="hidden" name="{}" value="{}">').format(
            CSRF_FIELD, session.csrf if session else ""
        ),
        js_i18n=json.dumps(i18n.js_catalog(lang), ensure_ascii=False).replace("</", "<\\/"),
        static=state.static,
        flash=flash,
        path=request.url.path,
        here=here(request),
        lang_links={code: _with_lang(request, code) for code in i18n.LANGUAGES},
        roles=ROLES,
        **values,
    )
    response = HTMLResponse(html, status_code=status)
    security_headers(response)
    if raw:
        response.delete_cookie(FLASH_COOKIE, path="/")
    chosen = i18n.normalize(request.query_params.get("lang"))
    if chosen:
        response.set_cookie(i18n.LANG_COOKIE, chosen, max_age=365 * 86400, samesite="lax", path="/")
    return response


def _with_lang(request: Request, lang: str) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return f"{request.url.path}?{urlencode([*params, ('lang', lang)])}"


def _flash(raw: str, t: i18n.Translate) -> dict[str, str] | None:
    """The flash message a redirect left in its cookie, or None. The cookie is the browser's
    to send: only a key of the catalog's flash messages is translated (any other text was
    used as a format string: "{0}" made every page a 500 for as long as the cookie lived,
    "{a.__class__.__mro__}" showed Python's internals), and anything malformed is dropped."""
    try:
        data = json.loads(raw)
        key = data["key"]
        if not (isinstance(key, str) and key.startswith("flash.") and key in i18n.catalog("en")):
            return None
        params = {str(k): str(v) for k, v in data.get("params", {}).items()}
        return {"kind": str(data.get("kind", "ok")), "text": t(key, **params)}
    except Exception:  # a malformed cookie is no message, whatever is wrong with it
        return None


def security_headers(response: Response) -> None:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; form-action 'self'; "
        "base-uri 'none'"
    )


def redirect(
    url: str, flash: tuple[str, dict[str, Any]] | None = None, kind: str = "ok"
) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    if flash is not None:
        response.set_cookie(
            FLASH_COOKIE,
            json.dumps({"kind": kind, "key": flash[0], "params": flash[1]}),
            max_age=60,
            httponly=True,
            samesite="lax",
            path="/",
        )
    return response


def message_page(
    request: Request, title_key: str, message: str, status: int, **values: Any
) -> HTMLResponse:
    return render(
        request, "message.html", status=status, title_key=title_key, message=message, **values
    )


__all__ = [
    "BASE",
    "STATIC_DIR",
    "ConsoleState",
    "here",
    "message_page",
    "page_json",
    "qr_png",
    "redirect",
    "render",
    "security_headers",
    "state_of",
]
