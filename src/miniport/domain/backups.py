"""Backups of the embedded default, as rules on their manifest (no I/O): what a backup is
called, what its manifest says, and whether it can be restored by this code into these
settings.

A backup is a directory holding ``manifest.json`` and a copy of each embedded database: the
state (SQLite, ``miniport.db``: apps, users, schedules, cached bodies, keys) and the events
(DuckDB, ``events.duckdb``). A database on a server of its own (PostgreSQL, ClickHouse) is not
copied (its server's own tools back it up consistently and at scale): the manifest says so, and
a restore leaves it alone."""

from __future__ import annotations

import re
import time
from typing import Any

FORMAT = 1
MANIFEST = "manifest.json"
STATE_FILE = "miniport.db"
EVENTS_FILE = "events.duckdb"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REVISION = re.compile(r"\d{4}")
NOT_COPIED = {
    "postgresql": "the state is on PostgreSQL: back it up with pg_dump (or your provider's "
    "snapshots)",
    "clickhouse": "the events are on ClickHouse: back them up with its BACKUP command or "
    "clickhouse-backup",
}


def backup_name(now: float) -> str:
    """``backup-20261201T172700.123Z``: sorts by time, readable, safe in any file system."""
    seconds, ms = divmod(round(now * 1000), 1000)
    return time.strftime("backup-%Y%m%dT%H%M%S", time.gmtime(seconds)) + f".{ms:03d}Z"


_NAME = re.compile(r"backup-\d{8}T\d{6}\.\d{3}Z(?:-\d+)?")


def to_prune(names: list[str], keep: int, made: str) -> list[str]:
    """The backups (by directory name) to delete after backup ``made``, oldest first: all but
    ``made`` and the newest ``keep - 1`` others (0: keep them all). ``made`` is never chosen,
    even when others are named later (a clock set back since, backups copied from another
    host), nor are names that are not a backup's (anything an operator put beside them). A
    name's suffix (``-2``: the same millisecond) sorts it after its twin."""
    if keep <= 0:
        return []
    others = sorted(n for n in names if _NAME.fullmatch(n) and n != made)
    return others[: max(0, len(others) - (keep - 1))]


def copied(kind: str, file: str, size: int, sha256: str, version: str) -> dict[str, Any]:
    """A manifest part for a database copied into the backup."""
    return {"kind": kind, "file": file, "bytes": size, "sha256": sha256, "version": version}


def not_copied(kind: str) -> dict[str, Any]:
    """A manifest part for a database on a server of its own."""
    return {"kind": kind, "file": None, "note": NOT_COPIED[kind]}


def manifest(
    created_at: float, app_version: str, state: dict[str, Any], events: dict[str, Any]
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "created_at": created_at,
        "miniport_version": app_version,
        "state": state,
        "events": events,
    }


def manifest_problems(m: Any) -> list[str]:
    """What is wrong with a manifest read from disk (any JSON value): [] when it is one this
    code wrote and understands."""
    if not isinstance(m, dict):
        return ["the manifest is not a JSON object"]
    if m.get("format") != FORMAT:
        return [f"unknown backup format {m.get('format')!r} (this version reads {FORMAT})"]
    problems = []
    made = m.get("created_at")  # named in the restore's answer and its aside directory
    if isinstance(made, bool) or not isinstance(made, int | float) or not 0 <= made < 2**35:
        problems.append("created_at: not a time (seconds since 1970)")
    for part, kinds, name in (
        ("state", ("sqlite", "postgresql"), STATE_FILE),
        ("events", ("duckdb", "clickhouse"), EVENTS_FILE),
    ):
        p = m.get(part)
        if not isinstance(p, dict) or p.get("kind") not in kinds:
            problems.append(f"{part}: not a part this version knows")
            continue
        if p.get("file") is None:
            continue
        if (
            p["file"] != name
            or not isinstance(p.get("bytes"), int)
            or p["bytes"] < 0
            or not isinstance(p.get("sha256"), str)
            or not _SHA256.fullmatch(p["sha256"])
            or not isinstance(p.get("version"), str)
        ):
            problems.append(f"{part}: its file, size, checksum or version is malformed")
    return problems


def restore_problems(
    m: dict[str, Any],
    *,
    state_head: str,
    events_version: str,
    state_is_sqlite: bool,
    events_is_duckdb: bool,
) -> list[str]:
    """Why this (well-formed) backup cannot be restored by this code into these settings: a
    database newer than this code knows, or one the settings keep on a server instead."""
    problems = []
    state, events = m["state"], m["events"]
    if state["file"] is not None:
        if not state_is_sqlite:
            problems.append(
                "the backup holds the data directory's SQLite state database, but these settings "
                "keep the state in MINIPORT_DATABASE_URL's: restore without that setting"
            )
        version = state["version"]
        if not _REVISION.fullmatch(version) or version > state_head:
            problems.append(
                f"the state database is at schema revision {version}, newer than this "
                f"version's {state_head}: restore it with the version that made it"
            )
    if events["file"] is not None:
        if not events_is_duckdb:
            problems.append(
                "the backup holds a DuckDB events store, but these settings keep the events "
                "on ClickHouse (MINIPORT_ANALYTICS_URL): restore without that setting, then "
                "`miniport analytics move-store`"
            )
        if events["version"] != events_version:
            problems.append(
                f"the events store has schema version {events['version']}, this version "
                f"reads {events_version}"
            )
    if state["file"] is None and events["file"] is None:
        problems.append("the backup holds no database file (both are on servers of their own)")
    return problems
