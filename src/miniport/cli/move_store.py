"""``miniport analytics move-store --to URL [--app APPID] [--json]``: copy the data directory's
DuckDB event store into ClickHouse with a progress bar (the work is
:func:`miniport.services.move_store.move_store`). DuckDB lets one process open the file:
stop the server on this data directory first.

``miniport analytics refill-ids [--json]``: claim every id stored in ClickHouse in the state
database's index of ids again (after a restore of the state database)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

import typer

from ..errors import Conflict, MiniportError, NotFound
from .common import DataDir, Json, console, fail, new_table, render, settings_for


def _human(result: dict[str, Any]) -> None:
    console.print(f"copied {result['copied']}, already there {result['skipped']}")
    table = new_table("app", "day", "DuckDB", "ClickHouse", "")
    for app in result["apps"]:
        for day in app["days"]:
            same = day["source"] == day["target"]
            mark = "[green]ok[/green]" if same else "[red]differs[/red]"
            table.add_row(app["appid"], day["day"], str(day["source"]), str(day["target"]), mark)
    console.print(table)


def _run(data_dir: Any, to: str, appid: str | None, as_json: bool) -> dict[str, Any]:
    import duckdb  # heavy: loaded when the command runs, not when the CLI starts
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from ..analytics.clickhouse_store import ClickHouseEventStore
    from ..analytics.clickhouse_transport import HttpTransport, parse_clickhouse_url
    from ..analytics.event_store import DuckDBEventStore
    from ..services.move_store import move_store
    from ..storage.event_keys import EventKeyIndex

    settings = settings_for(data_dir)
    target_url = parse_clickhouse_url(to)
    if target_url.ca_file is None and settings.analytics_ca_file:
        target_url = replace(target_url, ca_file=settings.analytics_ca_file)
    if not settings.events_path.exists():
        raise NotFound(f"no DuckDB event store at {settings.events_path}")
    try:
        source = DuckDBEventStore(settings.events_path)
    except duckdb.IOException as exc:
        raise Conflict(f"cannot open {settings.events_path} (is a server running?): {exc}") from exc
    # the ids go into the index the servers of this data directory's state database use
    keys = EventKeyIndex.open(settings.state_url)
    with source, ClickHouseEventStore(HttpTransport(target_url), keys) as target:
        columns = [BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=console, disable=as_json, transient=True) as bar:
            task = bar.add_task("copy", total=None)
            return move_store(
                source,
                target,
                appid=appid,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )


def move_store_command(
    to: Annotated[str, typer.Option("--to", help="clickhouse[s]://USER:PASSWORD@HOST:PORT/DB")],
    appid: Annotated[str | None, typer.Option("--app", help="Only this app's events")] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Copy the DuckDB event store into ClickHouse; safe to interrupt and run again."""
    try:
        result = _run(data_dir, to, appid, as_json)
    except MiniportError as exc:
        fail(as_json, exc)
    render(as_json, result, lambda: _human(result))


def _refill(data_dir: Any, as_json: bool) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from ..analytics.clickhouse_store import ClickHouseEventStore
    from ..analytics.clickhouse_transport import HttpTransport, parse_clickhouse_url
    from ..storage.event_keys import EventKeyIndex

    settings = settings_for(data_dir)
    if not settings.analytics_url:
        raise NotFound("MINIPORT_ANALYTICS_URL is not set: the events are in DuckDB, no index")
    url = parse_clickhouse_url(settings.analytics_url)
    if url.ca_file is None and settings.analytics_ca_file:
        url = replace(url, ca_file=settings.analytics_ca_file)
    keys = EventKeyIndex.open(settings.state_url)
    with ClickHouseEventStore(HttpTransport(url), keys) as store:
        columns = [BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=console, disable=as_json, transient=True) as bar:
            task = bar.add_task("ids", total=None)
            read = store.refill_ids(
                lambda done, total: bar.update(task, completed=done, total=total)
            )
        return {"stored_events": read, "ids_in_index": keys.count()}


def refill_ids_command(data_dir: DataDir = None, as_json: Json = False) -> None:
    """Claim every id stored in ClickHouse in the index of ids again (after a restore).

    Run it once after restoring the state database from a backup (or failing over to a
    standby that lost recent commits), or retries of newer events may count twice. Safe
    while servers run."""
    try:
        result = _refill(data_dir, as_json)
    except MiniportError as exc:
        fail(as_json, exc)
    render(as_json, result)
