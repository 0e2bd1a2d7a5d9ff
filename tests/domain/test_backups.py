"""The rules on backup manifests, with literal values: names, what a manifest must hold, and
what keeps a backup from being restored here."""

from __future__ import annotations

from typing import Any

import pytest

from miniport.domain import backups as rules

SHA = "ab" * 32


def sqlite_and_duckdb(state_version: str = "0018", events_version: str = "1") -> dict[str, Any]:
    return rules.manifest(
        1_796_146_000.5,
        "0.1.0",
        rules.copied("sqlite", "miniport.db", 4096, SHA, state_version),
        rules.copied("duckdb", "events.duckdb", 12288, SHA, events_version),
    )


@pytest.mark.parametrize(
    "now, name",
    [
        (1_796_146_000.0, "backup-20261201T172640.000Z"),
        (1_796_146_000.123, "backup-20261201T172640.123Z"),
        (1_796_146_000.9996, "backup-20261201T172641.000Z"),  # rounds into the next second
        (0.0, "backup-19700101T000000.000Z"),
    ],
)
def test_names_sort_by_time_in_utc(now: float, name: str) -> None:
    assert rules.backup_name(now) == name


def test_a_manifest_this_code_wrote_has_no_problem() -> None:
    assert rules.manifest_problems(sqlite_and_duckdb()) == []
    on_servers = rules.manifest(0, "0.1.0", rules.not_copied("postgresql"),
                                rules.not_copied("clickhouse"))
    assert rules.manifest_problems(on_servers) == []


@pytest.mark.parametrize("created_at", [None, "yesterday", True, -1, 1e20, float("nan")])
def test_a_manifest_without_a_time_it_was_made_is_refused(created_at: Any) -> None:
    m = rules.manifest(1.0, "1", rules.not_copied("postgresql"), rules.not_copied("clickhouse"))
    m["created_at"] = created_at
    assert rules.manifest_problems(m) == ["created_at: not a time (seconds since 1970)"]
    del m["created_at"]
    assert rules.manifest_problems(m) == ["created_at: not a time (seconds since 1970)"]


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda m: [], "not a JSON object"),
        (lambda m: {**m, "format": 2}, "unknown backup format 2"),
        (lambda m: {**m, "state": {"kind": "mysql"}}, "state: not a part this version knows"),
        (lambda m: {**m, "events": None}, "events: not a part this version knows"),
        (lambda m: {**m, "state": {**m["state"], "file": "../../etc/passwd"}},
         "state: its file, size, checksum or version is malformed"),
        (lambda m: {**m, "events": {**m["events"], "sha256": "xyz"}},
         "events: its file, size, checksum or version is malformed"),
        (lambda m: {**m, "events": {**m["events"], "bytes": -1}},
         "events: its file, size, checksum or version is malformed"),
        (lambda m: {**m, "state": {**m["state"], "version": 18}},
         "state: its file, size, checksum or version is malformed"),
    ],
)
def test_a_manifest_that_was_altered_is_refused(change: Any, problem: str) -> None:
    found = rules.manifest_problems(change(sqlite_and_duckdb()))
    assert any(problem in p for p in found), found


def where(**kw: Any) -> dict[str, Any]:
    return {"state_head": "0018", "events_version": "1", "state_is_sqlite": True,
            "events_is_duckdb": True, **kw}


def test_an_older_state_is_restored_and_migrated_a_newer_one_is_not() -> None:
    assert rules.restore_problems(sqlite_and_duckdb("0017"), **where()) == []
    assert rules.restore_problems(sqlite_and_duckdb("0018"), **where()) == []
    (problem,) = rules.restore_problems(sqlite_and_duckdb("0019"), **where())
    assert "schema revision 0019, newer than this version's 0018" in problem
    (problem,) = rules.restore_problems(sqlite_and_duckdb(events_version="2"), **where())
    assert "schema version 2, this version reads 1" in problem


def test_a_file_is_not_restored_where_the_settings_keep_that_database_on_a_server() -> None:
    problems = rules.restore_problems(
        sqlite_and_duckdb(), **where(state_is_sqlite=False, events_is_duckdb=False)
    )
    assert len(problems) == 2
    assert "MINIPORT_DATABASE_URL" in problems[0] and "MINIPORT_ANALYTICS_URL" in problems[1]
    # what the backup does not hold is not checked against the settings
    events_only = {**sqlite_and_duckdb(), "state": rules.not_copied("postgresql")}
    assert rules.restore_problems(events_only, **where(state_is_sqlite=False)) == []


def test_a_backup_with_no_file_restores_nothing() -> None:
    empty = rules.manifest(0, "0.1.0", rules.not_copied("postgresql"),
                           rules.not_copied("clickhouse"))
    assert rules.restore_problems(empty, **where()) == [
        "the backup holds no database file (both are on servers of their own)"]


def test_only_backups_beyond_the_newest_kept_are_pruned_oldest_first() -> None:
    names = [
        "backup-20261201T120000.000Z",
        "backup-20261130T120000.000Z",
        "backup-20261201T120000.000Z-2",  # the same millisecond: newer than its twin
        "backup-20261129T120000.000Z",
        "replaced-by-backup-20261101T000000.000Z",  # not a backup: never chosen
        "my-notes",
        ".partial-backup-20261202T000000.000Z",
    ]
    made = "backup-20261201T120000.000Z-2"
    assert rules.to_prune(names, 2, made) == [
        "backup-20261129T120000.000Z",
        "backup-20261130T120000.000Z",
    ]
    assert rules.to_prune(names, 4, made) == []
    assert rules.to_prune(names, 0, made) == []  # 0: keep them all
    assert rules.to_prune(names, 1, made) == sorted(set(names[:4]) - {made})


def test_the_backup_just_made_is_never_pruned_even_when_others_sort_after_it() -> None:
    """A clock set back since (or backups copied from another host) names older backups
    later: counted by name, the one just made was the oldest and was deleted at once."""
    later = ["backup-20300101T000000.000Z", "backup-20300102T000000.000Z"]
    made = "backup-20261201T120000.000Z"
    assert rules.to_prune([*later, made], 1, made) == later
    assert rules.to_prune([*later, made], 2, made) == later[:1]
