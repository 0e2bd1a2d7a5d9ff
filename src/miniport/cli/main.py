"""The ``miniport`` command line."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ..errors import InvalidInput, MiniportError
from .backend import call
from .common import (
    DataDir,
    Json,
    Role,
    console,
    fail,
    local_time,
    new_table,
    render,
    settings_for,
    text_of,
)

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
key_cmd = typer.Typer(
    help="Host keys: host backends use one to get runtime tokens for their users.",
    no_args_is_help=True,
)
app.add_typer(app_cmd, name="app")
app.add_typer(url_cmd, name="fetch-url")
grey_cmd = typer.Typer(
    help="Grey release: a second URL for a share of users (each change waits for an admin).",
    no_args_is_help=True,
)
url_cmd.add_typer(grey_cmd, name="grey")
testers_cmd = typer.Typer(
    help="Testers: users always served by the grey URLs.", no_args_is_help=True
)
app_cmd.add_typer(testers_cmd, name="testers")
app.add_typer(change_cmd, name="change")
app.add_typer(user_cmd, name="user")
app.add_typer(devtools_cmd, name="devtools")
app.add_typer(key_cmd, name="host-key")
api_key_cmd = typer.Typer(
    help="Admin API keys (for scripts calling /admin/v1; the CLI needs none).",
    no_args_is_help=True,
)
app.add_typer(api_key_cmd, name="api-key")
member_cmd = typer.Typer(help="An app's developers and viewers.", no_args_is_help=True)
app_cmd.add_typer(member_cmd, name="member")
server_key_cmd = typer.Typer(help="The server key (signing and sealing).", no_args_is_help=True)
app.add_typer(server_key_cmd, name="key")


class FetchKind(StrEnum):
    periodic = "periodic"
    pre = "pre"


Kind = Annotated[FetchKind, typer.Option("--kind", help="Which data URL: periodic or pre-fetch")]


def iso_time(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(f"not an ISO time: {text!r}") from exc
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def qr_text(link: str) -> str:
    import qrcode

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
    created = call(data_dir, as_json, "app.create", name=name)
    render(as_json, {k: created[k] for k in ("appid", "secret", "name")})


@app_cmd.command("list")
def app_list(data_dir: DataDir = None, as_json: Json = False) -> None:
    """Every app: its appid and name."""
    apps = [
        {"appid": a["appid"], "name": a["name"]}
        for a in call(data_dir, as_json, "app.list")["apps"]
    ]

    def human() -> None:
        table = new_table("appid", "name")
        for a in apps:
            table.add_row(escape(a["appid"]), escape(a["name"]))
        console.print(table)

    render(as_json, {"apps": apps}, human)


@app_cmd.command("show")
def app_show(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """The app's data URLs (with their grey release), testers and pending changes."""
    shown = {
        k: v
        for k, v in call(data_dir, as_json, "app.show", appid=appid).items()
        if k in ("appid", "urls", "testers", "pending", "waking")
    }

    def human() -> None:
        console.print(f"[bold]{escape(appid)}[/bold]")
        for kind, u in shown["urls"].items():
            state = "enabled" if u["enabled"] else "disabled"
            console.print(
                f"  {kind}: {escape(u['url'] or '(none)')} ({state},"
                f" since {local_time(u['updated_at'])})",
                highlight=False,
            )
            if u.get("grey_url"):  # as the console's grey release table
                console.print(
                    f"    grey: {escape(u['grey_url'])} ({u['grey_ratio']} % of users)",
                    highlight=False,
                )
        if shown["testers"]:
            console.print(f"  testers: {escape(', '.join(shown['testers']))}", highlight=False)
        _print_wakes(shown["waking"])
        console.print("pending changes:" if shown["pending"] else "no pending change")
        if shown["pending"]:
            _print_changes(shown["pending"])

    render(as_json, shown, human)


def _print_wakes(wakes: list[dict[str, Any]]) -> None:
    """The confirmed changes still waking the users they move (each user fetched again at once
    from the URL now serving it): in progress, or stalled and to be resumed. Short lines: 80
    columns hold them."""
    for w in wakes:
        ratio = f" at {w['ratio']} %" if w.get("ratio") is not None else ""
        console.print(
            f"  waking the users of change [bold]{escape(w['change_id'])}[/bold]"
            f" ({w['op']} {w['kind']}{ratio})",
            highlight=False,
        )
        state = "[yellow]stalled[/yellow], the scheduler resumes it" if w["stalled"] else "going"
        console.print(f"    {state}; last step {local_time(w['moved_on_at'])}", highlight=False)
        if w["after_user"]:
            console.print(f"    woken up to user {escape(w['after_user'])}", highlight=False)


def _print_changes(changes: list[dict[str, Any]]) -> None:
    """One line per change, its URL whole on the next line (copyable at any width)."""
    for c in changes:
        change_id = c.get("id") or c.get("change_id")
        console.print(
            f"[bold]{escape(str(change_id))}[/bold] {c['status']}: {c['op']} {c['kind']}"
            + (f" at {c['ratio']} %" if c.get("ratio") is not None else "")
            + f" by {escape(text_of('', c.get('requested_by')))},"
            f" expires {local_time(c['expires_at'])}",
            highlight=False,
            soft_wrap=True,
        )
        if c.get("url"):
            console.print(f"  {c['url']}", highlight=False, markup=False, soft_wrap=True)


# --- data URLs ---
def _change(
    appid: str,
    kind: str,
    op: str,
    url: str | None,
    data_dir: Path | None,
    as_json: bool,
    ratio: int | None = None,
) -> None:
    pending = call(
        data_dir, as_json, "change.request", appid=appid, kind=kind, op=op, url=url, ratio=ratio
    )

    def human() -> None:  # soft wrap: the terminal folds long lines, no newline in a URL
        console.print(
            f"Change [bold]{pending['change_id']}[/bold]: {op.replace('_', ' ')} {kind} URL"
            + (f" to {escape(url)}" if url else "")
            + (f" at {ratio} %" if ratio is not None else "")
            + " — waiting for an admin.",
            soft_wrap=True,
        )
        console.print("An admin scans this code (or opens the link) to confirm it:")
        console.print(qr_text(pending["confirm_url"]), highlight=False, markup=False)
        console.print(f"link: {pending['confirm_url']}", markup=False, soft_wrap=True)
        console.print(
            f"or type: [bold]miniport change confirm {pending['confirm_code']}[/bold]"
            f" (valid until {local_time(pending['expires_at'])}, once)"
        )

    render(as_json, pending, human)


@url_cmd.command("set")
def url_set(
    appid: str,
    kind: Kind,
    url: Annotated[str, typer.Option("--url", help="https URL (http: loopback in dev mode)")],
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Request a new periodic or pre-fetch URL."""
    _change(appid, kind.value, "set", url, data_dir, as_json)


@url_cmd.command("enable")
def url_enable(appid: str, kind: Kind, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Request to resume fetching from the kind's URL (waits for an admin)."""
    _change(appid, kind.value, "enable", None, data_dir, as_json)


@url_cmd.command("disable")
def url_disable(appid: str, kind: Kind, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Request to stop fetching from the kind's URL, keeping it (waits for an admin)."""
    _change(appid, kind.value, "disable", None, data_dir, as_json)


Ratio = Annotated[int, typer.Option("--ratio", help="share of users on the grey URL, 0..100 %")]


@grey_cmd.command("set")
def grey_set(
    appid: str,
    kind: Kind,
    url: Annotated[str, typer.Option("--url")],
    ratio: Ratio = 0,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Request a grey URL serving RATIO % of the users (0: the app's testers only)."""
    _change(appid, kind, "grey_set", url, data_dir, as_json, ratio)


@grey_cmd.command("ratio")
def grey_ratio(
    appid: str, kind: Kind, ratio: Ratio, data_dir: DataDir = None, as_json: Json = False
) -> None:
    """Request a new grey ratio (raising it only adds users)."""
    _change(appid, kind, "grey_ratio", None, data_dir, as_json, ratio)


@grey_cmd.command("promote")
def grey_promote(appid: str, kind: Kind, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Request that the grey URL become the main URL for everyone.

    A disabled data URL is turned on again: a promote is the decision to serve it."""
    _change(appid, kind, "grey_promote", None, data_dir, as_json)


@grey_cmd.command("clear")
def grey_clear(appid: str, kind: Kind, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Request that the grey URL be dropped (everyone back on the main URL)."""
    _change(appid, kind, "grey_clear", None, data_dir, as_json)


@app_cmd.command("settings")
def app_settings(
    appid: str,
    interval: Annotated[str | None, typer.Option("--interval", help="1h..24h, like 6h")] = None,
    active_days: Annotated[int | None, typer.Option("--active-days")] = None,
    timeout: Annotated[str | None, typer.Option("--timeout", help="like 5s")] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", help="'Name: value' (repeatable)")
    ] = None,
    clear_headers: Annotated[bool, typer.Option("--clear-headers")] = False,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Show or change the app's fetch settings (header values are shown masked)."""
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "interval": interval,
            "active_days": active_days,
            "timeout": timeout,
            "headers": header or None,
            "clear_headers": clear_headers or None,
        }.items()
        if v is not None
    }
    shown = call(data_dir, as_json, "app.settings", appid=appid, changes=changes)

    def human() -> None:
        d = shown["defaults"]
        interval_s = shown["interval_s"] or d["interval_s"]
        console.print(f"[bold]{escape(appid)}[/bold]")
        console.print(f"  interval: {interval_s / 3600:g} h", highlight=False)
        console.print(f"  active days: {shown['active_days'] or d['active_days']:g}")
        console.print(f"  timeout: {shown['timeout_s'] or '(platform)'}", highlight=False)
        for name, masked in shown["headers"].items():
            console.print(f"  header {escape(name)}: {escape(masked)}", highlight=False)

    render(as_json, shown, human)


@app_cmd.command("alerts")
def app_alerts(
    appid: str,
    webhook: Annotated[str | None, typer.Option("--webhook", help="URL ('' removes it)")] = None,
    email: Annotated[str | None, typer.Option("--email", help="address ('' removes it)")] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="success %")] = None,
    window: Annotated[str | None, typer.Option("--window", help="like 5m")] = None,
    min_fetches: Annotated[int | None, typer.Option("--min-fetches")] = None,
    history: Annotated[bool, typer.Option("--history", help="the alerts sent")] = False,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Show or change where alerts go when the app's data server fails, or their history."""
    if history:
        found = call(data_dir, as_json, "app.alerts.history", appid=appid)

        def human_history() -> None:
            table = new_table("time", "kind", "state", "success", "fetches", "cause")
            for a in found["alerts"]:
                rate = "" if a["success_rate"] is None else f"{a['success_rate'] * 100:.0f} %"
                table.add_row(local_time(a["ts"]), a["kind"], a["state"], rate,
                              str(a["fetches"]), escape(a["cause"] or ""))  # fmt: skip
            console.print(table)

        render(as_json, found, human_history)
        return
    values = {"webhook": webhook, "email": email, "threshold": threshold, "window": window,
              "min_fetches": min_fetches}  # fmt: skip
    changes = {k: v for k, v in values.items() if v is not None}
    shown = call(data_dir, as_json, "app.alerts", appid=appid, changes=changes)

    def human() -> None:
        console.print(f"[bold]{escape(appid)}[/bold] alerts", highlight=False)
        for key in ("webhook", "email", "threshold", "window_s", "min_fetches", "states"):
            console.print(f"  {key}: {escape(str(shown[key]))}", highlight=False)

    render(as_json, shown, human)


@app_cmd.command("api-trust")
def app_api_trust(
    appid: str,
    off: Annotated[bool, typer.Option("--off", help="changes wait for an admin again")] = False,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Let WeChat's settings API change the app's URLs without an admin confirming each one."""
    shown = call(data_dir, as_json, "app.api_trust", appid=appid, trusted=not off)
    state = "apply at once" if shown["api_changes_trusted"] else "wait for an admin"
    render(as_json, shown, lambda: console.print(f"API changes of {escape(appid)} {state}"))


def _testers(found: dict[str, Any], as_json: bool) -> None:
    def human() -> None:
        names = [t["user_id"] for t in found["testers"]]
        console.print(
            f"testers of {escape(found['appid'])}: " + (escape(", ".join(names)) or "(none)"),
            highlight=False,
        )

    render(as_json, found, human)


@testers_cmd.command("list")
def testers_list(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """The app's testers."""
    _testers(call(data_dir, as_json, "app.testers.list", appid=appid), as_json)


@testers_cmd.command("add")
def testers_add(appid: str, user: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Make a user a tester (always served by the grey URLs)."""
    _testers(call(data_dir, as_json, "app.testers.add", appid=appid, user_id=user), as_json)


@testers_cmd.command("remove")
def testers_remove(appid: str, user: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Make a tester an ordinary user again."""
    _testers(call(data_dir, as_json, "app.testers.remove", appid=appid, user_id=user), as_json)


@change_cmd.command("confirm")
def change_confirm(code: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Confirm a change with the code from its QR page (an admin's act, audited)."""
    change = call(data_dir, as_json, "change.confirm", code=code)
    render(
        as_json,
        {
            "change_id": change["id"],
            **{k: change[k] for k in ("status", "appid", "kind", "op", "url", "ratio")},
        },
    )


@change_cmd.command("list")
def change_list(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """The app's URL change requests (pending, applied, expired), newest first."""
    found = call(data_dir, as_json, "change.list", appid=appid)

    def human() -> None:
        if not found["changes"]:
            console.print("no change requested yet")
        _print_changes(found["changes"])

    render(as_json, found, human)


@change_cmd.command("audit")
def change_audit(
    appid: Annotated[str | None, typer.Argument()] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """The audit log (every change request and confirmation)."""
    entries = call(data_dir, as_json, "change.audit", appid=appid, limit=200)["entries"]

    def human() -> None:
        if not entries:
            console.print("no audit entries")
        for e in entries:  # a line per entry, its details whole on the next
            console.print(
                f"{local_time(e['ts'])} [bold]{escape(e['actor'])}[/bold]"
                f" {escape(e['action'])} {escape(text_of('', e['appid']))}",
                highlight=False,
                soft_wrap=True,
            )
            if e["detail"]:
                detail = text_of("detail", e["detail"])
                console.print(f"  {detail}", highlight=False, markup=False, soft_wrap=True)

    render(as_json, {"entries": entries}, human)


# --- users and keys ---
@user_cmd.command("token")
def user_token(
    user_id: str,
    device: Annotated[str | None, typer.Option("--device")] = None,
    app: Annotated[
        str | None,
        typer.Option("--app", help="for this app only (needed by a developer's API key)"),
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """A runtime token for a host user (what a host backend gets from the host API)."""
    made = call(data_dir, as_json, "user.token", user_id=user_id, device_id=device, appid=app)
    render(as_json, {"runtime_token": made["runtime_token"]})


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
    try:
        cutoff = iso_time(before)
    except MiniportError as exc:
        fail(as_json, exc)
    render(as_json, call(data_dir, as_json, "user.revoke", user_id=user_id, before=cutoff))


@key_cmd.command("create")
def host_key_create(
    name: Annotated[str, typer.Argument()] = "host", data_dir: DataDir = None, as_json: Json = False
) -> None:
    """A host key: host backends use it to get runtime tokens from /host/v1/runtime-tokens."""
    render(as_json, call(data_dir, as_json, "key.create", kind="host", name=name))


@api_key_cmd.command("create")
def api_key_create(
    name: str,
    role: Annotated[Role, typer.Option("--role", help="What the key may do")] = Role.developer,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """An admin API key with a role."""
    made = call(data_dir, as_json, "key.create", kind="api", name=name, role=role.value)
    render(as_json, made)


@api_key_cmd.command("revoke")
def api_key_revoke(name: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Revoke the admin API keys of that name; they stop working at once."""
    render(as_json, call(data_dir, as_json, "key.revoke", kind="api", name=name))


@api_key_cmd.command("rotate")
def api_key_rotate(name: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Revoke the admin API keys of that name and print a new one with the same role."""
    render(as_json, call(data_dir, as_json, "key.rotate", kind="api", name=name))


@server_key_cmd.command("rotate")
def server_key_rotate(data_dir: DataDir = None, as_json: Json = False) -> None:
    """A new server key; restart running servers afterwards.

    What is sealed with the old key is re-sealed, runtime tokens it signed stay valid till they
    expire, openids never change."""
    render(as_json, call(data_dir, as_json, "server_key.rotate"))


@member_cmd.command("add")
def member_add(
    appid: str,
    user: str,
    role: Annotated[str, typer.Option("--role", help="developer or viewer")],
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Give a console user (or key:NAME, an API key) access to the app."""
    render(as_json, call(data_dir, as_json, "member.add", appid=appid, user=user, role=role))


@member_cmd.command("remove")
def member_remove(appid: str, user: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Take a console user's (or key:NAME's) access to the app away."""
    render(as_json, call(data_dir, as_json, "member.remove", appid=appid, user=user))


@member_cmd.command("list")
def member_list(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """The app's developers and viewers: role and who added them."""
    found = call(data_dir, as_json, "member.list", appid=appid)

    def human() -> None:
        table = new_table("user", "role", "added by")
        for m in found["members"]:
            table.add_row(escape(m["user"]), m["role"], escape(m["added_by"] or ""))
        console.print(table)

    render(as_json, found, human)


# --- devtools ---
@devtools_cmd.command("fetch")
def devtools_fetch(
    appid: str,
    user: Annotated[str, typer.Option("--user")],
    fetch_type: Annotated[
        FetchKind, typer.Option("--type", help="Which data URL to fetch")
    ] = FetchKind.periodic,
    path: Annotated[str, typer.Option("--path")] = "",
    query: Annotated[str, typer.Option("--query")] = "",
    scene: Annotated[int, typer.Option("--scene", min=0, max=99999)] = 1001,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Fetch now; shows the exact request and the verdict."""
    shown = call(
        data_dir,
        as_json,
        "devtools.fetch",
        appid=appid,
        user_id=user,
        type=fetch_type.value,
        path=path,
        query=query,
        scene=scene,
    )

    def human() -> None:
        color = "green" if shown["verdict"] in ("cached", "not_modified") else "red"
        console.print(
            f"verdict: [{color}]{shown['verdict']}[/{color}]"
            f"  status: {text_of('', shown['status'])}"
            f"  bytes: {text_of('', shown['bytes'])}  {shown['latency_ms']} ms"
        )
        if shown.get("error"):
            console.print(f"error: {escape(str(shown['error']))}")
        request = shown.get("request") or {}
        if request:
            # soft wrap: the terminal folds long lines, no newline lands inside a URL or signature
            console.print(f"request: GET {request['url']}", markup=False, soft_wrap=True)
            for k, v in request.get("headers", {}).items():
                console.print(f"  {k}: {v}", highlight=False, markup=False, soft_wrap=True)

    render(as_json, shown, human)


@devtools_cmd.command("prefetch-report")
def devtools_prefetch_report(
    appid: str,
    since: Annotated[str | None, typer.Option("--from", help="YYYY-MM-DD (UTC)")] = None,
    until: Annotated[str | None, typer.Option("--to", help="YYYY-MM-DD (UTC), included")] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Was the pre-fetched data ready at the first read? By scene, path and platform."""
    found = call(
        data_dir, as_json, "devtools.prefetch_report", appid=appid, **{"from": since, "to": until}
    )
    shown = {"rows": found["rows"]}

    def ms(value: float | None) -> str:
        return "" if value is None else f"{value:.0f}"

    def human() -> None:
        table = new_table("scene", "path", "platform", "launches", "ready", "p50 ms", "p90 ms")
        for r in found["rows"]:
            table.add_row(str(r["scene"]), escape(r["path"]), escape(r["platform"]),
                          str(r["launches"]), f"{r['ready_share'] * 100:.0f} %",
                          ms(r["p50_ms"]), ms(r["p90_ms"]))  # fmt: skip
        console.print(table)

    render(as_json, shown, human)


@devtools_cmd.command("clear")
def devtools_clear(
    appid: str,
    user: Annotated[str | None, typer.Option("--user")] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Clear cached data for one user or the whole app."""
    render(as_json, call(data_dir, as_json, "devtools.clear", appid=appid, user_id=user))


@devtools_cmd.command("push")
def devtools_push(
    appid: str,
    user: Annotated[str, typer.Option("--user")],
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Tell the user's connected devices to refresh their periodic data (needs `serve`)."""
    render(as_json, call(data_dir, as_json, "devtools.push", appid=appid, user_id=user))


@devtools_cmd.command("log")
def devtools_log(
    appid: str,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    user: Annotated[str | None, typer.Option("--user")] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """The app's fetch log, newest first."""
    found = call(data_dir, as_json, "devtools.log", appid=appid, limit=limit, user_id=user)

    def human() -> None:
        if not found["entries"]:
            console.print(
                f"no fetches yet: `miniport devtools fetch {appid} --user {user or 'USER'}`"
                " makes one",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        for e in found["entries"]:  # a line per attempt; an error whole on the next line
            ms = e["latency_ms"]
            parts = [
                local_time(e["ts"]),
                *(text_of(k, e[k]) for k in ("user_id", "kind", "trigger", "verdict")),
                text_of("", e["status"] or None),
                f"{e['bytes']} B" if e["bytes"] else "",
                f"{ms:.1f} ms" if ms is not None else "",
            ]
            console.print(" ".join(p for p in parts if p), markup=False, highlight=False,
                          soft_wrap=True)  # fmt: skip
            if e["error"]:
                console.print(f"  {e['error']}", markup=False, highlight=False, soft_wrap=True)

    render(as_json, found, human)


def _register_server_commands() -> None:
    from . import admin, backups, serve

    serve.register(app)
    admin.register(app)
    backups.register(app)


def _no_type_beside_flags() -> None:
    """typer's help prints ``<bool>`` beside every flag (--json, --help, …), though a flag
    takes no value: show nothing there, as click does."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    setattr(TyperOption, "display_type_rich", display_type_rich)  # noqa: B010


def _no_bare_fetch_log() -> None:
    """A fetch run here (devtools fetch) prints its own verdict: without a handler, Python
    would also print the server's fetch log line for a failed one, bare, on stderr. serve and
    worker still log it (their handler is the root's; records propagate past this one)."""
    import logging

    logging.getLogger("miniport.fetch").addHandler(logging.NullHandler())


def main() -> None:
    from . import analytics as analytics_cli

    _no_type_beside_flags()
    _no_bare_fetch_log()

    _register_server_commands()
    analytics_cli.register(app)
    try:
        app()
    except MiniportError as exc:  # an error no command rendered itself (serve's settings)
        try:
            fail(False, exc)
        except typer.Exit as done:  # outside typer's own handling here
            raise SystemExit(done.exit_code) from None


__all__ = ["app", "main", "settings_for"]
