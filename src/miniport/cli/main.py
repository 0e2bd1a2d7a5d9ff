"""The ``miniport`` command line."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import qrcode
import typer
from rich.table import Table

from ..domain.requests import Launch
from ..errors import InvalidInput, MiniportError
from ..platform import Platform
from ..services.keys import rotate_server_key
from ..services.members import MemberService
from .common import DataDir, Json, call_server, console, emit, fail, run_with_platform, settings_for

app = typer.Typer(
    help="Miniport: background data and custom analytics for mini-programs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app_cmd = typer.Typer(help="Register and inspect apps.", no_args_is_help=True)
url_cmd = typer.Typer(help="Data URLs (each change waits for an admin).", no_args_is_help=True)
change_cmd = typer.Typer(help="Confirm and list URL change requests.", no_args_is_help=True)
user_cmd = typer.Typer(help="Host users (development helpers).", no_args_is_help=True)
devtools_cmd = typer.Typer(
    help="Fetch now, clear cache, push a refresh, fetch log.", no_args_is_help=True
)
key_cmd = typer.Typer(help="Keys for host backends and for the admin API.", no_args_is_help=True)
app.add_typer(app_cmd, name="app")
app.add_typer(url_cmd, name="fetch-url")
app.add_typer(change_cmd, name="change")
app.add_typer(user_cmd, name="user")
app.add_typer(devtools_cmd, name="devtools")
app.add_typer(key_cmd, name="host-key")
api_key_cmd = typer.Typer(help="Admin API keys.", no_args_is_help=True)
app.add_typer(api_key_cmd, name="api-key")
member_cmd = typer.Typer(help="An app's developers and viewers.", no_args_is_help=True)
app_cmd.add_typer(member_cmd, name="member")
server_key_cmd = typer.Typer(help="The server key (signing and sealing).", no_args_is_help=True)
app.add_typer(server_key_cmd, name="key")

Kind = Annotated[str, typer.Option("--kind", help="periodic or pre")]
CLI_ACTOR = "cli"


def iso_time(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(f"not an ISO time: {text!r}") from exc
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def qr_text(link: str) -> str:
    qr = qrcode.QRCode(border=1)
    qr.add_data(link)
    qr.make(fit=True)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()


# --- apps ---
@app_cmd.command("create")
def app_create(name: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Create an app; prints its appid and secret."""
    created = run_with_platform(data_dir, as_json, lambda p: p.apps.create(name, CLI_ACTOR))
    emit(as_json, {"appid": created.appid, "secret": created.secret, "name": created.name})


@app_cmd.command("list")
def app_list(data_dir: DataDir = None, as_json: Json = False) -> None:
    async def work(p: Platform) -> list[Any]:
        return await p.db.read(p.registry.list_apps)

    apps = run_with_platform(data_dir, as_json, work)

    def human() -> None:
        table = Table("appid", "name")
        for a in apps:
            table.add_row(a.appid, a.name)
        console.print(table)

    emit(as_json, {"apps": [{"appid": a.appid, "name": a.name} for a in apps]}, human)


@app_cmd.command("show")
def app_show(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """The app's data URLs and pending changes."""
    emit(as_json, run_with_platform(data_dir, as_json, lambda p: p.apps.settings(appid)))


# --- data URLs ---
def _change(
    appid: str, kind: str, op: str, url: str | None, data_dir: Path | None, as_json: bool
) -> None:
    pending = run_with_platform(
        data_dir, as_json, lambda p: p.apps.request_change(appid, kind, op, url, CLI_ACTOR)
    )
    value = pending.as_dict()

    def human() -> None:
        console.print(
            f"Change [bold]{pending.change.id}[/bold]: {op} {kind} URL"
            + (f" to {url}" if url else "")
            + " — waiting for an admin."
        )
        console.print("An admin scans this code (or opens the link) to confirm it:")
        console.print(qr_text(pending.confirm_url), highlight=False, markup=False)
        console.print(f"link: {pending.confirm_url}")
        console.print(
            f"or type: [bold]miniport change confirm {pending.code}[/bold]"
            f" (valid {int(pending.change.expires_at - pending.change.created_at)} s, once)"
        )

    emit(as_json, value, human)


@url_cmd.command("set")
def url_set(
    appid: str,
    kind: Kind,
    url: Annotated[str, typer.Option("--url")],
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Request a new periodic or pre-fetch URL."""
    _change(appid, kind, "set", url, data_dir, as_json)


@url_cmd.command("enable")
def url_enable(appid: str, kind: Kind, data_dir: DataDir = None, as_json: Json = False) -> None:
    _change(appid, kind, "enable", None, data_dir, as_json)


@url_cmd.command("disable")
def url_disable(appid: str, kind: Kind, data_dir: DataDir = None, as_json: Json = False) -> None:
    _change(appid, kind, "disable", None, data_dir, as_json)


@change_cmd.command("confirm")
def change_confirm(code: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Confirm a change with the code from its QR page (an admin's act, audited)."""
    change = run_with_platform(data_dir, as_json, lambda p: p.apps.confirm(code, "cli-admin"))
    emit(
        as_json,
        {
            "change_id": change.id,
            "status": change.status,
            "appid": change.appid,
            "kind": change.kind,
            "op": change.op,
            "url": change.url,
        },
    )


@change_cmd.command("list")
def change_list(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    async def work(p: Platform) -> list[Any]:
        await p.apps.get(appid)
        return await p.db.read(p.registry.list_changes, appid)

    changes = run_with_platform(data_dir, as_json, work)
    emit(as_json, {"changes": [c.as_dict() for c in changes]})


@change_cmd.command("audit")
def change_audit(
    appid: Annotated[str | None, typer.Argument()] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """The audit log (every change request and confirmation)."""

    async def work(p: Platform) -> list[Any]:
        return await p.db.read(p.registry.list_audit, appid, 200)

    entries = run_with_platform(data_dir, as_json, work)

    def human() -> None:
        table = Table("time", "actor", "action", "app", "detail")
        for e in entries:
            table.add_row(
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.ts)),
                e.actor,
                e.action,
                e.appid or "",
                str(e.detail),
            )
        console.print(table)

    emit(as_json, {"entries": [e.__dict__ for e in entries]}, human)


# --- users and keys ---
@user_cmd.command("token")
def user_token(
    user_id: str,
    device: Annotated[str | None, typer.Option("--device")] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """A runtime token for a host user (what a host backend gets from the host API)."""

    async def work(p: Platform) -> str:
        return p.auth.runtime_token(user_id, device)

    emit(as_json, {"runtime_token": run_with_platform(data_dir, as_json, work)})


@user_cmd.command("revoke")
def user_revoke(
    user_id: str,
    before: Annotated[
        str | None, typer.Option("--before", help="ISO time (UTC if no offset); default: now")
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Revoke the user's runtime tokens: all of them, or those issued before --before."""

    async def work(p: Platform) -> dict[str, Any]:
        return await p.auth.revoke_runtime(user_id, iso_time(before), CLI_ACTOR)

    emit(as_json, run_with_platform(data_dir, as_json, work))


@key_cmd.command("create")
def host_key_create(
    name: Annotated[str, typer.Argument()] = "host", data_dir: DataDir = None, as_json: Json = False
) -> None:
    """A host key: host backends use it to get runtime tokens from /host/v1/runtime-tokens."""
    emit(as_json, run_with_platform(data_dir, as_json, lambda p: p.auth.create_key("host", name)))


@api_key_cmd.command("create")
def api_key_create(
    name: str,
    role: Annotated[str, typer.Option("--role")] = "developer",
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """An admin API key with a role (admin, developer, viewer)."""
    emit(
        as_json,
        run_with_platform(data_dir, as_json, lambda p: p.auth.create_key("api", name, role)),
    )


@api_key_cmd.command("revoke")
def api_key_revoke(name: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Revoke the admin API keys of that name; they stop working at once."""
    revoked = run_with_platform(
        data_dir, as_json, lambda p: p.auth.revoke_key("api", name, CLI_ACTOR)
    )
    emit(as_json, {"name": name, "revoked": len(revoked)})


@api_key_cmd.command("rotate")
def api_key_rotate(name: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Revoke the admin API keys of that name and print a new one with the same role."""
    emit(
        as_json,
        run_with_platform(data_dir, as_json, lambda p: p.auth.rotate_key("api", name, CLI_ACTOR)),
    )


@server_key_cmd.command("rotate")
def server_key_rotate(data_dir: DataDir = None, as_json: Json = False) -> None:
    """A new server key; what is sealed with the old one is re-sealed, runtime tokens it signed
    stay valid till they expire, openids never change. Restart running servers afterwards."""

    async def work(p: Platform) -> dict[str, Any]:
        return await rotate_server_key(p.db, p.registry, p.clock, CLI_ACTOR)

    emit(as_json, run_with_platform(data_dir, as_json, work))


def _members(p: Platform) -> MemberService:
    return MemberService(p.db, p.registry, p.clock)


@member_cmd.command("add")
def member_add(
    appid: str,
    user: str,
    role: Annotated[str, typer.Option("--role", help="developer or viewer")],
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Give a console user (or key:NAME, an API key) access to the app."""
    added = run_with_platform(
        data_dir, as_json, lambda p: _members(p).add(appid, user, role, CLI_ACTOR)
    )
    emit(as_json, added)


@member_cmd.command("remove")
def member_remove(appid: str, user: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    removed = run_with_platform(
        data_dir, as_json, lambda p: _members(p).remove(appid, user, CLI_ACTOR)
    )
    emit(as_json, removed)


@member_cmd.command("list")
def member_list(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    members = run_with_platform(data_dir, as_json, lambda p: _members(p).list(appid))

    def human() -> None:
        table = Table("user", "role", "added by")
        for m in members:
            table.add_row(m["user"], m["role"], m["added_by"])
        console.print(table)

    emit(as_json, {"appid": appid, "members": members}, human)


# --- devtools ---
@devtools_cmd.command("fetch")
def devtools_fetch(
    appid: str,
    user: Annotated[str, typer.Option("--user")],
    fetch_type: Annotated[str, typer.Option("--type")] = "periodic",
    path: Annotated[str, typer.Option("--path")] = "",
    query: Annotated[str, typer.Option("--query")] = "",
    scene: Annotated[int, typer.Option("--scene")] = 1001,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Fetch now; shows the exact request and the verdict."""
    shown = run_with_platform(
        data_dir,
        as_json,
        lambda p: p.background.fetch_now(appid, user, fetch_type, Launch(path, query, scene)),
    )

    def human() -> None:
        color = "green" if shown["verdict"] in ("cached", "not_modified") else "red"
        console.print(
            f"verdict: [{color}]{shown['verdict']}[/{color}]  status: {shown['status']}"
            f"  bytes: {shown['bytes']}  {shown['latency_ms']} ms"
        )
        if shown.get("error"):
            console.print(f"error: {shown['error']}")
        request = shown.get("request") or {}
        if request:
            console.print(f"request: GET {request['url']}")
            for k, v in request.get("headers", {}).items():
                console.print(f"  {k}: {v}", highlight=False)

    emit(as_json, shown, human)


@devtools_cmd.command("clear")
def devtools_clear(
    appid: str,
    user: Annotated[str | None, typer.Option("--user")] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Clear cached data for one user or the whole app."""
    cleared = run_with_platform(data_dir, as_json, lambda p: p.background.clear(appid, user))
    emit(as_json, {"cleared": cleared})


@devtools_cmd.command("push")
def devtools_push(
    appid: str,
    user: Annotated[str, typer.Option("--user")],
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Tell the user's connected devices to refresh their periodic data (needs `serve`)."""
    try:
        result = call_server(
            data_dir, "POST", f"/admin/v1/apps/{appid}/devtools/push", {"user_id": user}
        )
    except MiniportError as exc:
        fail(as_json, exc)
    emit(as_json, result)


@devtools_cmd.command("log")
def devtools_log(
    appid: str,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    user: Annotated[str | None, typer.Option("--user")] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """The app's fetch log, newest first."""
    entries = run_with_platform(data_dir, as_json, lambda p: p.background.log(appid, limit, user))

    def human() -> None:
        table = Table(
            "time", "user", "kind", "trigger", "verdict", "status", "bytes", "ms", "error"
        )
        for e in entries:
            table.add_row(
                time.strftime("%H:%M:%S", time.localtime(e["ts"])),
                e["user_id"],
                e["kind"],
                e["trigger"],
                e["verdict"],
                str(e["status"] or ""),
                str(e["bytes"] or ""),
                f"{e['latency_ms']:.1f}" if e["latency_ms"] is not None else "",
                e["error"] or "",
            )
        console.print(table)

    emit(as_json, {"entries": entries}, human)


def _register_server_commands() -> None:
    from . import admin, serve

    serve.register(app)
    admin.register(app)


def main() -> None:
    from . import analytics as analytics_cli

    _register_server_commands()
    analytics_cli.register(app)
    app()


__all__ = ["app", "main", "settings_for"]
