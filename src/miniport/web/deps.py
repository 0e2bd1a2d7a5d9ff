"""Request helpers shared by the routers: who is calling, and errors in the API's shapes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from ..domain.tokens import RuntimeIdentity
from ..errors import Forbidden, MiniportError, Unauthorized
from ..platform import Platform
from ..services.auth import Principal
from ..services.members import MemberService

SessionResolver = Callable[[Request], Awaitable[Principal | None]]


def platform_of(request: Request) -> Platform:
    return request.app.state.platform  # type: ignore[no-any-return]


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def runtime_identity(request: Request) -> RuntimeIdentity:
    """The runtime calling a route of the app in its path (``{appid}``).
    async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread."""
    return await app_runtime_identity(request, request.path_params.get("appid"))


async def app_runtime_identity(request: Request, appid: str | None) -> RuntimeIdentity:
    """The runtime calling, if its token may act in ``appid`` (a token minted for one app
    is refused in another)."""
    token = bearer(request)
    if token is None:
        raise Unauthorized("missing runtime token (Authorization: Bearer ...)")
    auth = platform_of(request).auth
    await auth.refresh_revocations()
    who = auth.identify(token)
    return who if appid is None else who.for_app(appid)


async def principal(request: Request) -> Principal:
    """An admin API caller: a bearer API key, or a console session (cookie + CSRF)."""
    token = bearer(request)
    if token is not None:
        return await platform_of(request).auth.api_principal(token)
    resolver: SessionResolver | None = getattr(request.app.state, "session_resolver", None)
    if resolver is not None:
        found = await resolver(request)
        if found is not None:
            return found
    raise Unauthorized("sign in, or send an API key as Authorization: Bearer ...")


def members_of(request: Request) -> MemberService:
    return platform_of(request).members


async def visible_apps(request: Request, who: Principal) -> list[Any]:
    """The apps ``who`` may see (all of them for an admin)."""
    p = platform_of(request)
    apps = await p.db.read(p.registry.list_apps)
    visible = await members_of(request).visible(who)
    return [a for a in apps if visible is None or a.appid in visible]


def require(role: str) -> Callable[[Request], Awaitable[Principal]]:
    """The caller, if its platform role is ``role`` or above and, on a route of one app
    (``{appid}`` in its path), it is a member of that app with that role (admins always are);
    there, the caller comes with its role in that app, so ``who.can(...)`` asks about the app."""

    async def dependency(request: Request) -> Principal:
        who = await principal(request)
        if not who.can(role):
            raise Forbidden(f"this needs the {role} role; you are {who.role}")
        appid = request.path_params.get("appid")
        if appid is not None:
            return await members_of(request).check(str(appid), who, role)
        return who

    return dependency


# what a check looks at in a request: its credential (the headers: an API key, the session
# cookie), method, path and path parameters, and the application (the session resolver)
_PRESENTED = (
    "type", "asgi", "http_version", "method", "scheme", "server", "client", "root_path", "path",
    "raw_path", "query_string", "headers", "path_params", "app",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StreamAccess:
    """Who opened a console event stream, and that same check to run again later
    (services.console_guard ends the stream once it refuses)."""

    who: Principal
    check: Callable[[], Awaitable[object]]
    since: int  # the console guard's ``changes`` when the check began


def stream_access(
    check: Callable[[Request], Awaitable[Principal]],
) -> Callable[[Request], Awaitable[StreamAccess]]:
    """A console stream's dependency: ``check`` (the caller, if it may open the stream); its
    ``StreamAccess.check`` runs ``check`` again on what this request presented, as a new
    request (nothing looked up for this one, such as its session, is reused)."""

    async def dependency(request: Request) -> StreamAccess:
        since = platform_of(request).console_guard.changes
        who = await check(request)
        scope = {k: v for k, v in request.scope.items() if k in _PRESENTED}

        async def again() -> Principal:
            return await check(Request(dict(scope)))

        return StreamAccess(who, again, since)

    return dependency


def error_body(exc: MiniportError, api: str | None = None) -> dict[str, Any]:
    """The one JSON shape of an error: ``{"error": code, "message": ...}``, with
    ``"problems": [{path, message}, ...]`` when it has them (also sent as ``"errors"``, the name
    clients used first), and the runtime API's ``errMsg``."""
    body = exc.as_dict()
    if exc.problems:
        body["errors"] = body["problems"]
    if api is not None:
        message = exc.message
        prefix = f"{api}:fail"
        body["errMsg"] = message if message.startswith(prefix) else f"{prefix} {message}"
    return body


def error_response(exc: MiniportError, api: str | None = None) -> JSONResponse:
    """The error as an answer; one that says "try again later" (a 503) with a ``Retry-After``
    of its ``retry_after_s``."""
    seconds = exc.retry_after_s
    headers = None if seconds is None else {"Retry-After": str(int(seconds))}
    return JSONResponse(error_body(exc, api), status_code=exc.http_status, headers=headers)
