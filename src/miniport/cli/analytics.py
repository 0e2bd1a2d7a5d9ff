"""``miniport analytics``: fields and events, save-and-test with a live view, sync, publish,
reset, reports, funnels and CSV export.

Every command is one operation of :mod:`.operations`, run through :func:`.backend.call` (the
running server's admin API, or the service here when none runs). ``test watch`` streams the
server's live test view, so it needs a running server. Times print as local dates."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer
from rich import box
from rich.markup import escape

from ..errors import MiniportError, ServerNotRunning

if TYPE_CHECKING:
    from rich.table import Table
from .analytics_cohorts import paths_command, retention_command
from .analytics_saved import dashboard_cmd, saved_cmd
from .backend import CommandError, Server, call, running_server
from .common import (
    DataDir,
    Json,
    console,
    err_console,
    fail,
    local_time,
    new_table,
    render,
    table_of,
)
from .move_store import move_store_command, refill_ids_command

analytics_cmd = typer.Typer(
    help="Custom analytics: fields, events, test, publish, reports.", no_args_is_help=True
)
field_cmd = typer.Typer(
    help="Fields (int, string, float or bool), shared by an app's events.", no_args_is_help=True
)
event_cmd = typer.Typer(help="Event definitions (drafts until published).", no_args_is_help=True)
test_cmd = typer.Typer(
    help="Save-and-test on a tester's devices, with a live view.", no_args_is_help=True
)
analytics_cmd.add_typer(field_cmd, name="field")
analytics_cmd.command("move-store")(move_store_command)
analytics_cmd.command("refill-ids")(refill_ids_command)
analytics_cmd.command("retention")(retention_command)
analytics_cmd.command("paths")(paths_command)
analytics_cmd.add_typer(event_cmd, name="event")
analytics_cmd.add_typer(test_cmd, name="test")
analytics_cmd.add_typer(saved_cmd, name="saved")
analytics_cmd.add_typer(dashboard_cmd, name="dashboard")


def register(app: typer.Typer) -> None:
    app.add_typer(analytics_cmd, name="analytics")


class FieldType(StrEnum):
    INT = "int"
    STRING = "string"
    FLOAT = "float"
    BOOL = "bool"


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"
    ALL = "all"


class ExportFormat(StrEnum):
    CSV = "csv"


# --- fields and events ---
@field_cmd.command("add")
def field_add(
    appid: str,
    name: str,
    field_type: Annotated[
        FieldType, typer.Option("--type", help="int (32-bit), string, float or bool")
    ],
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Define a field.

    Re-adding it with another type changes it until it is published; a published field
    changes type with `field retype`."""
    body = {"name": name, "type": field_type.value}
    added = call(data_dir, as_json, "analytics.field.add", appid=appid, body=body)
    render(
        as_json,
        added,
        lambda: console.print(f"field [bold]{added['name']}[/bold] ({added['type']}) defined"),
    )


@field_cmd.command("retype")
def field_retype(
    appid: str,
    name: str,
    field_type: Annotated[FieldType, typer.Option("--type", help="The new type")],
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Change a field's type.

    For a published field it takes effect at the next publish: the events stored so far keep
    their values under the old type, new ones arrive under the new, and reports across the
    change say which part used which. Back to the published type cancels a pending change;
    back to a type the field had before reuses its old slot."""
    body = {"type": field_type.value}
    done = call(data_dir, as_json, "analytics.field.retype", appid=appid, name=name, body=body)

    def human() -> None:
        if done["status"] == "pending publish":
            console.print(
                f"field [bold]{done['name']}[/bold]: {done['type']} -> {done['pending_type']} "
                "at the next publish (old values stay readable as "
                f"{done['type']})"
            )
        elif done["status"] == "cancelled":
            console.print(f"field [bold]{done['name']}[/bold]: pending type change cancelled")
        else:
            console.print(f"field [bold]{done['name']}[/bold] is now {done['type']}")

    render(as_json, done, human)


@field_cmd.command("list")
def field_list(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """The app's fields: type, whether published, and their type history."""
    defs = call(data_dir, as_json, "analytics.definitions", appid=appid)

    def human() -> None:
        table = new_table("field", "type", "published", "history")
        for f in defs["fields"]:
            shown = f["type"] + (f" -> {f['pending_type']} at publish" if f["pending_type"] else "")
            history = " -> ".join(f"{h['type']} ({h['column']})" for h in f["history"])
            retyped = history if len(f["history"]) > 1 else ""
            table.add_row(f["name"], shown, "yes" if f["published"] else "no", retyped)
        console.print(table)

    render(as_json, {"fields": defs["fields"]}, human)


def _read_json_file(path: Path, as_json: bool) -> Any:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
        return json.loads(text)
    except OSError as exc:
        fail(as_json, CommandError("invalid_input", f"cannot read {path}: {exc.strerror}"))
    except ValueError as exc:
        fail(as_json, CommandError("invalid_input", f"{path} is not valid JSON: {exc}"))


@event_cmd.command("save")
def event_save(
    appid: str,
    file: Annotated[Path, typer.Option("--file", help="The event definition (JSON); - for stdin")],
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Save an event definition as a draft (schema: docs/analytics-definitions.md)."""
    body = _read_json_file(file, as_json)
    saved = call(data_dir, as_json, "analytics.event.save", appid=appid, body=body)
    render(
        as_json,
        saved,
        lambda: console.print(
            f"event [bold]{saved['name']}[/bold] saved as a draft (id {saved['id']})"
        ),
    )


@event_cmd.command("list")
def event_list(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Every event: its draft and published definitions."""
    defs = call(data_dir, as_json, "analytics.definitions", appid=appid)

    def human() -> None:
        console.print(f"published version: {defs['version']}")
        table = new_table("id", "event", "display name", "mode", "fields", "status")
        for e in defs["events"]:
            shown = e["draft"] or e["published"] or {}
            status = (
                "deleted in draft"
                if e["draft"] is None
                else "draft"
                if e["published"] is None
                else "changed"
                if e["changed"]
                else "published"
            )
            table.add_row(
                str(e["id"]),
                e["name"],
                shown.get("display_name", ""),
                shown.get("mode", ""),
                ", ".join(shown.get("fields", [])),
                status,
            )
        console.print(table)

    render(as_json, defs, human)


@event_cmd.command("delete")
def event_delete(appid: str, name: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Delete an event in the draft (it goes at the next publish)."""
    render(as_json, call(data_dir, as_json, "analytics.event.delete", appid=appid, name=name))


# --- lifecycle ---
@analytics_cmd.command("publish")
def publish(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Publish the draft: a new version, live for every runtime."""
    done = call(data_dir, as_json, "analytics.publish", appid=appid)
    render(
        as_json, done, lambda: console.print(f"published version [bold]{done['version']}[/bold]")
    )


class OnOff(StrEnum):
    ON = "on"
    OFF = "off"


@analytics_cmd.command("builtin")
def builtin(
    appid: str,
    state: Annotated[OnOff, typer.Argument(help="on: take $launch, $show... ; off: refuse them")],
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Switch the app's built-in events ($launch, $show, $hide, $pageview, $pageleave)."""
    done = call(data_dir, as_json, "analytics.builtin", appid=appid, on=state is OnOff.ON)
    word = "on" if done["builtin_events"] else "off"
    note = "" if done["changed"] else " (already)"
    render(
        as_json,
        done,
        lambda: console.print(f"built-in events {word}{note} for {escape(appid)}"),
    )


@analytics_cmd.command("reset")
def reset(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Reset the draft to the published version."""
    defs = call(data_dir, as_json, "analytics.reset", appid=appid)
    render(
        as_json,
        defs,
        lambda: console.print(
            f"draft reset to published version {defs['version']}"
            f" ({len(defs['fields'])} fields, {len(defs['events'])} events)"
        ),
    )


@analytics_cmd.command("versions")
def versions(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Published versions, newest first."""
    found = call(data_dir, as_json, "analytics.versions", appid=appid)

    def human() -> None:
        table = new_table("version", "published by", "published at")
        for v in found["versions"]:
            table.add_row(
                str(v["version"]), escape(v["published_by"]), local_time(v["published_at"])
            )
        console.print(table)

    render(as_json, found, human)


# --- tests ---
Tester = Annotated[str, typer.Option("--user", help="The tester's user id")]
TestId = Annotated[str, typer.Option("--test", help="The test id (from `test start`)")]


@test_cmd.command("start")
def test_start(appid: str, user: Tester, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Save-and-test: push the draft to the tester's connected devices only."""
    started = call(data_dir, as_json, "analytics.test.start", appid=appid, user_id=user)

    def human() -> None:
        devices = started.get("devices") or []
        console.print(
            f"test [bold]{started['test_id']}[/bold] started for {user}"
            f" ({len(devices)} connected device(s))"
        )
        console.print(
            f"watch it: miniport analytics test watch {appid} --test {started['test_id']}",
            highlight=False,
        )

    render(as_json, started, human)


@test_cmd.command("stop")
def test_stop(appid: str, test: TestId, data_dir: DataDir = None, as_json: Json = False) -> None:
    """End a test: the tester's devices get the published configuration back."""
    render(as_json, call(data_dir, as_json, "analytics.test.stop", appid=appid, test=test))


@test_cmd.command("list")
def test_list(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """The app's tests: tester, status, when started and whether synced."""
    found = call(data_dir, as_json, "analytics.test.list", appid=appid)

    def human() -> None:
        table = new_table("test", "tester", "status", "started", "synced")
        for t in found["tests"]:
            table.add_row(
                escape(t["test_id"]),
                escape(t["user_id"]),
                t["status"],
                local_time(t["started_at"]),
                "yes" if t["synced_at"] else "",
            )
        console.print(table)

    render(as_json, found, human)


@analytics_cmd.command("sync")
def sync(appid: str, test: TestId, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Bring a test's events into the reports."""
    done = call(data_dir, as_json, "analytics.test.sync", appid=appid, test=test)
    render(as_json, done, lambda: console.print(f"{done['synced']} test event(s) now in reports"))


def watch_lines(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per event of a ``testReport``: accepted ones, then rejected ones."""
    received = report.get("received_ms")
    lines: list[dict[str, Any]] = []
    for ev in report.get("accepted", []):
        lines.append(
            {
                "status": "accepted",
                "id": ev.get("uid"),
                "event": ev.get("event_name"),
                "page": ev.get("page"),
                "trigger": ev.get("trigger"),
                "action": ev.get("action"),
                "values": ev.get("values", {}),
                "coercions": ev.get("coercions", []),
                "ts_ms": ev.get("ts_ms"),
                "time_estimated": ev.get("time_estimated"),
                "received_ms": received,
            }
        )
    for rej in report.get("rejected", []):
        lines.append(
            {
                "status": "rejected",
                "id": rej.get("id"),
                "index": rej.get("index"),
                "reason": rej.get("reason"),
                "code": rej.get("code"),
                "received_ms": received,
            }
        )
    return lines


def _print_line(line: dict[str, Any]) -> None:
    """One event a device sent, as it came: everything but the marks escaped (a value like
    ``[/x] sale`` is the device's text, not markup; it ended the watch with a MarkupError)."""
    stamp = local_time((line.get("received_ms") or 0) / 1000)
    if line["status"] == "rejected":
        console.print(
            f"{stamp} [red]✗ rejected[/red] #{line['index']}"
            f" id={escape(str(line['id']))}: {escape(str(line['reason']))}",
            highlight=False,
        )
        return
    where = " ".join(f"{k}={line[k]}" for k in ("page", "trigger", "action") if line.get(k))
    values = " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in line["values"].items())
    console.print(
        f"{stamp} [green]✓[/green] [bold]{escape(str(line['event']))}[/bold]"
        f" {escape(where)}  {escape(values)}"
        + ("  (time estimated)" if line.get("time_estimated") else ""),
        highlight=False,
    )
    for note in line.get("coercions", []):
        indent = " " * (len(stamp) + 1)
        console.print(
            f"{indent}[yellow]{escape(str(note['field']))}[/yellow]: {escape(str(note['note']))}",
            highlight=False,
        )


async def _watch(server: Server, appid: str, test: str, count: int | None, as_json: bool) -> int:
    import aiohttp

    try:
        return await _stream(server, appid, test, count, as_json)
    except aiohttp.ClientError as exc:
        raise CommandError("server_not_running", f"live view interrupted: {exc}") from exc


async def _stream(server: Server, appid: str, test: str, count: int | None, as_json: bool) -> int:
    import aiohttp

    app_path = f"/admin/v1/apps/{quote(appid, safe='')}/analytics"
    base = f"{server.url}{app_path}/tests/{quote(test, safe='')}"
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
    shown = 0
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        async with session.get(base) as resp:
            info = await resp.json(content_type=None)
            if resp.status >= 400:
                raise CommandError(str(info.get("error")), str(info.get("message")))
        if info.get("status") != "running":
            raise CommandError(
                "test_stopped", f"test {test} is not running (status: {info.get('status')})"
            )
        async with session.get(base + "/events") as resp:
            if resp.status >= 400:
                body = await resp.json(content_type=None)
                raise CommandError(str(body.get("error")), str(body.get("message")))
            event, data = "message", ""
            async for raw in resp.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith(":"):
                    continue
                if line:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        event = value
                    elif name == "data":
                        data += value
                    continue
                if not data:
                    continue
                message, kind = json.loads(data), event
                event, data = "message", ""
                if kind == "connected":
                    err_console.print(
                        f"watching test {test} of {appid} (Ctrl-C to stop)", highlight=False
                    )
                elif kind == "testStopped":
                    err_console.print(f"test {escape(test)} stopped", highlight=False)
                    return shown
                elif kind == "testReport":
                    for item in watch_lines(message):
                        if as_json:
                            sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")
                            sys.stdout.flush()
                        else:
                            _print_line(item)
                        shown += 1
                        if count is not None and shown >= count:
                            return shown
    raise ServerNotRunning("the server closed the live test view")


@test_cmd.command("watch")
def test_watch(
    appid: str,
    test: TestId,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Exit after this many events")
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Print the test's reports live, until the test stops or Ctrl-C.

    Each event with its page, trigger, action, values, coercions and rejections (one JSON
    line per event with --json). Needs a running server."""
    try:
        server = running_server(data_dir)
        if server is None:
            raise ServerNotRunning(
                "`test watch` streams the live view of a running server; start `miniport serve`"
                " on this data directory first"
            )
        import asyncio  # here, not at the top: ``miniport --help`` never needs it

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_watch(server, appid, test, count, as_json))
    except MiniportError as exc:
        fail(as_json, exc)


# --- reports ---
From = Annotated[str | None, typer.Option("--from", help="YYYY-MM-DD, ISO date-time or ms")]
To = Annotated[str | None, typer.Option("--to", help="YYYY-MM-DD (included), ISO time or ms")]
Zone = Annotated[str, typer.Option("--tz", help="IANA time zone for days, hours and dates")]


def _rows_table(
    rows: list[dict[str, Any]],
    types: dict[str, Any] | None = None,
    draw: Callable[[list[dict[str, Any]]], Table] = table_of,
) -> None:
    if not rows:
        console.print("no data")
    else:
        console.print(draw(rows))
    for name, info in (types or {}).items():  # fields whose type changed: which part is what
        parts = ", ".join(
            f"{p['type']} ({p['column']}, {_when(p['from_ms'])}..{_when(p['to_ms'])}: {p['read']})"
            for p in info["parts"]
        )
        console.print(f"[yellow]{name}[/yellow] is {info['type']} now; parts: {parts}")
        for note in info["notes"]:
            console.print(f"  {note}", highlight=False)


def _when(ms: int | None) -> str:
    if ms is None:
        return ""
    import datetime as dt  # only for a report across a type change

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@analytics_cmd.command("report")
def report(
    appid: str,
    event: Annotated[str, typer.Option("--event", help="The event to analyse")],
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            help="count, users, per_user, sum:F, max:F, min:F, avg:F, per_user:F,"
            " distinct:F (up to 5; default count)",
        ),
    ] = None,
    group_by: Annotated[
        list[str] | None,
        typer.Option("--group-by", help="A field or system property ($platform…) (up to 5)"),
    ] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option("--filter", help="color=red, price>=100, color!=blue, $scene=1001 (up to 5)"),
    ] = None,
    any_: Annotated[
        bool, typer.Option("--any", help="Filters combined with OR (default AND)")
    ] = False,
    granularity: Annotated[Granularity, typer.Option("--granularity")] = Granularity.DAY,
    from_: From = None,
    to: To = None,
    tz: Zone = "UTC",
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Event analysis: metrics by hour, day or the whole range, grouped and filtered."""
    body: dict[str, Any] = {
        "event": event,
        "metrics": metric or ["count"],
        "group_by": group_by or [],
        "filters": filters or [],
        "any": any_,
        "granularity": granularity.value,
        "from": from_,
        "to": to,
        "tz": tz,
    }
    found = call(data_dir, as_json, "analytics.report", appid=appid, body=body)
    render(as_json, found, lambda: _rows_table(found["rows"], found.get("field_types")))


@analytics_cmd.command("funnel")
def funnel(
    appid: str,
    step: Annotated[
        list[str], typer.Option("--step", help="EVENT or EVENT:FILTER[;FILTER] (2 to 10, in order)")
    ],
    group_by: Annotated[
        str | None, typer.Option("--group-by", help="One field or system property")
    ] = None,
    window: Annotated[
        str | None,
        typer.Option("--window", help="Conversion window after step 1: 30m, 1h, 1d (default), 7d"),
    ] = None,
    order: Annotated[
        str | None, typer.Option("--order", help="strict (default: steps in order) or any")
    ] = None,
    from_: From = None,
    to: To = None,
    tz: Zone = "UTC",
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """A funnel: users reaching each step within the window.

    With the median time between steps."""
    body = {
        "steps": step,
        "group_by": group_by,
        "window": window,
        "order": order,
        "from": from_,
        "to": to,
        "tz": tz,
    }
    found = call(data_dir, as_json, "analytics.funnel", appid=appid, body=body)
    head = ["step", "event", *([group_by] if group_by else [])]

    def draw(rows: list[dict[str, Any]]) -> Table:
        return _compact(rows, head, _FUNNEL_COLUMNS)

    render(as_json, found, lambda: _rows_table(found["rows"], found.get("field_types"), draw))


_FUNNEL_COLUMNS = (
    ("users", "users"),
    ("conversion", "conv"),
    ("step_conversion", "step conv"),
    ("drop_off", "drop off"),
    ("median_s", "median s"),
)


_OVERVIEW_COLUMNS = (
    ("active_users", "users"),
    ("new_users", "new"),
    ("launches", "launch"),
    ("sessions", "sess"),
    ("avg_session_s", "sess s"),
    ("page_views", "views"),
    ("avg_page_s", "page s"),
    ("pages_per_session", "pg/sess"),
)
_PAGE_COLUMNS = (  # after the path, a text column that folds (a long path would crush these)
    ("views", "views"),
    ("visitors", "visitors"),
    ("avg_time_s", "avg s"),
    ("exit_rate", "exit %"),
)


_PERCENT = ("exit_rate", "conversion", "step_conversion")  # shares 0..1, shown as 0..100%


def _cell(value: Any, percent: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value * 100:.0f}%" if percent else f"{value:.1f}"
    return str(value)


def _compact(
    found_rows: list[dict[str, Any]], head: list[str], columns: tuple[tuple[str, str], ...]
) -> Table:
    """A table that fits 80 columns: short headers, numbers right-aligned, one decimal."""
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for name in head:
        table.add_column(name, overflow="fold")
    for _, label in columns:
        table.add_column(label, justify="right", no_wrap=True)
    for row in found_rows:
        table.add_row(
            *(escape(_cell(row.get(name))) for name in head),
            *(_cell(row.get(key), key in _PERCENT) for key, _ in columns),
        )
    return table


def _overview_text(found: dict[str, Any], group_by: str | None) -> None:
    group = [group_by] if group_by else []
    if not found["rows"]:
        console.print("no events in this range: send some from the simulator, or widen --from/--to")
        return
    console.print(_compact(found["rows"], ["bucket", *group], _OVERVIEW_COLUMNS))
    if found["top_pages"]:
        console.print("[bold]top pages[/bold]")
        console.print(_compact(found["top_pages"], [*group, "path"], _PAGE_COLUMNS))
    if found["scenes"]:
        console.print("[bold]scenes[/bold] (users who launched from each)")
        console.print(_compact(found["scenes"], group, (("scene", "scene"), ("users", "users"))))


@analytics_cmd.command("overview")
def overview(
    appid: str,
    granularity: Annotated[Granularity, typer.Option("--granularity")] = Granularity.DAY,
    group_by: Annotated[
        str | None, typer.Option("--group-by", help="One system property ($platform…)")
    ] = None,
    top_pages: Annotated[
        int, typer.Option("--top-pages", min=1, max=100, help="Pages listed per group")
    ] = 20,
    from_: From = None,
    to: To = None,
    tz: Zone = "UTC",
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Active and new users, launches, sessions, page views and times; top pages; scenes."""
    body = {
        "granularity": granularity.value,
        "group_by": group_by,
        "top_pages": top_pages,
        "from": from_,
        "to": to,
        "tz": tz,
    }
    found = call(data_dir, as_json, "analytics.overview", appid=appid, body=body)
    render(as_json, found, lambda: _overview_text(found, group_by))


def _realtime_text(found: dict[str, Any]) -> None:
    from rich.table import Table

    minutes = found["minutes"]
    peak = max((m["events"] for m in minutes), default=0) or 1
    table = Table("minute", "users", "events", "", box=box.SIMPLE_HEAD, pad_edge=False)
    for m in minutes:
        bar = "█" * round(40 * m["events"] / peak) if m["events"] else ""
        table.add_row(m["minute"][-5:], str(m["active_users"]), str(m["events"]), bar)
    console.print(table)
    if not found["latest"]:
        console.print("no events received in these minutes: open the simulator to send some")
        return
    latest = Table(
        "time (UTC)", "event", "user", "page", "$platform", box=box.SIMPLE_HEAD, pad_edge=False
    )
    for e in found["latest"]:
        page = e.get("$path") or e.get("page") or ""
        latest.add_row(
            e["time"][11:19],
            escape(e["event"]),
            escape(e["user"]),
            escape(page),
            escape(e.get("$platform") or ""),
        )
    console.print("[bold]latest[/bold]")
    console.print(latest)


@analytics_cmd.command("realtime")
def realtime(
    appid: str,
    minutes: Annotated[int, typer.Option("--minutes", min=1, max=180)] = 30,
    latest: Annotated[
        int, typer.Option("--latest", min=0, max=200, help="How many latest events")
    ] = 50,
    tz: Zone = "UTC",
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Active users and events per minute for the last 30 minutes, and the latest events."""
    found = call(
        data_dir,
        as_json,
        "analytics.realtime",
        appid=appid,
        tz=tz,
        minutes=minutes,
        latest=latest,
    )
    render(as_json, found, lambda: _realtime_text(found))


@analytics_cmd.command("export")
def export(
    appid: str,
    event: Annotated[str, typer.Option("--event")],
    fmt: Annotated[ExportFormat, typer.Option("--format")] = ExportFormat.CSV,
    output: Annotated[Path | None, typer.Option("--output", help="Write to this file")] = None,
    from_: From = None,
    to: To = None,
    tz: Zone = "UTC",
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Export an event's rows as CSV (to stdout, or --output FILE)."""
    text = call(
        data_dir,
        as_json,
        "analytics.export",
        appid=appid,
        event=event,
        tz=tz,
        to=to,
        **{"from": from_},
    )
    rows = max(0, len(text.splitlines()) - 1)
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(
                as_json,
                CommandError("invalid_input", f"cannot write {output}: {exc.strerror}"),
            )
        render(
            as_json,
            {"output": str(output), "format": fmt.value, "rows": rows},
            lambda: console.print(f"{rows} row(s) written to {escape(str(output))}"),
        )
    elif as_json:
        render(True, {"format": fmt.value, "rows": rows, "csv": text})
    else:
        sys.stdout.write(text)


@analytics_cmd.command("count")
def count(
    appid: str,
    event: Annotated[str | None, typer.Option("--event")] = None,
    include_tests: Annotated[
        bool, typer.Option("--include-tests", help="Also count test events not synced")
    ] = False,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """How many events are stored (that reports see)."""
    render(
        as_json,
        call(
            data_dir,
            as_json,
            "analytics.count",
            appid=appid,
            event=event,
            include_tests=include_tests,
        ),
    )


# --- one user ---
UserId = Annotated[str, typer.Option("--user", help="The user id (as the runtime reports it)")]


def _print_user_event(e: dict[str, Any]) -> None:
    """One event in a few short lines (a table had the 36-character ids and the times take
    nearly all of 80 columns, and folded names, pages and data one character a line): when
    and what, where and how; its fields; its id (and test), soft-wrapped, never cut."""
    how = f"  ({e['trigger']} → {e['action']})" if e.get("trigger") else ""
    where = f"  {e['page']}" if e.get("page") else ""
    console.print(
        f"{escape(str(e['time']))}  [bold]{escape(str(e['event']))}[/bold]"
        f"{escape(where)}{escape(how)}",
        highlight=False,
        soft_wrap=True,
    )
    if e.get("data"):
        fields = "  ".join(
            f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in e["data"].items()
        )
        console.print(f"  {escape(fields)}", highlight=False, soft_wrap=True)
    test = f"  test {e['test_id']}" if e.get("test_id") else ""
    hidden = "" if e.get("visible", True) else "  (not in reports)"
    console.print(f"  [dim]id {escape(str(e['id']))}{escape(test)}{hidden}[/dim]", highlight=False,
                  soft_wrap=True)  # fmt: skip


@analytics_cmd.command("user")
def user_events(
    appid: str,
    user: UserId,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Events per page")] = 100,
    before: Annotated[
        str | None, typer.Option("--before", help="The 'before' of the previous page: older events")
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """One user's events in time order (newest last), with their fields, for support."""
    found = call(
        data_dir,
        as_json,
        "analytics.user",
        appid=appid,
        user_id=user,
        limit=limit,
        before=before,
    )

    def human() -> None:
        for event in found["events"]:
            _print_user_event(event)
        if not found["events"]:
            console.print("no events", highlight=False)
        if found["before"]:
            console.print(f"older events: --before {escape(found['before'])}", highlight=False)

    render(as_json, found, human)


@analytics_cmd.command("forget")
def forget(appid: str, user: UserId, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Erase a user's analytics (events and live tests) for good; audited."""
    done = call(data_dir, as_json, "analytics.forget", appid=appid, user_id=user)
    render(
        as_json,
        done,
        lambda: console.print(
            f"{done['deleted']} event(s) and {done['tests']} test(s) of the user erased"
        ),
    )


__all__ = ["register", "watch_lines"]
