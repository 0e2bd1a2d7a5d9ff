"""The console's pages. Every page and every form action checks the role on the server through
``deps.require`` (the session resolver behind it also checks the CSRF token of every POST).
Reads and writes go through the same services as the admin API; the pages' scripts call the
admin API itself (``/admin/v1``) with the session cookie and the ``X-CSRF-Token`` header."""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import qrcode
from fastapi import Depends, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from ...errors import Forbidden, MiniportError, Unauthorized
from ...platform import Platform
from ...services.auth import ROLES, Principal
from ..deps import members_of, require, visible_apps
from . import i18n
from .auth import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_TTL_S,
    ConsoleAuth,
    Session,
    is_https,
)
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


ANALYTICS_TESTS_SHOWN = 10


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
        self.env.filters["tojson_attr"] = lambda v: json.dumps(v, ensure_ascii=False)

    def static(self, path: str) -> str:
        return f"{BASE}/static/{path}?v={self.version}"


def state_of(request: Request) -> ConsoleState:
    return request.app.state.console  # type: ignore[no-any-return]


# --- who is asking ---
class SignInNeeded(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class PasswordChangeNeeded(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class Refused(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


@dataclass(frozen=True)
class Ctx:
    request: Request
    session: Session
    who: Principal

    def can(self, role: str) -> bool:
        return self.who.can(role)


def here(request: Request) -> str:
    path = request.url.path
    return f"{path}?{request.url.query}" if request.url.query else path


def safe_next(value: str | None, default: str = f"{BASE}/apps") -> str:
    """Only a local path: never another site (``//host``, ``/\\host``) or a scheme."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    if any(ch in value for ch in "\r\n\\"):
        return default
    return value


def page(
    role: str = "viewer", *, password_change: bool = False
) -> Callable[[Request], Awaitable[Ctx]]:
    """A page or form action for ``role`` and above (checked by ``deps.require``)."""
    guard = require(role)

    async def dependency(request: Request) -> Ctx:
        state = state_of(request)
        session = await state.auth.session(request)
        if session is None:
            raise SignInNeeded(here(request) if request.method == "GET" else f"{BASE}/apps")
        if password_change:  # the one page a user with a one-time password may use
            if request.method != "GET" and not await state.auth.csrf_ok(request, session.csrf):
                raise Refused("missing or wrong CSRF token; reload the page and try again")
            return Ctx(request, session, session.user.principal)
        if session.user.must_change_password:
            raise PasswordChangeNeeded(here(request))
        try:
            who = await guard(request)
        except Forbidden as exc:
            raise Refused(exc.message) from exc
        except Unauthorized as exc:
            raise SignInNeeded(here(request)) from exc
        return Ctx(request, session, who)

    return dependency


ViewerPage = Annotated[Ctx, Depends(page("viewer"))]
DeveloperPage = Annotated[Ctx, Depends(page("developer"))]
AdminPage = Annotated[Ctx, Depends(page("admin"))]
AnyUserPage = Annotated[Ctx, Depends(page("viewer", password_change=True))]


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
        try:
            data = json.loads(raw)
            params = {k: str(v) for k, v in data.get("params", {}).items()}
            flash = {"kind": str(data.get("kind", "ok")), "text": t(str(data["key"]), **params)}
        except (ValueError, KeyError, TypeError, AttributeError):
            flash = None
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


def security_headers(response: Response) -> None:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
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


# --- the application ---
def create_console_app(platform: Platform, state: ConsoleState) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.platform = platform
    app.state.console = state
    app.state.session_resolver = state.auth.resolve
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded) -> Response:
        return redirect(f"{BASE}/login?{urlencode({'next': exc.next_url})}")

    @app.exception_handler(PasswordChangeNeeded)
    async def _password(request: Request, exc: PasswordChangeNeeded) -> Response:
        return redirect(f"{BASE}/account/password?{urlencode({'next': exc.next_url})}")

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        return message_page(request, "error.refused", exc.message, 403)

    @app.exception_handler(MiniportError)
    async def _error(request: Request, exc: MiniportError) -> Response:
        return message_page(request, "error.title", exc.message, exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        text = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return message_page(request, "error.title", text, 422)

    register_pages(app)
    return app


def register_pages(app: FastAPI) -> None:
    # --- sign-in ---
    @app.get("/")
    async def home() -> Response:
        return redirect(f"{BASE}/apps")

    @app.get("/login")
    async def login_form(request: Request, next: str | None = None) -> Response:
        state = state_of(request)
        session = await state.auth.session(request)
        if session is not None and not session.user.must_change_password:
            return redirect(safe_next(next))
        return _login_page(request, next, None)

    @app.post("/login")
    async def login(
        request: Request,
        name: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=256)],
        csrf_token: Annotated[str, Form(max_length=128)] = "",
        next: Annotated[str, Form(max_length=2048)] = "",
    ) -> Response:
        state = state_of(request)
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not expected or not secrets.compare_digest(expected.encode(), csrf_token.encode()):
            return _login_page(request, next, "login.expired", status=403, name=name)
        try:
            user = await state.auth.authenticate(name, password)
        except (Unauthorized, Forbidden) as exc:
            key = "login.failed" if isinstance(exc, Unauthorized) else None
            return _login_page(request, next, key or exc.message, status=exc.http_status, name=name)
        token, _ = await state.auth.start_session(user)
        target = safe_next(next)
        if user.must_change_password:
            target = f"{BASE}/account/password?{urlencode({'next': target})}"
        response = redirect(target)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(SESSION_TTL_S),
            httponly=True,
            samesite="lax",
            path="/",
            secure=is_https(request, state.platform.public_url),
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE, path=f"{BASE}/login")
        return response

    @app.post("/logout")
    async def logout(ctx: AnyUserPage) -> Response:
        await state_of(ctx.request).auth.end_session(ctx.session)
        response = redirect(f"{BASE}/login")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/account/password")
    async def password_form(ctx: AnyUserPage, next: str | None = None) -> Response:
        return render(
            ctx.request, "password.html", session=ctx.session, next=safe_next(next), error=None
        )

    @app.post("/account/password")
    async def change_password(
        ctx: AnyUserPage,
        current: Annotated[str, Form(max_length=256)],
        new: Annotated[str, Form(max_length=256)],
        repeat: Annotated[str, Form(max_length=256)],
        next: Annotated[str, Form(max_length=2048)] = "",
    ) -> Response:
        error = None
        if new != repeat:
            error = i18n.translator(i18n.pick_language(ctx.request))("password.mismatch")
        else:
            try:
                await state_of(ctx.request).auth.change_password(ctx.session, current, new)
            except MiniportError as exc:
                error = exc.message
        if error:
            return render(
                ctx.request,
                "password.html",
                session=ctx.session,
                next=safe_next(next),
                error=error,
                status=422,
            )
        return redirect(safe_next(next), ("flash.password_changed", {}))

    # --- apps ---
    @app.get("/apps")
    async def apps_page(ctx: ViewerPage) -> Response:
        apps = await visible_apps(ctx.request, ctx.who)
        return render(
            ctx.request, "apps.html", session=ctx.session, apps=apps, can=ctx.can, error=None
        )

    @app.post("/apps")
    async def create_app(
        ctx: DeveloperPage, name: Annotated[str, Form(max_length=128)]
    ) -> Response:
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
        return redirect(
            f"{BASE}/apps/{created.appid}", ("flash.app_created", {"name": created.name})
        )

    async def app_context(ctx: Ctx, appid: str, tab: str) -> dict[str, Any]:
        p = state_of(ctx.request).platform
        app_row = await p.apps.get(appid)
        return {"app": app_row, "tab": tab, "can": ctx.can}

    @app.get("/apps/{appid}")
    async def app_page(ctx: ViewerPage, appid: str) -> Response:
        p = state_of(ctx.request).platform
        values = await app_context(ctx, appid, "overview")
        settings = await p.apps.settings(appid)
        return render(ctx.request, "app.html", session=ctx.session, settings=settings, **values)

    @app.post("/apps/{appid}/secret")
    async def rotate_secret(ctx: DeveloperPage, appid: str) -> Response:
        await state_of(ctx.request).platform.apps.rotate_secret(appid, ctx.who.name)
        return redirect(f"{BASE}/apps/{appid}", ("flash.secret_rotated", {}))

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
            pending=pending,
            history=history,
            errors=errors or {},
            values=values or {},
            highlight=ctx.request.query_params.get("change"),
            status=status,
            **context,
        )

    @app.get("/apps/{appid}/urls")
    async def urls(ctx: ViewerPage, appid: str) -> Response:
        return await urls_page(ctx, appid)

    @app.post("/apps/{appid}/changes")
    async def request_change(
        ctx: DeveloperPage,
        appid: str,
        kind: Annotated[str, Form(max_length=16)],
        op: Annotated[str, Form(max_length=16)] = "set",
        url: Annotated[str, Form(max_length=4096)] = "",
    ) -> Response:
        state = state_of(ctx.request)
        try:
            pending = await state.platform.apps.request_change(
                appid, kind, op, url.strip() or None, ctx.who.name
            )
        except MiniportError as exc:
            return await urls_page(
                ctx, appid, errors={kind: exc.message}, values={kind: url}, status=exc.http_status
            )
        await state.qr.remember(pending)
        change_id = pending.change.id
        return redirect(
            f"{BASE}/apps/{appid}/urls?change={quote(change_id)}#change-{change_id}",
            ("flash.change_requested", {}),
        )

    @app.get("/apps/{appid}/changes/{change_id}/qr.png")
    async def change_qr(ctx: DeveloperPage, appid: str, change_id: str) -> Response:
        state = state_of(ctx.request)
        found = await state.qr.get(change_id, state.platform.clock.now())
        change = await state.platform.db.read(state.platform.registry.get_change, change_id)
        if found is None or change.appid != appid:
            return Response(status_code=404)
        return Response(
            qr_png(found[1]), media_type="image/png", headers={"Cache-Control": "no-store"}
        )

    @app.get("/apps/{appid}/health")
    async def health(ctx: ViewerPage, appid: str) -> Response:
        values = await app_context(ctx, appid, "health")
        return render(ctx.request, "health.html", session=ctx.session, **values)

    # --- analytics (the pages' scripts call /admin/v1/apps/{appid}/analytics/...) ---
    async def analytics_data(ctx: Ctx, appid: str) -> dict[str, Any]:
        p = state_of(ctx.request).platform
        definitions = await p.analytics.definitions(appid)
        tests = await p.db.read(p.analytics.defs.list_tests, appid)
        return {
            "definitions": definitions,
            "tests": [test.as_dict() for test in tests[:ANALYTICS_TESTS_SHOWN]],
        }

    @app.get("/apps/{appid}/analytics")
    async def analytics(ctx: ViewerPage, appid: str, test: str | None = None) -> Response:
        """Fields, events and the event editor; the live test panel (``?test=``)."""
        values = await app_context(ctx, appid, "analytics")
        data = await analytics_data(ctx, appid)
        return render(
            ctx.request,
            "analytics.html",
            session=ctx.session,
            page_data=page_json(
                {**data, "open_test": test or None, "can_edit": ctx.can("developer")}
            ),
            **values,
        )

    @app.get("/apps/{appid}/analytics/reports")
    async def analytics_reports(ctx: ViewerPage, appid: str) -> Response:
        """Event analysis and funnels with charts and tables, CSV export."""
        values = await app_context(ctx, appid, "reports")
        p = state_of(ctx.request).platform
        definitions = await p.analytics.definitions(appid)
        return render(
            ctx.request,
            "analytics_reports.html",
            session=ctx.session,
            page_data=page_json({"definitions": definitions}),
            **values,
        )

    # --- audit ---
    @app.get("/audit")
    async def audit(ctx: ViewerPage, appid: str | None = None) -> Response:
        p = state_of(ctx.request).platform
        if appid:
            await members_of(ctx.request).check(appid, ctx.who, "viewer")
        entries = await p.db.read(p.registry.list_audit, appid or None, 300)
        apps = await visible_apps(ctx.request, ctx.who)
        shown = {a.appid for a in apps} if ctx.who.role != "admin" else None
        entries = [e for e in entries if shown is None or e.appid in shown]
        return render(
            ctx.request,
            "audit.html",
            session=ctx.session,
            entries=entries,
            apps=apps,
            appid=appid or "",
        )

    # --- users (admins) ---
    async def users_page(
        ctx: Ctx,
        *,
        created: dict[str, str] | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        users_list = await state_of(ctx.request).auth.list_users()
        return render(
            ctx.request,
            "users.html",
            session=ctx.session,
            users=users_list,
            created=created,
            error=error,
            status=status,
        )

    @app.get("/users")
    async def users(ctx: AdminPage) -> Response:
        return await users_page(ctx)

    @app.post("/users")
    async def create_user(
        ctx: AdminPage,
        name: Annotated[str, Form(max_length=64)],
        role: Annotated[str, Form(max_length=16)] = "viewer",
    ) -> Response:
        try:
            user, password = await state_of(ctx.request).auth.create_user(
                name, role, None, actor=ctx.who.name
            )
        except MiniportError as exc:
            return await users_page(ctx, error=exc.message, status=exc.http_status)
        return await users_page(ctx, created={"name": user.name, "password": password or ""})

    @app.post("/users/{name}/role")
    async def set_role(
        ctx: AdminPage, name: str, role: Annotated[str, Form(max_length=16)]
    ) -> Response:
        try:
            await state_of(ctx.request).auth.set_role(name, role, ctx.who.name)
        except MiniportError as exc:
            return await users_page(ctx, error=exc.message, status=exc.http_status)
        return redirect(f"{BASE}/users", ("flash.role_changed", {"name": name, "role": role}))

    @app.post("/users/{name}/disable")
    async def disable_user(ctx: AdminPage, name: str) -> Response:
        if name == ctx.who.name:
            return await users_page(ctx, error="you cannot disable yourself", status=409)
        try:
            await state_of(ctx.request).auth.set_disabled(name, True, ctx.who.name)
        except MiniportError as exc:
            return await users_page(ctx, error=exc.message, status=exc.http_status)
        return redirect(f"{BASE}/users", ("flash.user_disabled", {"name": name}))

    @app.post("/users/{name}/enable")
    async def enable_user(ctx: AdminPage, name: str) -> Response:
        await state_of(ctx.request).auth.set_disabled(name, False, ctx.who.name)
        return redirect(f"{BASE}/users", ("flash.user_enabled", {"name": name}))

    @app.post("/users/{name}/password")
    async def reset_password(ctx: AdminPage, name: str) -> Response:
        password = await state_of(ctx.request).auth.reset_password(name, ctx.who.name)
        return await users_page(ctx, created={"name": name, "password": password, "reset": "1"})

    # --- simulator ---
    @app.get("/simulator")
    async def simulator(
        ctx: DeveloperPage, appid: str | None = None, user: str | None = None
    ) -> Response:
        apps = await visible_apps(ctx.request, ctx.who)
        return render(
            ctx.request,
            "simulator.html",
            session=ctx.session,
            apps=apps,
            appid=appid or "",
            sim_user=(user or "")[:128],
            tab="simulator",
        )


def _login_page(
    request: Request, next_url: str | None, error: str | None, *, status: int = 200, name: str = ""
) -> Response:
    csrf = secrets.token_urlsafe(24)
    t = i18n.translator(i18n.pick_language(request))
    shown = t(error) if error and "." in error and " " not in error else error
    response = render(
        request,
        "login.html",
        status=status,
        login_csrf=csrf,
        next=safe_next(next_url),
        error=shown,
        name=name,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        csrf,
        max_age=3600,
        httponly=True,
        samesite="strict",
        path=f"{BASE}/login",
        secure=is_https(request, state_of(request).platform.public_url),
    )
    return response


__all__ = ["BASE", "ConsoleState", "create_console_app", "qr_png", "render", "safe_next"]
