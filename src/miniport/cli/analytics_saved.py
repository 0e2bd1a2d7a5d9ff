"""``miniport analytics saved`` (reports saved with a name and their parameters) and
``miniport analytics dashboard`` (named grids of saved reports sharing a date range).

Each command is one operation of :mod:`.operations`; ``saved run`` prints what the report
kind itself prints."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.markup import escape

from .backend import CommandError, call
from .common import DataDir, Json, console, fail, render, table_of

saved_cmd = typer.Typer(
    help="Reports saved with a name and their parameters.", no_args_is_help=True
)
dashboard_cmd = typer.Typer(
    help="Dashboards: grids of saved reports sharing a date range.", no_args_is_help=True
)


class Kind(StrEnum):
    REPORT = "report"
    FUNNEL = "funnel"
    RETENTION = "retention"
    PATHS = "paths"
    OVERVIEW = "overview"


Name = Annotated[str, typer.Argument(help="The saved report's name")]
Board = Annotated[str, typer.Argument(help="The dashboard's name")]


def _rows(rows: list[dict[str, Any]]) -> None:
    console.print(table_of(rows) if rows else "no data")


def _print_result(result: dict[str, Any]) -> None:
    """A report's answer: its rows (or each list of rows it has) as tables."""
    lists = [(k, v) for k, v in result.items() if isinstance(v, list)]
    for key, rows in lists:
        if len(lists) > 1:
            console.print(f"[bold]{escape(str(key))}[/bold]")
        _rows([r if isinstance(r, dict) else {"value": r} for r in rows])


# --- saved reports ---
@saved_cmd.command("save")
def save(
    appid: str,
    name: Annotated[str, typer.Option("--name", help="A name, unique in the app")],
    kind: Annotated[Kind, typer.Option("--kind", help="The report kind")],
    params: Annotated[
        str,
        typer.Option("--params", help='The report\'s parameters (JSON), e.g. \'{"event": "buy"}\''),
    ] = "{}",
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Save a report with its parameters (those of the report's own command, as JSON)."""
    try:
        parsed = json.loads(params)
    except ValueError as exc:
        fail(as_json, CommandError("invalid_input", f"--params is not valid JSON: {exc}"))
    body = {"name": name, "kind": kind.value, "params": parsed}
    saved = call(data_dir, as_json, "analytics.saved.save", appid=appid, body=body)
    render(
        as_json,
        saved,
        lambda: console.print(f"saved {saved['kind']} report {escape(repr(saved['name']))}"),
    )


@saved_cmd.command("list")
def saved_list(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """The app's saved reports: name, kind and when saved."""
    found = call(data_dir, as_json, "analytics.saved.list", appid=appid)
    rows = [
        {"name": r["name"], "kind": r["kind"], "created_at": r["created_at"]}
        for r in found["reports"]
    ]
    render(as_json, found, lambda: _rows(rows))


@saved_cmd.command("show")
def saved_show(appid: str, name: Name, data_dir: DataDir = None, as_json: Json = False) -> None:
    """A saved report's kind and parameters."""
    render(as_json, call(data_dir, as_json, "analytics.saved.show", appid=appid, name=name))


@saved_cmd.command("run")
def saved_run(appid: str, name: Name, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Run a saved report: the same output as its report kind."""
    result = call(data_dir, as_json, "analytics.saved.run", appid=appid, name=name)
    render(as_json, result, lambda: _print_result(result))


@saved_cmd.command("delete")
def saved_delete(appid: str, name: Name, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Delete a saved report (it leaves every dashboard it was on)."""
    render(as_json, call(data_dir, as_json, "analytics.saved.delete", appid=appid, name=name))


# --- dashboards ---
LastDays = Annotated[
    int | None, typer.Option("--last-days", min=1, max=366, help="The last N days (default 7)")
]
From = Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD")]
To = Annotated[str | None, typer.Option("--to", help="Last day, YYYY-MM-DD (included)")]
Zone = Annotated[str, typer.Option("--tz", help="IANA time zone of the days")]


def _range_body(
    last_days: int | None, from_: str | None, to: str | None, tz: str
) -> dict[str, Any]:
    body: dict[str, Any] = {"tz": tz}
    if last_days is not None:
        body["last_days"] = last_days
    if from_ is not None:
        body["from"] = from_
    if to is not None:
        body["to"] = to
    return body


def _print_board(board: dict[str, Any]) -> None:
    console.print(
        f"[bold]{board['name']}[/bold]: {board['from']} .. {board['to']} ({board['tz']})",
        highlight=False,
    )
    _rows([{k: i[k] for k in ("position", "report", "kind", "width")} for i in board["items"]])


@dashboard_cmd.command("create")
def create(
    appid: str,
    name: Board,
    last_days: LastDays = None,
    from_: From = None,
    to: To = None,
    tz: Zone = "UTC",
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """A new, empty dashboard over the last N days or from/to dates."""
    body = {"name": name, **_range_body(last_days, from_, to, tz)}
    board = call(data_dir, as_json, "analytics.dashboard.create", appid=appid, body=body)
    render(as_json, board, lambda: _print_board(board))


@dashboard_cmd.command("range")
def set_range(
    appid: str,
    name: Board,
    last_days: LastDays = None,
    from_: From = None,
    to: To = None,
    tz: Zone = "UTC",
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Change the date range the dashboard's reports share."""
    body = _range_body(last_days, from_, to, tz)
    board = call(data_dir, as_json, "analytics.dashboard.range", appid=appid, name=name, body=body)
    render(as_json, board, lambda: _print_board(board))


@dashboard_cmd.command("list")
def board_list(appid: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """The app's dashboards."""
    found = call(data_dir, as_json, "analytics.dashboard.list", appid=appid)
    render(as_json, found, lambda: _rows(found["dashboards"]))


@dashboard_cmd.command("show")
def show(
    appid: str,
    name: Board,
    run: Annotated[bool, typer.Option("--run", help="Run every report on it too")] = False,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """A dashboard's reports in grid order (with --run: with their results)."""
    op = "analytics.dashboard.run" if run else "analytics.dashboard.show"
    board = call(data_dir, as_json, op, appid=appid, name=name)

    def human() -> None:
        _print_board(board)
        for item in board["items"] if run else []:
            console.print(
                f"\n[bold]{item['position']}. {escape(str(item['report']))}[/bold]"
                f" ({item['kind']})"
            )
            if "error" in item:
                console.print(
                    f"[red]{item['error']}[/red]: {escape(str(item['message']))}", highlight=False
                )
            else:
                _print_result(item["result"])

    render(as_json, board, human)


@dashboard_cmd.command("add")
def add(
    appid: str,
    name: Board,
    report: Annotated[str, typer.Argument(help="A saved report's name")],
    width: Annotated[int, typer.Option("--width", min=1, max=2, help="Grid columns, 1 or 2")] = 1,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Put a saved report last on a dashboard."""
    board = call(
        data_dir,
        as_json,
        "analytics.dashboard.add",
        appid=appid,
        name=name,
        report=report,
        width=width,
    )
    render(as_json, board, lambda: _print_board(board))


@dashboard_cmd.command("move")
def move(
    appid: str,
    name: Board,
    report: Annotated[str, typer.Argument(help="A saved report on the dashboard")],
    position: Annotated[int, typer.Option("--to", min=0, help="Its new position (0 first)")],
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Move a report to another place in the dashboard's order."""
    board = call(
        data_dir,
        as_json,
        "analytics.dashboard.move",
        appid=appid,
        name=name,
        report=report,
        position=position,
    )
    render(as_json, board, lambda: _print_board(board))


@dashboard_cmd.command("remove")
def remove(
    appid: str,
    name: Board,
    report: Annotated[str, typer.Argument(help="A saved report on the dashboard")],
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Take a report off a dashboard (the saved report stays)."""
    board = call(
        data_dir, as_json, "analytics.dashboard.remove", appid=appid, name=name, report=report
    )
    render(as_json, board, lambda: _print_board(board))


@dashboard_cmd.command("delete")
def delete(appid: str, name: Board, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Delete a dashboard (its saved reports stay)."""
    render(as_json, call(data_dir, as_json, "analytics.dashboard.delete", appid=appid, name=name))


__all__ = ["dashboard_cmd", "saved_cmd"]
