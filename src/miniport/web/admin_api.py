"""The admin HTTP API: apps, data-URL changes and their confirmation, devtools, audit.
Everything the console shows comes from here."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictInt, StrictStr

from ..domain.requests import Launch
from ..errors import Forbidden, NotFound
from ..services.auth import Principal
from .deps import members_of, platform_of, require
from .openapi_doc import ERRORS
from .runtime_api import LaunchIn
from .strict_json import StrictJSONRoute

router = APIRouter(
    prefix="/admin/v1", tags=["admin"], route_class=StrictJSONRoute, responses=ERRORS
)
Viewer = Annotated[Principal, Depends(require("viewer"))]
Developer = Annotated[Principal, Depends(require("developer"))]
Admin = Annotated[Principal, Depends(require("admin"))]
Kind = Literal["periodic", "pre"]


class AppIn(BaseModel):
    name: StrictStr = Field(min_length=1, max_length=128)


class ChangeIn(BaseModel):
    kind: Kind
    op: Literal[
        "set", "enable", "disable", "grey_set", "grey_ratio", "grey_promote", "grey_clear"
    ] = "set"
    url: StrictStr | None = None
    ratio: StrictInt | None = Field(default=None, ge=0, le=100)  # grey_set and grey_ratio


class FetchSettingsIn(BaseModel):
    interval: StrictStr | None = Field(default=None, max_length=16)  # "6h"
    active_days: StrictInt | None = None
    timeout: StrictStr | None = Field(default=None, max_length=16)  # "5s"
    headers: list[StrictStr] = Field(default_factory=list, max_length=10)  # "Name: value"
    clear_headers: bool = False


class AlertsIn(BaseModel):
    webhook: StrictStr | None = Field(default=None, max_length=2048)  # "" removes it
    email: StrictStr | None = Field(default=None, max_length=254)  # "" removes it
    threshold: float | None = Field(default=None, gt=0, le=100)  # success %
    window: StrictStr | None = Field(default=None, max_length=16)  # "5m"
    min_fetches: StrictInt | None = None


class TrustIn(BaseModel):
    trusted: bool


class ConfirmIn(BaseModel):
    code: StrictStr = Field(min_length=1, max_length=64)


class FetchNowIn(BaseModel):
    """A fetch as a launch would make it: path, query and scene bounded as the runtime's
    launch bounds them (an unbounded scene overflowed PostgreSQL's integer column)."""

    user_id: StrictStr = Field(min_length=1, max_length=128)
    type: Kind = "periodic"
    path: StrictStr = Field(default="", max_length=1024)
    query: StrictStr = Field(default="", max_length=4096)
    scene: StrictInt = Field(default=1001, ge=0, le=99999)

    def to_launch(self) -> Launch:
        return LaunchIn(path=self.path, query=self.query, scene=self.scene).to_launch()


class UserIn(BaseModel):
    user_id: StrictStr = Field(min_length=1, max_length=128)


class RuntimeTokenIn(BaseModel):
    user_id: StrictStr = Field(min_length=1, max_length=128)
    device_id: StrictStr | None = Field(default=None, max_length=128)
    appid: StrictStr | None = Field(
        default=None, max_length=64, description="the app the token is for (admins may omit it)"
    )


class RevokeIn(BaseModel):
    user_id: StrictStr = Field(min_length=1, max_length=128)
    before: float | None = Field(
        default=None, description="Unix time; tokens issued before it are refused (default: now)"
    )


def app_dict(app: Any, with_secret: bool) -> dict[str, Any]:
    out = {"appid": app.appid, "name": app.name, "created_at": app.created_at}
    if with_secret:
        out["secret"] = app.secret
    return out


@router.get("/whoami")
async def whoami(who: Viewer) -> dict[str, Any]:
    return {"name": who.name, "role": who.role}


@router.get("/apps")
async def list_apps(request: Request, who: Viewer) -> dict[str, Any]:
    apps = await platform_of(request).db.read(platform_of(request).registry.list_apps)
    visible = await members_of(request).visible(who)
    return {"apps": [app_dict(a, False) for a in apps if visible is None or a.appid in visible]}


@router.post("/apps", status_code=201)
async def create_app(body: AppIn, request: Request, who: Developer) -> dict[str, Any]:
    app = await platform_of(request).apps.create(body.name, who.name)
    await members_of(request).add_creator(app.appid, who)
    return app_dict(app, True)


@router.get("/apps/{appid}")
async def get_app(appid: str, request: Request, who: Viewer) -> dict[str, Any]:
    platform = platform_of(request)
    app = await platform.apps.get(appid)
    return {**app_dict(app, who.can("developer")), **await platform.apps.settings(appid)}


@router.post("/apps/{appid}/secret")
async def rotate_secret(appid: str, request: Request, who: Developer) -> dict[str, Any]:
    secret = await platform_of(request).apps.rotate_secret(appid, who.name)
    return {"appid": appid, "secret": secret}


@router.post("/apps/{appid}/changes", status_code=201)
async def request_change(
    appid: str, body: ChangeIn, request: Request, who: Developer
) -> dict[str, Any]:
    pending = await platform_of(request).apps.request_change(
        appid, body.kind, body.op, body.url, who.name, body.ratio
    )
    return pending.as_dict()


@router.get("/apps/{appid}/fetch-settings")
async def get_fetch_settings(appid: str, request: Request, who: Viewer) -> dict[str, Any]:
    return await platform_of(request).apps.fetch_settings(appid)


@router.post("/apps/{appid}/fetch-settings")
async def set_fetch_settings(
    appid: str, body: FetchSettingsIn, request: Request, who: Developer
) -> dict[str, Any]:
    return await platform_of(request).apps.update_fetch_settings(appid, body.model_dump(), who.name)


@router.get("/apps/{appid}/prefetch-report")
async def prefetch_report(
    appid: str,
    request: Request,
    who: Viewer,
    since: Annotated[str | None, Query(alias="from", max_length=32)] = None,
    until: Annotated[str | None, Query(alias="to", max_length=32)] = None,
) -> dict[str, Any]:
    """Pre-fetch effectiveness by scene, path and platform: ready share, p50/p90 ms."""
    return await platform_of(request).background.prefetch_report(appid, since, until)


@router.get("/apps/{appid}/alerts")
async def get_alerts(appid: str, request: Request, who: Viewer) -> dict[str, Any]:
    """A viewer is shown the webhook's host only (its path and query may be its credential)."""
    return await platform_of(request).alerts.shown(appid, whole=who.can("developer"))


@router.post("/apps/{appid}/alerts")
async def set_alerts(
    appid: str, body: AlertsIn, request: Request, who: Developer
) -> dict[str, Any]:
    return await platform_of(request).alerts.configure(appid, body.model_dump(), who.name)


@router.get("/apps/{appid}/alerts/history")
async def alert_history(
    appid: str, request: Request, who: Viewer, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, Any]:
    return await platform_of(request).alerts.history(appid, limit)


@router.post("/apps/{appid}/api-trust")
async def set_api_trust(appid: str, body: TrustIn, request: Request, who: Admin) -> dict[str, Any]:
    """Let WeChat's settings API (/wxa/fetchdatasetting) change this app's URLs without an
    admin confirming each change (an admin's act, audited)."""
    return await platform_of(request).wechat.set_trusted(appid, body.trusted, who.name)


@router.get("/apps/{appid}/testers")
async def list_testers(appid: str, request: Request, who: Viewer) -> dict[str, Any]:
    return await platform_of(request).apps.testers(appid)


@router.post("/apps/{appid}/testers")
async def add_tester(appid: str, body: UserIn, request: Request, who: Developer) -> dict[str, Any]:
    return await platform_of(request).apps.set_tester(appid, body.user_id, True, who.name)


@router.delete("/apps/{appid}/testers/{user_id}")
async def remove_tester(
    appid: str, user_id: str, request: Request, who: Developer
) -> dict[str, Any]:
    return await platform_of(request).apps.set_tester(appid, user_id, False, who.name)


@router.get("/apps/{appid}/changes")
async def list_changes(appid: str, request: Request, who: Viewer) -> dict[str, Any]:
    platform = platform_of(request)
    await platform.apps.get(appid)
    changes = await platform.db.read(platform.registry.list_changes, appid)
    return {"changes": [c.as_dict() for c in changes]}


@router.get("/changes/{change_id}")
async def get_change(change_id: str, request: Request, who: Viewer) -> dict[str, Any]:
    platform = platform_of(request)
    change = await platform.db.read(platform.registry.get_change, change_id)
    try:
        await members_of(request).check(change.appid, who, "viewer")
    except NotFound as exc:
        raise NotFound(f"change {change_id!r} not found") from exc
    return change.as_dict()


@router.post("/changes/confirm")
async def confirm_change(body: ConfirmIn, request: Request, who: Admin) -> dict[str, Any]:
    change = await platform_of(request).apps.confirm(body.code, who.name)
    return change.as_dict()


@router.post("/backups", status_code=201)
async def create_backup(request: Request, who: Admin, prune: bool = True) -> dict[str, Any]:
    """Back up the embedded databases (SQLite state, DuckDB events) while the server runs, into
    ``<data dir>/backups/``: the manifest, with the backup's ``path`` on the server. A database
    on a server of its own (PostgreSQL, ClickHouse) is named, not copied. Older backups beyond
    ``MINIPORT_BACKUP_KEEP`` are deleted (``pruned``), unless ``?prune=false`` (a backup to be
    moved elsewhere at once)."""
    from ..services.backup import make_backup

    return await make_backup(platform_of(request), who.name, prune=prune)


@router.get("/audit")
async def audit(
    request: Request,
    who: Viewer,
    appid: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    platform = platform_of(request)
    if appid is not None:
        await members_of(request).check(appid, who, "viewer")
        await platform.apps.get(appid)  # an admin's typo: 404, not an empty log
    visible = await members_of(request).visible(who)  # platform-wide entries: admins only
    entries = await platform.db.read(
        platform.registry.list_audit, appid, limit, appids=visible
    )
    return {"entries": [e.__dict__ for e in entries]}


@router.post("/apps/{appid}/devtools/fetch")
async def devtools_fetch(
    appid: str, body: FetchNowIn, request: Request, who: Developer
) -> dict[str, Any]:
    launch = body.to_launch()  # control characters refused as on a launch
    return await platform_of(request).background.fetch_now(appid, body.user_id, body.type, launch)


@router.post("/apps/{appid}/devtools/clear")
async def devtools_clear(
    appid: str, request: Request, who: Developer, body: UserIn | None = None
) -> dict[str, Any]:
    cleared = await platform_of(request).background.clear(appid, body.user_id if body else None)
    return {"cleared": cleared}


@router.post("/apps/{appid}/devtools/push")
async def devtools_push(
    appid: str, body: UserIn, request: Request, who: Developer
) -> JSONResponse:
    """The answer names every connected device: already JSON-ready, so it skips FastAPI's
    encoder (14 ms for 10,000 devices, spent before the streams got the push)."""
    return JSONResponse(await platform_of(request).background.push(appid, body.user_id))


@router.get("/apps/{appid}/fetch-log")
async def fetch_log(
    appid: str,
    request: Request,
    who: Viewer,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    user_id: str | None = None,
) -> dict[str, Any]:
    return {"entries": await platform_of(request).background.log(appid, limit, user_id)}


@router.get("/apps/{appid}/health")
async def health(
    appid: str, request: Request, who: Viewer, hours: Annotated[float, Query(gt=0, le=24 * 30)] = 24
) -> dict[str, Any]:
    platform = platform_of(request)
    await platform.apps.get(appid)
    since = platform.clock.now() - hours * 3600
    return {"appid": appid, "since": since, "kinds": await platform.background.health(appid, since)}


@router.get("/apps/{appid}/users/{user_id}/devices")
async def devices(appid: str, user_id: str, request: Request, who: Viewer) -> dict[str, Any]:
    return {"devices": await platform_of(request).broker.devices(user_id, appid)}


@router.get("/apps/{appid}/health/series")
async def health_series(
    appid: str,
    request: Request,
    who: Viewer,
    hours: Annotated[float, Query(gt=0, le=24 * 30)] = 24,
    buckets: Annotated[int, Query(ge=1, le=500)] = 48,
) -> dict[str, Any]:
    """Success rate, latency and body size over time: the fetch log of the last ``hours`` in
    about ``buckets`` equal time buckets per kind (aligned to multiples of ``bucket_s``; a bucket
    without fetches is null)."""
    platform = platform_of(request)
    await platform.apps.get(appid)
    now = platform.clock.now()
    bucket_s = max(60.0, round(hours * 3600 / buckets / 60) * 60)
    first = int((now - hours * 3600) // bucket_s)
    starts = [(first + i) * bucket_s for i in range(int(now // bucket_s) - first + 1)]
    rows = await platform.apps.health_series(appid, starts[0], bucket_s)
    kinds: dict[str, list[dict[str, Any] | None]] = {
        k: [None] * len(starts) for k in ("periodic", "pre")
    }
    for row in rows:
        slot = round((row["t"] - starts[0]) / bucket_s)
        if 0 <= slot < len(starts):
            row["success_rate"] = row["ok"] / row["total"] if row["total"] else None
            kinds.setdefault(row["kind"], [None] * len(starts))[slot] = row
    return {
        "appid": appid,
        "since": starts[0],
        "until": now,
        "bucket_s": bucket_s,
        "buckets": starts,
        "kinds": kinds,
    }


@router.post("/runtime-tokens")
async def runtime_token(body: RuntimeTokenIn, request: Request, who: Developer) -> dict[str, Any]:
    """A runtime token for a host user and device (the console's simulator runs as that user):
    for ``appid`` only (its developers), or, minted by an admin without ``appid``, for every
    app. A token for every app would let a developer of one app read any user's data and
    background-fetch token in every other app."""
    platform = platform_of(request)
    if body.appid is None:
        if not who.can("admin"):
            raise Forbidden("name the app the token is for (appid); only admins mint tokens for "
                            "every app")
    else:
        await members_of(request).check(body.appid, who, "developer")
        await platform.apps.get(body.appid)
    token = platform.auth.runtime_token(body.user_id, body.device_id, body.appid)
    await platform.db.write(
        platform.registry.audit,
        platform.clock.now(),
        who.name,
        "runtime_token.create",
        body.appid,
        user_id=body.user_id,
        device_id=body.device_id or "default",
    )
    return {
        "runtime_token": token,
        "user_id": body.user_id,
        "device_id": body.device_id or "default",
        "appid": body.appid,
    }


@router.post("/runtime-tokens/revoke")
async def revoke_runtime_tokens(body: RevokeIn, request: Request, who: Admin) -> dict[str, Any]:
    """Refuse a host user's runtime tokens issued before ``before`` on every node (within about
    a second), and end the event streams they opened (an ``unauthorized`` message, then the
    end); a token issued later still works."""
    return await platform_of(request).auth.revoke_runtime(body.user_id, body.before, who.name)
