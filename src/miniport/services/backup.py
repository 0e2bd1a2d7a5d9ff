"""Backing up the embedded default while it runs, and restoring a backup into a stopped data
directory (``miniport backup`` / ``miniport restore``, ``POST /admin/v1/backups``).

A backup is written under ``<data dir>/backups/`` (by the server's process when one runs: it
holds the events file) as ``.partial-NAME`` and renamed to ``NAME`` once whole, so a backup
that stopped half-way never looks like one. Restore checks the manifest, every file's size and
checksum and the schema versions first; only then does it replace anything, and it moves what
it replaces aside (``replaced-NAME/``) unless told to discard it."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .. import __version__
from ..domain import backups as rules
from ..errors import Conflict, InvalidInput, Problem
from ..storage import backup as files
from ..storage import migrate
from ..storage.data_dir import holding

if TYPE_CHECKING:
    from ..analytics.event_store import DuckDBEventStore
    from ..config import Settings
    from ..platform import Platform

BACKUPS_DIR = "backups"


async def make_backup(platform: Platform, actor: str) -> dict[str, Any]:
    """Back up this platform's embedded databases into ``<data dir>/backups/NAME``; returns
    the manifest with the backup's ``path``. One at a time per data directory (Conflict).
    Audited (``backup.create``), with where it is and what it holds."""
    made = await asyncio.to_thread(_backup, platform)
    await platform.db.write(
        platform.registry.audit, platform.clock.now(), actor, "backup.create", None,
        path=made["path"], state=made["state"]["kind"], events=made["events"]["kind"],
        pruned=made["pruned"],
    )  # fmt: skip
    return made


def _backup(platform: Platform) -> dict[str, Any]:
    settings = platform.settings
    root = settings.data_dir / BACKUPS_DIR
    now = platform.clock.now()
    with files.backup_lock(root):
        files.remove(files.stale_partials(root))  # a process died writing them
        partial, final = files.new_partial(root, rules.backup_name(now))
        try:
            state = _state_part(platform, partial)
            events = _events_part(platform, partial)
            manifest = rules.manifest(now, __version__, state, events)
            files.write_manifest(partial, manifest)
            os.replace(partial, final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        pruned = rules.to_prune(files.backup_names(root), settings.backup_keep)
        files.remove([root / name for name in pruned])
    return {**manifest, "path": str(final), "pruned": pruned}


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
    replaced; the files replaced are moved to ``replaced-NAME/`` (deleted with ``discard``)."""
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
    with holding(data_dir, lambda: Conflict(f"a server is running on {data_dir}: stop it first")):
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


def move_backup(made: dict[str, Any], to: Path) -> dict[str, Any]:
    """Move a backup just made to ``to`` (a new or empty directory): the CLI's ``--to``, run
    where the data directory is."""
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise Conflict(f"{to} is not an empty directory; the backup stays at {made['path']}")
    to.parent.mkdir(parents=True, exist_ok=True)
    if to.exists():
        to.rmdir()
    shutil.move(made["path"], to)
    return {**made, "path": str(to)}
