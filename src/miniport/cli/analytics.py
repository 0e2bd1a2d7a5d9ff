"""``miniport analytics``: fields and events, save-and-test with a live view, sync, publish,
reset, reports, funnels and CSV export.

DuckDB lets ONE process open the events file, and a running server also pushes configurations
to connected devices, so every command goes through :func:`perform`: when a server runs on the
data directory (``server.json`` present and the server answering) the command is a call to its
admin API; when none runs, the same service method runs here, on the data directory.
``test watch`` streams the server's live test view, so it needs a running server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import aiohttp
import duckdb
import typer
from rich.table import Table

from ..analytics.definitions import DefinitionsInvalid
from ..errors import MiniportError, ServerNotRunning
from ..platform import Platform
from ..services.analytics import AnalyticsService, parse_time
from . import move_store
from .common import (
    CommandError,
    DataDir,
    Json,
    admin_request,
    console,
    emit,
    err_console,
    fail,
    read_server_file,
    run_with_platform,
    settings_for,
)

CLI_ACTOR = "cli"
analytics_cmd = typer.Typer(
    help="Custom analytics: fields, events, test, publish, reports.", no_args_is_help=True
)
field_cmd = typer.Typer(
    help="Fields (int or string), shared by an app's events.", no_args_is_help=True
)
event_cmd = typer.Typer(help="Event definitions (drafts until published).", no_args_is_help=True)
test_cmd = typer.Typer(
    help="Save-and-test on a tester's devices, with a live view.", no_args_is_help=True
)
analytics_cmd.add_typer(field_cmd, name="field")
analytics_cmd.command("move-store")(move_store.move_store_command)
analytics_cmd.add_typer(event_cmd, name="event")
analytics_cmd.add_typer(test_cmd, name="test")


def register(app: typer.Typer) -> None:
    app.add_typer(analytics_cmd, name="analytics")


class FieldType(StrEnum):
    INT = "int"
    STRING = "string"


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"
    ALL = "all"


class ExportFormat(StrEnum):
    CSV = "csv"


# --- errors ---
def as_command_error(exc: BaseException) -> CommandError:
    """Any error of an analytics command as a CommandError (definition errors keep their
    paths)."""
    if isinstance(exc, CommandError):
        return exc
    if isinstance(exc, DefinitionsInvalid):
        errors = [e.as_dict() for e in exc.errors]
        message = "; ".join(
            f"{e['path']}: {e['message']}" if e["path"] else e["message"] for e in errors
        )
        return CommandError("invalid_definition", message, errors)
    if isinstance(exc, MiniportError):
        return CommandError(exc.code, exc.message)
    return CommandError("error", str(exc))


# --- the one switch: a running server's admin API, or the service here ---
LocalWork = Callable[[AnalyticsService], Awaitable[Any]]


@dataclass(frozen=True)
class Op:
    """One analytics operation: the admin API call (``path`` under
    ``/admin/v1/apps/{appid}/analytics``) and the same work done locally."""

    method: str
    path: str
    local: LocalWork
    body: Any = None
    params: dict[str, str] = field(default_factory=dict)
    text: bool = False  # the answer is text (CSV), not JSON


@dataclass(frozen=True)
class Server:
    url: str
    admin_key: str


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _answers(url: str) -> bool:
    try:
        timeout = aiohttp.ClientTimeout(total=3)
        async with aiohttp.ClientSession(timeout=timeout) as s, s.get(url + "/healthz") as r:
            return r.status < 500
    except (aiohttp.ClientError, TimeoutError):
        return False


def running_server(data_dir: Path | None) -> Server | None:
    """The server running on this data directory, or None. A ``server.json`` left by a server
    that is gone is ignored; one whose process lives but does not answer is an error (opening
    the events file here would fail on its lock)."""
    settings = settings_for(data_dir)
    info = read_server_file(settings.data_dir)
    if not info or "url" not in info or "admin_key" not in info:
        return None
    url = str(info["url"]).rstrip("/")
    if asyncio.run(_answers(url)):
        return Server(url, str(info["admin_key"]))
    if _alive(info.get("pid")):
        raise ServerNotRunning(
            f"a server (pid {info.get('pid')}) is registered on {settings.data_dir} at {url}"
            " but does not answer; wait for it or stop it"
        )
    return None


async def _http(server: Server, appid: str, op: Op) -> Any:
    return await admin_request(
        server.url,
        server.admin_key,
        op.method,
        f"/admin/v1/apps/{quote(appid, safe='')}/analytics{op.path}",
        body=op.body,
        params=op.params,
        text=op.text,
    )


def _local(data_dir: Path | None, as_json: bool, op: Op) -> Any:
    async def work(p: Platform) -> tuple[bool, Any]:
        try:
            return True, await op.local(p.analytics)
        except (MiniportError, DefinitionsInvalid) as exc:
            return False, as_command_error(exc)
        except duckdb.Error as exc:  # e.g. the events file locked by another process
            return False, CommandError("events_store", f"events database: {exc}")

    ok, value = run_with_platform(data_dir, as_json, work)
    if not ok:
        raise value
    return value


def perform(appid: str, op: Op, data_dir: Path | None, as_json: bool) -> Any:
    """Run ``op`` through the server running on the data directory, or locally if none runs;
    any error exits 1 with a clear message."""
    try:
        server = running_server(data_dir)
        if server is not None:
            return asyncio.run(_http(server, appid, op))
        return _local(data_dir, as_json, op)
    except (MiniportError, DefinitionsInvalid) as exc:
        fail(as_json, as_command_error(exc))


# --- fields and events ---
@field_cmd.command("add")
def field_add(
    appid: str,
    name: str,
    field_type: Annotated[FieldType, typer.Option("--type", help="int (32-bit) or string")],
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Define a field. Re-adding a field with another type changes it until it is published."""
    body = {"name": name, "type": field_type.value}
    added = perform(
        appid, Op("POST", "/fields", lambda a: a.add_field(appid, body), body), data_dir, as_json
    )
    emit(
        as_json,
        added,
        lambda: console.print(f"field [bold]{added['name']}[/bold] ({added['type']}) defined"),
    )


@field_cmd.command("list")
def field_list(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    defs = perform(
        appid, Op("GET", "/definitions", lambda a: a.definitions(appid)), data_dir, as_json
    )

    def human() -> None:
        table = Table("field", "type", "published")
        for f in defs["fields"]:
            table.add_row(f["name"], f["type"], "yes" if f["published"] else "no")
        console.print(table)

    emit(as_json, {"fields": defs["fields"]}, human)


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
    saved = perform(
        appid, Op("POST", "/events", lambda a: a.save_event(appid, body), body), data_dir, as_json
    )
    emit(
        as_json,
        saved,
        lambda: console.print(
            f"event [bold]{saved['name']}[/bold] saved as a draft (id {saved['id']})"
        ),
    )


@event_cmd.command("list")
def event_list(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Every event: its draft and published definitions."""
    defs = perform(
        appid, Op("GET", "/definitions", lambda a: a.definitions(appid)), data_dir, as_json
    )

    def human() -> None:
        console.print(f"published version: {defs['version']}")
        table = Table("id", "event", "display name", "mode", "fields", "status")
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

    emit(as_json, defs, human)


@event_cmd.command("delete")
def event_delete(appid: str, name: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Delete an event in the draft (it goes at the next publish)."""
    emit(
        as_json,
        perform(
            appid,
            Op("DELETE", f"/events/{quote(name, safe='')}", lambda a: a.delete_event(appid, name)),
            data_dir,
            as_json,
        ),
    )


# --- lifecycle ---
@analytics_cmd.command("publish")
def publish(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Publish the draft: a new version, live for every runtime."""
    done = perform(
        appid, Op("POST", "/publish", lambda a: a.publish(appid, CLI_ACTOR)), data_dir, as_json
    )
    emit(as_json, done, lambda: console.print(f"published version [bold]{done['version']}[/bold]"))


@analytics_cmd.command("reset")
def reset(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Reset the draft to the published version."""
    defs = perform(appid, Op("POST", "/reset", lambda a: a.reset(appid)), data_dir, as_json)
    emit(
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

    async def local(a: AnalyticsService) -> dict[str, Any]:
        await a.definitions(appid)  # NotFound for an unknown app
        return {"versions": await a.db.read(a.defs.versions, appid)}

    found = perform(appid, Op("GET", "/versions", local), data_dir, as_json)

    def human() -> None:
        table = Table("version", "published by", "published at")
        for v in found["versions"]:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v["published_at"]))
            table.add_row(str(v["version"]), v["published_by"], when)
        console.print(table)

    emit(as_json, found, human)


# --- tests ---
Tester = Annotated[str, typer.Option("--user", help="The tester's user id")]
TestId = Annotated[str, typer.Option("--test", help="The test id (from `test start`)")]


@test_cmd.command("start")
def test_start(appid: str, user: Tester, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Save-and-test: push the draft to the tester's connected devices only."""
    started = perform(
        appid,
        Op("POST", "/tests", lambda a: a.start_test(appid, user, CLI_ACTOR), {"user_id": user}),
        data_dir,
        as_json,
    )

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

    emit(as_json, started, human)


@test_cmd.command("stop")
def test_stop(appid: str, test: TestId, data_dir: DataDir = None, as_json: Json = False) -> None:
    """End a test: the tester's devices get the published configuration back."""
    emit(
        as_json,
        perform(
            appid,
            Op("POST", f"/tests/{quote(test, safe='')}/stop", lambda a: a.stop_test(appid, test)),
            data_dir,
            as_json,
        ),
    )


@test_cmd.command("list")
def test_list(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    async def local(a: AnalyticsService) -> dict[str, Any]:
        await a.definitions(appid)
        return {"tests": [t.as_dict() for t in await a.db.read(a.defs.list_tests, appid)]}

    found = perform(appid, Op("GET", "/tests", local), data_dir, as_json)

    def human() -> None:
        table = Table("test", "tester", "status", "started", "synced")
        for t in found["tests"]:
            table.add_row(
                t["test_id"],
                t["user_id"],
                t["status"],
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t["started_at"])),
                "yes" if t["synced_at"] else "",
            )
        console.print(table)

    emit(as_json, found, human)


@analytics_cmd.command("sync")
def sync(appid: str, test: TestId, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Bring a test's events into the reports."""
    done = perform(
        appid,
        Op("POST", f"/tests/{quote(test, safe='')}/sync", lambda a: a.sync_test(appid, test)),
        data_dir,
        as_json,
    )
    emit(as_json, done, lambda: console.print(f"{done['synced']} test event(s) now in reports"))


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
    stamp = time.strftime("%H:%M:%S", time.localtime((line.get("received_ms") or 0) / 1000))
    if line["status"] == "rejected":
        console.print(
            f"{stamp} [red]✗ rejected[/red] #{line['index']} id={line['id']}: {line['reason']}",
            highlight=False,
        )
        return
    where = " ".join(f"{k}={line[k]}" for k in ("page", "trigger", "action") if line.get(k))
    values = " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in line["values"].items())
    console.print(
        f"{stamp} [green]✓[/green] [bold]{line['event']}[/bold] {where}  {values}"
        + ("  (time estimated)" if line.get("time_estimated") else ""),
        highlight=False,
    )
    for note in line.get("coercions", []):
        console.print(f"         [yellow]{note['field']}[/yellow]: {note['note']}", highlight=False)


async def _watch(server: Server, appid: str, test: str, count: int | None, as_json: bool) -> int:
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
                    err_console.print(f"test {test} stopped", highlight=False)
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
    """Print the test's reports live (event, page, trigger, action, values, coercions and
    rejections; one JSON line per event with --json) until the test stops or Ctrl-C. Needs a
    running server."""
    try:
        server = running_server(data_dir)
        if server is None:
            raise ServerNotRunning(
                "`test watch` streams the live view of a running server; start `miniport serve`"
                " on this data directory first"
            )
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_watch(server, appid, test, count, as_json))
    except aiohttp.ClientError as exc:
        fail(as_json, CommandError("server_not_running", f"live view interrupted: {exc}"))
    except (MiniportError, DefinitionsInvalid) as exc:
        fail(as_json, as_command_error(exc))


# --- reports ---
From = Annotated[str | None, typer.Option("--from", help="YYYY-MM-DD, ISO date-time or ms")]
To = Annotated[str | None, typer.Option("--to", help="YYYY-MM-DD (included), ISO time or ms")]
Zone = Annotated[str, typer.Option("--tz", help="IANA time zone for days, hours and dates")]


def _rows_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("no data")
        return
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    table = Table(*columns)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(table)


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
        list[str] | None, typer.Option("--group-by", help="A field (up to 5)")
    ] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option("--filter", help="color=red, price>=100, color!=blue (up to 5)"),
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

    async def local(a: AnalyticsService) -> Any:
        return await a.event_analysis(
            appid,
            event=event,
            metrics=body["metrics"],
            group_by=body["group_by"],
            filters=body["filters"],
            any_=any_,
            granularity=granularity.value,
            from_ms=parse_time(from_, tz),
            to_ms=parse_time(to, tz, end=True),
            tz=tz,
        )

    found = perform(appid, Op("POST", "/report", local, body), data_dir, as_json)
    emit(as_json, found, lambda: _rows_table(found["rows"]))


@analytics_cmd.command("funnel")
def funnel(
    appid: str,
    step: Annotated[
        list[str], typer.Option("--step", help="EVENT or EVENT:FILTER[;FILTER] (2 to 10, in order)")
    ],
    group_by: Annotated[str | None, typer.Option("--group-by", help="One field")] = None,
    from_: From = None,
    to: To = None,
    tz: Zone = "UTC",
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """A funnel: users reaching each step in order."""
    body = {"steps": step, "group_by": group_by, "from": from_, "to": to, "tz": tz}

    async def local(a: AnalyticsService) -> Any:
        return await a.funnel(
            appid,
            steps=step,
            group_by=group_by,
            from_ms=parse_time(from_, tz),
            to_ms=parse_time(to, tz, end=True),
        )

    found = perform(appid, Op("POST", "/funnel", local, body), data_dir, as_json)
    emit(as_json, found, lambda: _rows_table(found["rows"]))


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
    params = {
        "event": event,
        "tz": tz,
        **({"from": from_} if from_ else {}),
        **({"to": to} if to else {}),
    }

    async def local(a: AnalyticsService) -> str:
        return await a.export_csv(appid, event, parse_time(from_, tz), parse_time(to, tz, end=True))

    text = perform(appid, Op("GET", "/export", local, params=params, text=True), data_dir, as_json)
    rows = max(0, len(text.splitlines()) - 1)
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(
                as_json,
                CommandError("invalid_input", f"cannot write {output}: {exc.strerror}"),
            )
        emit(
            as_json,
            {"output": str(output), "format": fmt.value, "rows": rows},
            lambda: console.print(f"{rows} row(s) written to {output}"),
        )
    elif as_json:
        emit(True, {"format": fmt.value, "rows": rows, "csv": text})
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
    params = {
        "include_tests": "true" if include_tests else "false",
        **({"event": event} if event else {}),
    }

    async def local(a: AnalyticsService) -> dict[str, Any]:
        return {"count": await a.count(appid, event, include_tests)}

    emit(as_json, perform(appid, Op("GET", "/count", local, params=params), data_dir, as_json))


__all__ = ["perform", "register", "running_server", "watch_lines"]
