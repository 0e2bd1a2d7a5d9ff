"""Backing up the embedded default while it runs, and restoring a backup into a stopped data
directory (``miniport backup`` / ``miniport restore``, ``POST /admin/v1/backups``).

A backup is written under ``<data dir>/backups/`` (by the server's process when one runs: it
holds the events file) as ``.partial-NAME`` and renamed to ``NAME`` once whole, so a backup
that stopped half-way never looks like one. Restore checks the manifest, every file's size and
checksum and the schema versions first; only then does it replace anything, and it moves what
it replaces aside (``replaced-NAME/``) unless told to discard it."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .. import __version__
from ..domain import backups as rules
from ..errors import Conflict, InvalidInput, Problem, StorageFull
from ..storage import backup as files
from ..storage import migrate
from ..storage.data_dir import holding, no_workers

if TYPE_CHECKING:
    from ..analytics.event_store import DuckDBEventStore
    from ..config import Settings
    from ..platform import Platform

BACKUPS_DIR = "backups"
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


async def make_backup(platform: Platform, actor: str, *, prune: bool = True) -> dict[str, Any]:
    """Back up this platform's embedded databases into ``<data dir>/backups/NAME``; returns
    the manifest with the backup's absolute ``path`` and the older backups deleted to keep
    ``backup_keep`` (``pruned``; none with ``prune=False``: a backup about to be moved out
    adds none to keep). One at a time per data directory (Conflict); no room for it is
    ``StorageFull``. Audited (``backup.create``), with where it is and what it holds."""
    made = await asyncio.to_thread(_backup, platform, prune)
    await platform.db.write(
        platform.registry.audit, platform.clock.now(), actor, "backup.create", None,
        path=made["path"], state=made["state"]["kind"], events=made["events"]["kind"],
        pruned=made["pruned"],
    )  # fmt: skip
    return made


def _backup(platform: Platform, prune: bool) -> dict[str, Any]:
    settings = platform.settings
    root = settings.data_dir.absolute() / BACKUPS_DIR  # the path is read by another process
    now = platform.clock.now()
    with files.backup_lock(root):
        leftovers = files.stale_partials(root)  # a process died writing them
        partial, final = files.new_partial(root, rules.backup_name(now))
        try:
            state = _state_part(platform, partial)
            events = _events_part(platform, partial)
            manifest = rules.manifest(now, __version__, state, events)
            files.write_manifest(partial, manifest)
            os.replace(partial, final)
        except BaseException as exc:
            shutil.rmtree(partial, ignore_errors=True)
            if _no_room(exc):
                raise StorageFull(f"no room left to write a backup in {root}: {exc}") from exc
            raise
        pruned = rules.to_prune(files.backup_names(root), settings.backup_keep, final.name)
        made = {**manifest, "path": str(final), "pruned": pruned if prune else []}
        problem = files.remove_all([*leftovers, *(root / n for n in made["pruned"])])
    # the backup is whole and kept whatever the clean-up met (a file of another owner, say)
    return {**made, "prune_failed": problem} if problem else made


def _no_room(exc: BaseException) -> bool:
    """A write that failed for want of room: an OSError's errno, or DuckDB's IO error (it
    carries the system's message only)."""
    if isinstance(exc, OSError):
        return exc.errno in _NO_ROOM
    return type(exc).__name__ == "IOException" and "No space left on device" in str(exc)


def _state_part(platform: Platform, directory: Path) -> dict[str, Any]:
    if not platform.db.is_sqlite:
        return rules.not_copied("postgresql")
    target = directory / rules.STATE_FILE
    with platform.db.unavailable_as_503():
        revision = files.snapshot_sqlite(_sqlite_path(platform), target)
    return rules.copied("sqlite", rules.STATE_FILE, *files.digest(target), revision)


def _sqlite_path(platform: Platform) -> Path:
    database = platform.db.engine.url.database
    assert database  # a file: the platform never runs SQLite in memory
    return Path(database)


def _events_part(platform: Platform, directory: Path) -> dict[str, Any]:
    if platform.settings.analytics_url:
        return rules.not_copied("clickhouse")
    from ..analytics.event_store import SCHEMA_VERSION

    store = cast("DuckDBEventStore", platform.analytics.store)
    target = directory / rules.EVENTS_FILE
    store.backup_to(target)
    return rules.copied("duckdb", rules.EVENTS_FILE, *files.digest(target), SCHEMA_VERSION)


def restore(settings: Settings, source: Path, *, discard: bool = False) -> dict[str, Any]:
    """Put the backup in ``source`` in place in the settings' data directory, which no server
    may hold (its lock is taken for the whole restore). Every check passes before anything is
    replaced; the files replaced are moved to ``replaced-NAME/`` (deleted with ``discard``).
    A backup of the data directory's own ``backups/`` is restored under their lock: a backup
    made meanwhile could prune it half-way."""
    root = settings.data_dir / BACKUPS_DIR
    inside = source.resolve().is_relative_to(root.resolve())
    with files.backup_lock(root) if inside else contextlib.nullcontext():
        return _restore(settings, source, discard)


def _restore(settings: Settings, source: Path, discard: bool) -> dict[str, Any]:
    from ..analytics.event_store import SCHEMA_VERSION

    manifest = files.read_manifest(source)
    problems = rules.manifest_problems(manifest)
    if not problems:
        problems = rules.restore_problems(
            manifest,
            state_head=migrate.HEAD,
            events_version=SCHEMA_VERSION,
            state_is_sqlite=not settings.database_url,
            events_is_duckdb=not settings.analytics_url,
        ) or files.file_problems(source, manifest)
    if problems:
        raise InvalidInput(f"{source} cannot be restored", [Problem("", p) for p in problems])
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    with (
        holding(data_dir, lambda: Conflict(f"a server is running on {data_dir}: stop it first")),
        no_workers(data_dir, lambda: Conflict(f"a worker is running on {data_dir}: stop it first")),
    ):
        aside = None if discard else _aside(data_dir, manifest)
        restored = [
            manifest[part]["file"] for part in ("state", "events") if manifest[part]["file"]
        ]
        files.put_in_place([(source / name, data_dir / name) for name in restored], aside)
    return {
        "restored_from": str(source),
        "data_dir": str(data_dir),
        "files": restored,
        "replaced_into": str(aside) if aside is not None and aside.exists() else None,
        "created_at": manifest["created_at"],
    }


def _aside(data_dir: Path, manifest: dict[str, Any]) -> Path:
    """Where the files a restore replaces go: a directory named for the moment of the backup
    restored (not made until a file is moved there)."""
    base = data_dir / ("replaced-by-" + rules.backup_name(float(manifest["created_at"])))
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def check_destination(to: Path) -> None:
    """Why a backup cannot be moved to ``to`` (Conflict), checked before it is made too."""
    try:
        if to.exists() and (not to.is_dir() or any(to.iterdir())):
            raise Conflict(f"{to} is not an empty directory")
        above = to.absolute().parent
        while not above.exists():
            above = above.parent
        if not above.is_dir():
            raise Conflict(f"{to} cannot be made: {above} is not a directory")
    except OSError as exc:  # unreadable
        raise Conflict(f"{to} cannot be used: {exc.strerror or exc}") from exc


def move_backup(made: dict[str, Any], to: Path) -> dict[str, Any]:
    """Move a backup just made to ``to`` (a new or empty directory): the CLI's ``--to``, run
    where the data directory is. Whatever stops it, the backup stays where it was made."""
    stays = f"; the backup stays at {made['path']}"
    try:
        check_destination(to)
        to.parent.mkdir(parents=True, exist_ok=True)
        if to.exists():
            to.rmdir()
        shutil.move(made["path"], to)
    except Conflict as exc:
        raise Conflict(exc.message + stays) from exc
    except OSError as exc:
        if _partly_copied(made, to):
            shutil.rmtree(to, ignore_errors=True)
        raise Conflict(f"the backup cannot be moved to {to}: {exc.strerror or exc}{stays}") from exc
    return {**made, "path": str(to.absolute())}


def _partly_copied(made: dict[str, Any], to: Path) -> bool:
    """A move across file systems copies, then deletes: one that failed half-way (a full
    disk) left a partial copy at ``to`` while the backup is still whole where it was."""
    return Path(made["path"]).is_dir() and to.is_dir()
