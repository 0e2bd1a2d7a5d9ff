"""What every CLI command shares: --data-dir, --json, the server file, and printing results
(:func:`render`) and errors (:func:`fail`).

Invariants: human output never shows a Python repr (nested values become labelled lines or
tables) and shows times (``*_at``, ``ts``, ``since``, ``until``: epoch seconds) as local dates;
``--json`` prints the very value the human output was drawn from. This module imports nothing
heavy (no platform, DuckDB, aiohttp), so ``miniport --help`` stays quick."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import InvalidInput, MiniportError

if TYPE_CHECKING:
    from rich.table import Table

    from ..config import Settings

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", envvar="MINIPORT_DATA_DIR", help="Data directory [default: ./miniport-data]"
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object")]
SERVER_FILE = "server.json"


class Role(StrEnum):
    """What a key or a console user may do (help lists the choices)."""

    admin = "admin"
    developer = "developer"
    viewer = "viewer"


console = Console()
err_console = Console(stderr=True)


def settings_for(data_dir: Path | None, **overrides: Any) -> Settings:
    from ..config import Settings

    settings = Settings.from_env(data_dir=data_dir, **overrides)
    check_data_dir(settings.data_dir)
    return settings


def is_utf8(text: str) -> bool:
    """Whether ``text`` is UTF-8 text (a shell argument with bytes that are not decodes with
    surrogates, which nothing downstream can encode)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_data_dir(path: Path) -> None:
    """InvalidInput, saying what to do, when ``path`` cannot be a data directory: a file, or
    a path under a file or under a directory that cannot be written (nothing is created), or a
    path that is not UTF-8 (the state database's URL could not carry it)."""
    if not is_utf8(str(path)):
        raise InvalidInput(f"data directory {str(path)!r} is not valid UTF-8: choose another")
    found = path.absolute()
    while not found.exists() and found != found.parent:
        found = found.parent  # the nearest existing part, where the directory would be made
    if not found.is_dir():
        problem = "is a file" if found == path.absolute() else f"is under a file ({found})"
    elif not os.access(found, os.W_OK | os.X_OK):
        problem = "cannot be written" if found == path.absolute() else f"cannot be made in {found}"
    else:
        return
    raise InvalidInput(
        f"data directory {path} {problem}: choose another with --data-dir DIR"
        " (or MINIPORT_DATA_DIR)"
    )


def read_server_file(data_dir: Path) -> dict[str, Any] | None:
    """What the server running on ``data_dir`` wrote about itself, or None (no file, or one
    that is not a JSON object: no server's)."""
    path = data_dir / SERVER_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def write_server_file(data_dir: Path, info: dict[str, Any]) -> Path:
    path = data_dir / SERVER_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(info, handle)
    return path


def render(as_json: bool, value: Any, human: Callable[[], None] | None = None) -> None:
    """Print a command's result: ``value`` as one JSON object with --json; otherwise ``human``
    if given, else ``value`` as labelled lines (lists of objects as tables)."""
    if as_json:
        sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")
    elif human is not None:
        human()
    else:
        print_value(value)


TIME_KEYS = ("ts", "since", "until", "before")


def is_time_key(key: str) -> bool:
    return key in TIME_KEYS or key.endswith("_at")


def local_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def text_of(key: str, value: Any) -> str:
    """One value as table-cell text: times as local dates, lists comma-joined, objects as
    ``k=v`` pairs, None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float) and is_time_key(key):
        return local_time(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={text_of(k, v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(text_of(key, v) for v in value)
    return str(value)


def new_table(*columns: str) -> Table:
    """A rich table with these columns (rich.table, with its imports, loads only when a
    command prints a table: not for --json, not for --help)."""
    from rich.table import Table

    return Table(*columns)


def table_of(rows: list[dict[str, Any]]) -> Table:
    """Rows as a table, one column per key (in order of first appearance)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    table = new_table(*columns)
    for row in rows:
        table.add_row(*(escape(text_of(c, row.get(c))) for c in columns))
    return table


def print_value(value: Any, indent: str = "") -> None:
    """A result as labelled lines: nested objects indented, lists of objects as tables. A
    line is soft-wrapped: a token, key or URL is folded by the terminal, never cut by a
    newline (it is copied from there)."""
    if not isinstance(value, dict):
        console.print(indent + escape(text_of("", value)), highlight=False, soft_wrap=True)
        return
    for key, item in value.items():
        label = f"{indent}[bold]{key}[/bold]:"
        if isinstance(item, dict) and item:
            console.print(label)
            print_value(item, indent + "  ")
        elif isinstance(item, list) and item and all(isinstance(i, dict) for i in item):
            console.print(label)
            console.print(table_of(item))
        elif isinstance(item, list) and not item:
            console.print(f"{label} (none)", highlight=False)
        else:
            console.print(label, escape(text_of(key, item)), highlight=False, soft_wrap=True)


def _heading(exc: MiniportError) -> str:
    if exc.code == "invalid_definition":
        return "the definition is invalid"
    return "the input is invalid"


def fail(as_json: bool, exc: MiniportError) -> NoReturn:
    """The CLI's one error renderer. Exit 1 with ``{"error", "message"[, "problems"]}``
    (--json; the problems also as ``"errors"``, the name used first) or readable lines, one per
    ``path: message`` problem."""
    if as_json:
        body = exc.as_dict()
        if exc.problems:
            body["errors"] = body["problems"]
        sys.stdout.write(json.dumps(body, ensure_ascii=False) + "\n")
    elif exc.problems:  # messages quote the user's input: escaped, never read as markup
        err_console.print(f"[red]error[/red]: {_heading(exc)}:", highlight=False, soft_wrap=True)
        for p in exc.problems:
            where = f"[bold]{escape(p.path)}[/bold]: " if p.path else ""
            err_console.print(f"  {where}{escape(p.message)}", highlight=False, soft_wrap=True)
    else:
        # soft-wrapped: a path or URL in it is folded by the terminal, never cut by a newline
        err_console.print(
            f"[red]error[/red]: {escape(exc.message)}", highlight=False, soft_wrap=True
        )
    raise typer.Exit(1)
