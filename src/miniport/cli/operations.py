"""The one table of what the CLI can do: each operation once, as the admin API call a running
server answers (``route``) and as the same service call on a local platform (``local``).

Invariants: both sides of an operation return the same JSON-shaped value (a dict, or the CSV
text for ``analytics.export``), so a command renders one result whichever backend ran it. An
operation without a ``route`` has no admin API (console users, keys: rows in the SQL database,
which a server shares safely); one without ``local`` needs the server's process (devices
connected to it). Nothing here imports the platform, DuckDB, aiohttp or FastAPI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from ..platform import Platform

Params = dict[str, Any]
CLI_ACTOR = "cli"


@dataclass(frozen=True)
class Route:
    """One admin API call: method, path, JSON body, query string, and whether the answer is
    text (CSV) rather than JSON."""

    method: str
    path: str
    body: Any = None
    query: dict[str, str] | None = None
    text: bool = False


@dataclass(frozen=True)
class Operation:
    name: str
    route: Callable[[Params], Route] | None
    local: Callable[[Platform, Params], Awaitable[Any]] | None
    why_local: str = ""  # shown when ``route`` is None: why it runs here even beside a server
    why_server: str = ""  # shown when ``local`` is None and no server runs


def _q(value: str) -> str:
    return quote(value, safe="")


def _app(p: Params) -> str:
    return f"/admin/v1/apps/{_q(p['appid'])}"


def _an(p: Params) -> str:
    return f"{_app(p)}/analytics"


def _app_dict(app: Any) -> dict[str, Any]:
    return {
        "appid": app.appid,
        "name": app.name,
        "created_at": app.created_at,
        "secret": app.secret,
    }


# --- local sides that are more than one service call ---
async def _app_create(pf: Platform, p: Params) -> dict[str, Any]:
    return _app_dict(await pf.apps.create(p["name"], CLI_ACTOR))


async def _app_list(pf: Platform, p: Params) -> dict[str, Any]:
    apps = await pf.db.read(pf.registry.list_apps)
    return {"apps": [{k: v for k, v in _app_dict(a).items() if k != "secret"} for a in apps]}


async def _app_show(pf: Platform, p: Params) -> dict[str, Any]:
    app = await pf.apps.get(p["appid"])
    return {**_app_dict(app), **await pf.apps.settings(p["appid"])}


async def _changes(pf: Platform, p: Params) -> dict[str, Any]:
    await pf.apps.get(p["appid"])
    return {
        "changes": [c.as_dict() for c in await pf.db.read(pf.registry.list_changes, p["appid"])]
    }


async def _audit(pf: Platform, p: Params) -> dict[str, Any]:
    if p.get("appid") is not None:
        await pf.apps.get(p["appid"])  # a typo: not found, not an empty log
    entries = await pf.db.read(pf.registry.list_audit, p.get("appid"), p["limit"])
    return {"entries": [e.__dict__ for e in entries]}


async def _runtime_token(pf: Platform, p: Params) -> dict[str, Any]:
    device = p.get("device_id") or "default"
    if p.get("appid") is not None:
        await pf.apps.get(p["appid"])
    token = pf.auth.runtime_token(p["user_id"], p.get("device_id"), p.get("appid"))
    return {
        "runtime_token": token,
        "user_id": p["user_id"],
        "device_id": device,
        "appid": p.get("appid"),
    }


async def _fetch_now(pf: Platform, p: Params) -> dict[str, Any]:
    from pydantic import ValidationError

    from ..errors import InvalidInput
    from ..web.admin_api import FetchNowIn

    fields = ("user_id", "type", "path", "query", "scene")
    try:  # the checks the API makes
        body = FetchNowIn.model_validate({k: p[k] for k in fields})
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InvalidInput(f"{'.'.join(map(str, error['loc']))}: {error['msg']}") from None
    launch = body.to_launch()
    return await pf.background.fetch_now(p["appid"], body.user_id, body.type, launch)


async def _versions(pf: Platform, p: Params) -> dict[str, Any]:
    await pf.apps.get(p["appid"])
    return {"versions": await pf.db.read(pf.analytics.defs.versions, p["appid"])}


async def _tests(pf: Platform, p: Params) -> dict[str, Any]:
    await pf.apps.get(p["appid"])
    tests = await pf.db.read(pf.analytics.defs.list_tests, p["appid"])
    return {"tests": [t.as_dict() for t in tests]}


async def _report(pf: Platform, p: Params) -> dict[str, Any]:
    from ..services.analytics import parse_time

    b = p["body"]
    return await pf.analytics.event_analysis(
        p["appid"],
        event=b["event"],
        metrics=b["metrics"],
        group_by=b["group_by"],
        filters=b["filters"],
        any_=b["any"],
        granularity=b["granularity"],
        from_ms=parse_time(b["from"], b["tz"]),
        to_ms=parse_time(b["to"], b["tz"], end=True),
        tz=b["tz"],
    )


async def _funnel(pf: Platform, p: Params) -> dict[str, Any]:
    from ..services.analytics import parse_time

    b = p["body"]
    return await pf.analytics.funnel(
        p["appid"],
        steps=b["steps"],
        group_by=b["group_by"],
        window=b.get("window"),
        order=b.get("order"),
        from_ms=parse_time(b["from"], b["tz"]),
        to_ms=parse_time(b["to"], b["tz"], end=True),
    )


async def _overview(pf: Platform, p: Params) -> dict[str, Any]:
    from ..services.analytics import parse_time

    b = p["body"]
    return await pf.analytics.overview(
        p["appid"],
        from_ms=parse_time(b["from"], b["tz"]),
        to_ms=parse_time(b["to"], b["tz"], end=True),
        granularity=b["granularity"],
        tz=b["tz"],
        group_by=b["group_by"],
        top_pages=b["top_pages"],
    )


async def _realtime(pf: Platform, p: Params) -> dict[str, Any]:
    return await pf.analytics.realtime(
        p["appid"], tz=p["tz"], minutes=p["minutes"], latest=p["latest"]
    )


def _realtime_query(p: Params) -> dict[str, str]:
    return {"tz": p["tz"], "minutes": str(p["minutes"]), "latest": str(p["latest"])}


async def _retention(pf: Platform, p: Params) -> dict[str, Any]:
    from ..services.analytics import parse_time

    b = p["body"]
    return await pf.analytics.retention(
        p["appid"],
        start=b["start"],
        returning=b["return"],
        unit=b["unit"],
        periods=b["periods"],
        group_by=b["group_by"],
        from_ms=parse_time(b["from"], b["tz"]),
        to_ms=parse_time(b["to"], b["tz"], end=True),
        tz=b["tz"],
    )


async def _paths(pf: Platform, p: Params) -> dict[str, Any]:
    from ..services.analytics import parse_time

    b = p["body"]
    return await pf.analytics.paths(
        p["appid"],
        start=b["start"],
        by=b["by"],
        depth=b["depth"],
        from_ms=parse_time(b["from"], b["tz"]),
        to_ms=parse_time(b["to"], b["tz"], end=True),
    )


async def _export(pf: Platform, p: Params) -> str:
    from ..services.analytics import parse_time

    f, tz = p["from"], p["tz"]
    return await pf.analytics.export_csv(
        p["appid"], p["event"], parse_time(f, tz), parse_time(p["to"], tz, end=True)
    )


def _export_query(p: Params) -> dict[str, str]:
    extra = {k: p[k] for k in ("from", "to") if p[k]}
    return {"event": p["event"], "tz": p["tz"], **extra}


async def _count(pf: Platform, p: Params) -> dict[str, Any]:
    return {"count": await pf.analytics.count(p["appid"], p["event"], p["include_tests"])}


def _count_query(p: Params) -> dict[str, str]:
    extra = {"event": p["event"]} if p["event"] else {}
    return {"include_tests": "true" if p["include_tests"] else "false", **extra}


async def _console_user_create(pf: Platform, p: Params) -> dict[str, Any]:
    user, generated = await pf.console_users.create_user(
        p["name"], p["role"], p["password"], actor="cli"
    )
    out: dict[str, Any] = {
        "name": user.name,
        "role": user.role,
        "must_change_password": user.must_change_password,
    }
    if generated:
        out["one_time_password"] = generated
    return out


async def _console_user_reset(pf: Platform, p: Params) -> dict[str, Any]:
    password = await pf.console_users.reset_password(p["name"], actor="cli")
    return {"name": p["name"], "one_time_password": password}


async def _revoke_key(pf: Platform, p: Params) -> dict[str, Any]:
    revoked = await pf.auth.revoke_key(p["kind"], p["name"], CLI_ACTOR)
    return {"name": p["name"], "revoked": len(revoked)}


async def _rotate_server_key(pf: Platform, p: Params) -> dict[str, Any]:
    from ..services.keys import rotate_server_key

    return await rotate_server_key(pf.db, pf.registry, pf.clock, CLI_ACTOR)


async def _members(pf: Platform, p: Params) -> dict[str, Any]:
    return {"appid": p["appid"], "members": await pf.members.list(p["appid"])}


async def _console_users(pf: Platform, p: Params) -> dict[str, Any]:
    return {"users": [u.__dict__ for u in await pf.console_users.list_users()]}


_NO_API = "it has no admin API; it writes the shared SQL database directly"
_KEY_RING = (
    "it rewrites the server key in the shared SQL database; restart running servers afterwards"
)
_DEVICES = "it reaches the devices connected to the server; start `miniport serve` first"

async def _backup(pf: Platform, p: Params) -> dict[str, Any]:
    from ..services.backup import make_backup

    return await make_backup(pf, CLI_ACTOR, prune=p["prune"])


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation(
            "backup",
            lambda p: Route("POST", "/admin/v1/backups", {}, {"prune": str(p["prune"]).lower()}),
            _backup,
        ),
        # apps, data URLs, changes
        Operation(
            "app.create",
            lambda p: Route("POST", "/admin/v1/apps", {"name": p["name"]}),
            _app_create,
        ),
        Operation("app.list", lambda p: Route("GET", "/admin/v1/apps"), _app_list),
        Operation("app.show", lambda p: Route("GET", _app(p)), _app_show),
        Operation(
            "change.request",
            lambda p: Route(
                "POST",
                _app(p) + "/changes",
                {"kind": p["kind"], "op": p["op"], "url": p["url"], "ratio": p.get("ratio")},
            ),
            lambda pf, p: _as_dict(
                pf.apps.request_change(
                    p["appid"], p["kind"], p["op"], p["url"], CLI_ACTOR, p.get("ratio")
                )
            ),
        ),
        Operation(
            "app.settings",
            lambda p: (
                Route("POST", _app(p) + "/fetch-settings", p["changes"])
                if p["changes"]
                else Route("GET", _app(p) + "/fetch-settings")
            ),
            lambda pf, p: (
                pf.apps.update_fetch_settings(p["appid"], p["changes"], CLI_ACTOR)
                if p["changes"]
                else pf.apps.fetch_settings(p["appid"])
            ),
        ),
        Operation(
            "app.alerts",
            lambda p: (
                Route("POST", _app(p) + "/alerts", p["changes"])
                if p["changes"]
                else Route("GET", _app(p) + "/alerts")
            ),
            lambda pf, p: (
                pf.alerts.configure(p["appid"], p["changes"])
                if p["changes"]
                else pf.alerts.shown(p["appid"])
            ),
        ),
        Operation(
            "app.alerts.history",
            lambda p: Route("GET", _app(p) + "/alerts/history"),
            lambda pf, p: pf.alerts.history(p["appid"]),
        ),
        Operation(
            "app.api_trust",
            lambda p: Route("POST", _app(p) + "/api-trust", {"trusted": p["trusted"]}),
            lambda pf, p: pf.wechat.set_trusted(p["appid"], p["trusted"], "cli-admin"),
        ),
        Operation(
            "app.testers.list",
            lambda p: Route("GET", _app(p) + "/testers"),
            lambda pf, p: pf.apps.testers(p["appid"]),
        ),
        Operation(
            "app.testers.add",
            lambda p: Route("POST", _app(p) + "/testers", {"user_id": p["user_id"]}),
            lambda pf, p: pf.apps.set_tester(p["appid"], p["user_id"], True, CLI_ACTOR),
        ),
        Operation(
            "app.testers.remove",
            lambda p: Route("DELETE", f"{_app(p)}/testers/{_q(p['user_id'])}"),
            lambda pf, p: pf.apps.set_tester(p["appid"], p["user_id"], False, CLI_ACTOR),
        ),
        Operation(
            "change.confirm",
            lambda p: Route("POST", "/admin/v1/changes/confirm", {"code": p["code"]}),
            lambda pf, p: _as_dict(pf.apps.confirm(p["code"], "cli-admin")),
        ),
        Operation("change.list", lambda p: Route("GET", _app(p) + "/changes"), _changes),
        Operation(
            "change.audit",
            lambda p: Route(
                "GET",
                "/admin/v1/audit",
                query={"limit": str(p["limit"]), **({"appid": p["appid"]} if p["appid"] else {})},
            ),
            _audit,
        ),
        # users and keys
        Operation(
            "user.token",
            lambda p: Route(
                "POST",
                "/admin/v1/runtime-tokens",
                {"user_id": p["user_id"], "device_id": p.get("device_id"), "appid": p.get("appid")},
            ),
            _runtime_token,
        ),
        Operation(
            "user.revoke",
            lambda p: Route(
                "POST",
                "/admin/v1/runtime-tokens/revoke",
                {"user_id": p["user_id"], "before": p.get("before")},
            ),
            lambda pf, p: pf.auth.revoke_runtime(p["user_id"], p.get("before"), CLI_ACTOR),
        ),
        Operation(
            "key.create",
            None,
            lambda pf, p: pf.auth.create_key(p["kind"], p["name"], p.get("role")),
            why_local=_NO_API,
        ),
        Operation("key.revoke", None, _revoke_key, why_local=_NO_API),
        Operation(
            "key.rotate",
            None,
            lambda pf, p: pf.auth.rotate_key(p["kind"], p["name"], CLI_ACTOR),
            why_local=_NO_API,
        ),
        Operation("server_key.rotate", None, _rotate_server_key, why_local=_KEY_RING),
        # app members
        Operation("member.list", lambda p: Route("GET", _app(p) + "/members"), _members),
        Operation(
            "member.add",
            lambda p: Route("POST", _app(p) + "/members", {"user": p["user"], "role": p["role"]}),
            lambda pf, p: pf.members.add(p["appid"], p["user"], p["role"], CLI_ACTOR),
        ),
        Operation(
            "member.remove",
            lambda p: Route("DELETE", f"{_app(p)}/members/{_q(p['user'])}"),
            lambda pf, p: pf.members.remove(p["appid"], p["user"], CLI_ACTOR),
        ),
        Operation("console.user.create", None, _console_user_create, why_local=_NO_API),
        Operation("console.user.list", None, _console_users, why_local=_NO_API),
        Operation("console.user.reset", None, _console_user_reset, why_local=_NO_API),
        # devtools
        Operation(
            "devtools.fetch",
            lambda p: Route(
                "POST",
                _app(p) + "/devtools/fetch",
                {k: p[k] for k in ("user_id", "type", "path", "query", "scene")},
            ),
            _fetch_now,
        ),
        Operation(
            "devtools.clear",
            lambda p: Route(
                "POST",
                _app(p) + "/devtools/clear",
                {"user_id": p["user_id"]} if p["user_id"] else None,
            ),
            lambda pf, p: _dict("cleared", pf.background.clear(p["appid"], p["user_id"])),
        ),
        Operation(
            "devtools.push",
            lambda p: Route("POST", _app(p) + "/devtools/push", {"user_id": p["user_id"]}),
            None,
            why_server=_DEVICES,
        ),
        Operation(
            "devtools.log",
            lambda p: Route(
                "GET",
                _app(p) + "/fetch-log",
                query={
                    "limit": str(p["limit"]),
                    **({"user_id": p["user_id"]} if p["user_id"] else {}),
                },
            ),
            lambda pf, p: _dict("entries", pf.background.log(p["appid"], p["limit"], p["user_id"])),
        ),
        Operation(
            "devtools.prefetch_report",
            lambda p: Route(
                "GET",
                _app(p) + "/prefetch-report",
                query={k: p[k] for k in ("from", "to") if p[k]},
            ),
            lambda pf, p: pf.background.prefetch_report(p["appid"], p["from"], p["to"]),
        ),
        # analytics: definitions and lifecycle
        Operation(
            "analytics.definitions",
            lambda p: Route("GET", _an(p) + "/definitions"),
            lambda pf, p: pf.analytics.definitions(p["appid"]),
        ),
        Operation(
            "analytics.field.add",
            lambda p: Route("POST", _an(p) + "/fields", p["body"]),
            lambda pf, p: pf.analytics.add_field(p["appid"], p["body"]),
        ),
        Operation(
            "analytics.field.retype",
            lambda p: Route("POST", f"{_an(p)}/fields/{_q(p['name'])}/retype", p["body"]),
            lambda pf, p: pf.analytics.retype_field(
                p["appid"], p["name"], p["body"]["type"], CLI_ACTOR
            ),
        ),
        Operation(
            "analytics.event.save",
            lambda p: Route("POST", _an(p) + "/events", p["body"]),
            lambda pf, p: pf.analytics.save_event(p["appid"], p["body"]),
        ),
        Operation(
            "analytics.event.delete",
            lambda p: Route("DELETE", f"{_an(p)}/events/{_q(p['name'])}"),
            lambda pf, p: pf.analytics.delete_event(p["appid"], p["name"]),
        ),
        Operation(
            "analytics.publish",
            lambda p: Route("POST", _an(p) + "/publish"),
            lambda pf, p: pf.analytics.publish(p["appid"], CLI_ACTOR),
        ),
        Operation(
            "analytics.builtin",
            lambda p: Route("PUT", _an(p) + "/builtin-events", {"builtin_events": p["on"]}),
            lambda pf, p: pf.analytics.set_builtin_events(p["appid"], p["on"], CLI_ACTOR),
        ),
        Operation(
            "analytics.reset",
            lambda p: Route("POST", _an(p) + "/reset"),
            lambda pf, p: pf.analytics.reset(p["appid"]),
        ),
        Operation("analytics.versions", lambda p: Route("GET", _an(p) + "/versions"), _versions),
        # analytics: tests
        Operation(
            "analytics.test.start",
            lambda p: Route("POST", _an(p) + "/tests", {"user_id": p["user_id"]}),
            lambda pf, p: pf.analytics.start_test(p["appid"], p["user_id"], CLI_ACTOR),
        ),
        Operation(
            "analytics.test.stop",
            lambda p: Route("POST", f"{_an(p)}/tests/{_q(p['test'])}/stop"),
            lambda pf, p: pf.analytics.stop_test(p["appid"], p["test"]),
        ),
        Operation("analytics.test.list", lambda p: Route("GET", _an(p) + "/tests"), _tests),
        Operation(
            "analytics.test.sync",
            lambda p: Route("POST", f"{_an(p)}/tests/{_q(p['test'])}/sync"),
            lambda pf, p: pf.analytics.sync_test(p["appid"], p["test"]),
        ),
        # analytics: reports
        Operation(
            "analytics.report", lambda p: Route("POST", _an(p) + "/report", p["body"]), _report
        ),
        Operation(
            "analytics.funnel", lambda p: Route("POST", _an(p) + "/funnel", p["body"]), _funnel
        ),
        Operation(
            "analytics.overview",
            lambda p: Route("POST", _an(p) + "/overview", p["body"]),
            _overview,
        ),
        Operation(
            "analytics.realtime",
            lambda p: Route("GET", _an(p) + "/realtime", query=_realtime_query(p)),
            _realtime,
        ),
        Operation(
            "analytics.retention",
            lambda p: Route("POST", _an(p) + "/retention", p["body"]),
            _retention,
        ),
        Operation("analytics.paths", lambda p: Route("POST", _an(p) + "/paths", p["body"]), _paths),
        Operation(
            "analytics.export",
            lambda p: Route("GET", _an(p) + "/export", query=_export_query(p), text=True),
            _export,
        ),
        Operation(
            "analytics.count",
            lambda p: Route("GET", _an(p) + "/count", query=_count_query(p)),
            _count,
        ),
    )
}


def _saved(p: Params) -> str:
    return f"{_an(p)}/saved/{_q(p['name'])}"


def _board(p: Params) -> str:
    return f"{_an(p)}/dashboards/{_q(p['name'])}"


def _user_query(p: Params) -> dict[str, str]:
    extra = {"before": p["before"]} if p["before"] else {}
    return {"user": p["user_id"], "limit": str(p["limit"]), **extra}


ANALYTICS_MORE: tuple[Operation, ...] = (
    # one user: lookup and erasure
    Operation(
        "analytics.user",
        lambda p: Route("GET", _an(p) + "/users/events", query=_user_query(p)),
        lambda pf, p: pf.analytics.user_events(
            p["appid"], p["user_id"], limit=p["limit"], before=p["before"]
        ),
    ),
    Operation(
        "analytics.forget",
        lambda p: Route("POST", _an(p) + "/users/forget", {"user_id": p["user_id"]}),
        lambda pf, p: pf.analytics.forget_user(p["appid"], p["user_id"], CLI_ACTOR),
    ),
    # saved reports
    Operation(
        "analytics.saved.save",
        lambda p: Route("POST", _an(p) + "/saved", p["body"]),
        lambda pf, p: pf.saved.save(p["appid"], p["body"], CLI_ACTOR),
    ),
    Operation(
        "analytics.saved.list",
        lambda p: Route("GET", _an(p) + "/saved"),
        lambda pf, p: pf.saved.list_saved(p["appid"]),
    ),
    Operation(
        "analytics.saved.show",
        lambda p: Route("GET", _saved(p)),
        lambda pf, p: pf.saved.show(p["appid"], p["name"]),
    ),
    Operation(
        "analytics.saved.run",
        lambda p: Route("POST", _saved(p) + "/run"),
        lambda pf, p: pf.saved.run(p["appid"], p["name"]),
    ),
    Operation(
        "analytics.saved.delete",
        lambda p: Route("DELETE", _saved(p)),
        lambda pf, p: pf.saved.delete(p["appid"], p["name"], CLI_ACTOR),
    ),
    # dashboards
    Operation(
        "analytics.dashboard.create",
        lambda p: Route("POST", _an(p) + "/dashboards", p["body"]),
        lambda pf, p: pf.saved.create_dashboard(p["appid"], p["body"], CLI_ACTOR),
    ),
    Operation(
        "analytics.dashboard.list",
        lambda p: Route("GET", _an(p) + "/dashboards"),
        lambda pf, p: pf.saved.dashboards(p["appid"]),
    ),
    Operation(
        "analytics.dashboard.show",
        lambda p: Route("GET", _board(p)),
        lambda pf, p: pf.saved.dashboard(p["appid"], p["name"]),
    ),
    Operation(
        "analytics.dashboard.run",
        lambda p: Route("POST", _board(p) + "/run"),
        lambda pf, p: pf.saved.run_dashboard(p["appid"], p["name"]),
    ),
    Operation(
        "analytics.dashboard.range",
        lambda p: Route("PUT", _board(p) + "/range", p["body"]),
        lambda pf, p: pf.saved.set_range(p["appid"], p["name"], p["body"], CLI_ACTOR),
    ),
    Operation(
        "analytics.dashboard.delete",
        lambda p: Route("DELETE", _board(p)),
        lambda pf, p: pf.saved.delete_dashboard(p["appid"], p["name"], CLI_ACTOR),
    ),
    Operation(
        "analytics.dashboard.add",
        lambda p: Route("POST", _board(p) + "/items", {"report": p["report"], "width": p["width"]}),
        lambda pf, p: pf.saved.add(p["appid"], p["name"], p["report"], p["width"], CLI_ACTOR),
    ),
    Operation(
        "analytics.dashboard.move",
        lambda p: Route(
            "POST", f"{_board(p)}/items/{_q(p['report'])}/move", {"position": p["position"]}
        ),
        lambda pf, p: pf.saved.move(p["appid"], p["name"], p["report"], p["position"], CLI_ACTOR),
    ),
    Operation(
        "analytics.dashboard.remove",
        lambda p: Route("DELETE", f"{_board(p)}/items/{_q(p['report'])}"),
        lambda pf, p: pf.saved.remove(p["appid"], p["name"], p["report"], CLI_ACTOR),
    ),
)
OPERATIONS.update({op.name: op for op in ANALYTICS_MORE})


async def _as_dict(pending: Awaitable[Any]) -> dict[str, Any]:
    return (await pending).as_dict()  # type: ignore[no-any-return]


async def _dict(key: str, value: Awaitable[Any]) -> dict[str, Any]:
    return {key: await value}
