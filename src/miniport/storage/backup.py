"""Backup files: a consistent copy of the SQLite state database while it is in use, checksums,
and putting a backup's files in place in a data directory. The rules on manifests are in
:mod:`miniport.domain.backups`; :mod:`miniport.services.backup` puts them together."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from ..domain.backups import MANIFEST
from ..errors import Conflict, InvalidInput
from .data_dir import locked

log = logging.getLogger("miniport.backup")
PARTIAL = ".partial-"  # a backup being written: renamed to its name once whole
LOCK = ".backup.lock"


def snapshot_sqlite(source: Path, target: Path) -> str:
    """Copy the SQLite database at ``source`` to the new file ``target`` with SQLite's online
    backup, in one step: a consistent snapshot (WAL mode: writers go on meanwhile). Returns the
    copy's schema revision, read from the copy, which must pass SQLite's own check: the copy is
    what a restore puts back (a path with '#' in it, pasted into the URI as it was, opened an
    empty database, and the backup of nothing passed for the state)."""
    src = sqlite3.connect(source.absolute().as_uri() + "?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            try:
                src.backup(dst)  # its errors (the file locked, unreadable) are the caller's
            except sqlite3.OperationalError as exc:
                if "full" not in str(exc):
                    raise
                # the copy's disk, not the state database's: not "the state is away, retry"
                raise OSError(errno.ENOSPC, f"no room left writing {target}") from exc
            checked = dst.execute("PRAGMA quick_check").fetchone()
            try:
                revision = dst.execute("SELECT version_num FROM alembic_version").fetchone()
            except sqlite3.OperationalError as exc:  # no such table: not the state database
                raise RuntimeError(f"the copy of {source} holds no Miniport state") from exc
        finally:
            dst.close()
    finally:
        src.close()
    if checked != ("ok",) or revision is None:
        raise RuntimeError(f"the copy of {source} failed SQLite's check: {checked}")
    return str(revision[0])


def digest(path: Path) -> tuple[int, str]:
    """The file's size and SHA-256 (hex)."""
    with path.open("rb") as f:
        sha = hashlib.file_digest(f, "sha256").hexdigest()
    return path.stat().st_size, sha


def backup_lock(root: Path) -> contextlib.AbstractContextManager[None]:
    """One backup at a time per data directory (whichever process makes it): a second one
    while the first runs is a Conflict, not a race on the same files. A restore of one of
    them holds it too."""
    busy = "a backup of this data directory is being made or restored"
    return locked(root / LOCK, lambda: Conflict(busy))


def new_partial(root: Path, name: str) -> tuple[Path, Path]:
    """A fresh directory to write backup ``name`` into, and where it goes once whole (a name
    taken already gets a suffix: two backups in the same millisecond)."""
    for n in range(1, 100):
        final = root / (name if n == 1 else f"{name}-{n}")
        partial = root / (PARTIAL + final.name)
        if final.exists() or partial.exists():
            continue
        partial.mkdir(mode=0o700)  # it holds the server's keys (in the state database)
        return partial, final
    raise Conflict(f"too many backups named {name}")


def stale_partials(root: Path) -> list[Path]:
    """Backups left half-written by a process that died (call under :func:`backup_lock`: no
    backup is being written then). Each holds a copy of the state, keys included."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith(PARTIAL) and p.is_dir())


def backup_names(root: Path) -> list[str]:
    """The names of the directories in ``root`` (the rules pick the backups among them)."""
    return [p.name for p in root.iterdir() if p.is_dir()] if root.is_dir() else []


def remove_all(paths: list[Path]) -> str | None:
    """Delete these backup directories (pruned backups, stale partial ones), as many as can
    be: None, or what stopped the first that could not be (logged)."""
    problem = None
    for path in paths:
        try:
            shutil.rmtree(path)
        except OSError as exc:
            log.warning("could not delete the old backup %s: %s", path, exc)
            problem = problem or f"{path}: {exc}"
    return problem


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", "utf-8")


def read_manifest(directory: Path) -> Any:
    """The manifest's JSON value, or InvalidInput saying why there is none."""
    if not directory.is_dir():
        raise InvalidInput(f"{directory} is not a directory")
    path = directory / MANIFEST
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"{directory} holds no {MANIFEST}: not a Miniport backup") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"{path} cannot be read: {exc}") from None


def file_problems(directory: Path, manifest: dict[str, Any]) -> list[str]:
    """Each copied file present, of its size and checksum (a truncated or altered copy is found
    here, before anything is replaced)."""
    problems = []
    for part in ("state", "events"):
        entry = manifest[part]
        if entry["file"] is None:
            continue
        path = directory / entry["file"]
        if not path.is_file():
            problems.append(f"{part}: {entry['file']} is missing")
            continue
        size, sha = digest(path)
        if (size, sha) != (entry["bytes"], entry["sha256"]):
            problems.append(
                f"{part}: {entry['file']} is not the file backed up ({size} bytes, checksum"
                f" {sha[:12]}…; the manifest says {entry['bytes']} bytes, {entry['sha256'][:12]}…)"
            )
    return problems


def companions(path: Path) -> list[Path]:
    """A database file and the files its engine keeps beside it (SQLite's -wal and -shm,
    DuckDB's .wal), those that exist."""
    names = [path.name, path.name + "-wal", path.name + "-shm", path.name + ".wal"]
    return [path.parent / n for n in names if (path.parent / n).exists()]


def put_in_place(parts: list[tuple[Path, Path]], aside: Path | None) -> None:
    """Copy each ``(source, target)``: every copy first, beside its target under a temporary
    name (a copy that fails, a full disk, leaves the data directory as it was); then each
    target and its companions moved into ``aside`` (or deleted: a WAL left beside a restored
    file would be replayed into it), and the copy renamed into its place."""
    staged: list[tuple[Path, Path]] = []
    try:
        for source, target in parts:
            temporary = target.with_name(target.name + ".restoring")
            staged.append((temporary, target))
            shutil.copyfile(source, temporary)
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    for temporary, target in staged:
        for old in companions(target):
            if aside is not None:
                aside.mkdir(mode=0o700, exist_ok=True)
                shutil.move(old, aside / old.name)
            else:
                old.unlink()
        os.replace(temporary, target)
