"""``miniport analytics move-store --to URL [--app APPID] [--json]``: copy the data directory's
DuckDB event store into ClickHouse with a progress bar (the work is
:func:`miniport.services.move_store.move_store`). DuckDB lets one process open the file:
stop the server on this data directory first.

``miniport analytics refill-ids [--json]``: claim every id stored in ClickHouse in the state
database's index of ids again (after a restore of the state database)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import Conflict, MiniportError, NotFound
from .common import DataDir, Json, console, fail, new_table, render, settings_for

if TYPE_CHECKING:  # imported when a command runs: the CLI starts without them
    from ..analytics.clickhouse_store import ClickHouseEventStore
    from ..analytics.clickhouse_transport import ClickHouseURL
    from ..config import Settings


def _human(result: dict[str, Any]) -> None:
    console.print(f"copied {result['copied']}, already there {result['skipped']}")
    table = new_table("app", "day", "DuckDB", "ClickHouse", "")
    for app in result["apps"]:
        for day in app["days"]:
            same = day["source"] == day["target"]
            mark = "[green]ok[/green]" if same else "[red]differs[/red]"
            table.add_row(app["appid"], day["day"], str(day["source"]), str(day["target"]), mark)
    console.print(table)


def _clickhouse_url(settings: Settings, url: str) -> ClickHouseURL:
    """``url`` parsed (a bad one refused here), with the settings' CA file unless it names one."""
    from ..analytics.clickhouse_transport import parse_clickhouse_url

    return parse_clickhouse_url(url, settings.analytics_ca_file or None)


def _clickhouse(settings: Settings, url: ClickHouseURL) -> ClickHouseEventStore:
    """The store at ``url``, with the index of ids of the state database that the servers of
    this data directory use."""
    from ..analytics.clickhouse_store import ClickHouseEventStore
    from ..analytics.clickhouse_transport import HttpTransport
    from ..storage.event_keys import EventKeyIndex

    return ClickHouseEventStore(HttpTransport(url), EventKeyIndex.open(settings.state_url))


@contextlib.contextmanager
def _progress(as_json: bool, name: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar (none with --json), as ``update(done, total)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = [BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=as_json, transient=True) as bar:
        task = bar.add_task(name, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _run(data_dir: Any, to: str, appid: str | None, as_json: bool) -> dict[str, Any]:
    import duckdb  # heavy: loaded when the command runs, not when the CLI starts

    from ..analytics.event_store import DuckDBEventStore
    from ..services.move_store import move_store

    settings = settings_for(data_dir)
    target_url = _clickhouse_url(settings, to)
    if not settings.events_path.exists():
        raise NotFound(f"no DuckDB event store at {settings.events_path}")
    try:
        source = DuckDBEventStore(settings.events_path)
    except duckdb.IOException as exc:
        raise Conflict(f"cannot open {settings.events_path} (is a server running?): {exc}") from exc
    with source, _clickhouse(settings, target_url) as target, _progress(as_json, "copy") as update:
        return move_store(source, target, appid=appid, progress=update)


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
    settings = settings_for(data_dir)
    if not settings.analytics_url:
        raise NotFound("MINIPORT_ANALYTICS_URL is not set: the events are in DuckDB, no index")
    url = _clickhouse_url(settings, settings.analytics_url)
    with _clickhouse(settings, url) as store:
        with _progress(as_json, "ids") as update:
            read = store.refill_ids(update)
        return {"stored_events": read, "ids_in_index": store.indexed_ids()}


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
