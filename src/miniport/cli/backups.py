"""``miniport backup`` and ``miniport restore``: the embedded default (SQLite state, DuckDB
events) backed up while the server runs, and put back into a stopped data directory.

    miniport backup [--to DIR]
    miniport restore BACKUP_DIR [--discard-replaced]

A backup is made by the server's process when one runs on the data directory (it holds the
events file), else here; either way it lands in ``<data dir>/backups/`` first, and ``--to``
then moves it (the data directory is on this machine: its ``server.json`` said where the
server is)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ..errors import MiniportError
from .backend import call
from .common import DataDir, Json, console, err_console, fail, local_time, render, settings_for


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} bytes"


def _describe(part: str, entry: dict[str, Any]) -> str:
    if entry["file"] is None:
        return f"  {part}: not copied: {entry['note']}"
    return (
        f"  {part}: {entry['file']} ({entry['kind']}, {_size(entry['bytes'])},"
        f" sha256 {entry['sha256'][:12]}…)"
    )


def backup(
    to: Annotated[
        Path | None,
        typer.Option("--to", help="Move the backup here (a new or empty directory)"),
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Back up the embedded databases (SQLite, DuckDB), also while serving."""
    from ..services.backup import check_destination, move_backup

    if to is not None:  # before a backup is made for nothing
        try:
            check_destination(to)
        except MiniportError as exc:
            fail(as_json, exc)
    with contextlib.nullcontext() if as_json else err_console.status("backing up…"):
        # moved out at once: it adds nothing to <data dir>/backups, so nothing is pruned
        made = call(data_dir, as_json, "backup", prune=to is None)
    if to is not None:
        try:
            made = move_backup(made, to)
        except MiniportError as exc:
            fail(as_json, exc)

    def human() -> None:
        console.print(f"Backup made at {local_time(made['created_at'])}:", highlight=False)
        console.print(f"  {escape(made['path'])}", highlight=False, soft_wrap=True)
        console.print(_describe("state", made["state"]), highlight=False, markup=False)
        console.print(_describe("events", made["events"]), highlight=False, markup=False)
        if made.get("pruned"):
            console.print("  older backups deleted (MINIPORT_BACKUP_KEEP):", highlight=False)
            for name in made["pruned"]:
                console.print(f"    {name}", highlight=False, markup=False)
        if made.get("prune_failed"):
            err_console.print(
                f"[yellow]warning[/yellow]: an old backup could not be deleted:"
                f" {escape(made['prune_failed'])}", highlight=False, soft_wrap=True,
            )  # fmt: skip
        console.print("Restore it into a stopped data directory with `miniport restore DIR`.")

    render(as_json, made, human)


def restore(
    backup_dir: Annotated[
        Path, typer.Argument(help="The backup's directory", show_default=False)
    ],
    discard: Annotated[
        bool,
        typer.Option(
            "--discard-replaced",
            help="Delete the files the backup replaces (by default moved to replaced-by-…/)",
        ),
    ] = False,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Restore a backup into a stopped data directory."""
    from ..services.backup import restore as restore_backup

    try:
        restored = restore_backup(settings_for(data_dir), backup_dir, discard=discard)
    except MiniportError as exc:
        fail(as_json, exc)

    def human() -> None:
        console.print(
            f"Restored {', '.join(restored['files'])} from the backup of"
            f" {local_time(restored['created_at'])} into {escape(restored['data_dir'])}.",
            highlight=False, soft_wrap=True,  # a path is never cut by a newline
        )  # fmt: skip
        if restored["replaced_into"]:
            console.print(
                f"The files it replaced are in {escape(restored['replaced_into'])}.",
                highlight=False, soft_wrap=True,
            )  # fmt: skip
        console.print("Start the server as usual: migrations bring an older backup up to date.")

    render(as_json, restored, human)
