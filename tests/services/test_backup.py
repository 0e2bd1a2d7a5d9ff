"""Backups of the embedded default on real SQLite and DuckDB files: made while the platform is
open, restored into another data directory whole (apps, keys, events and their dedup key), and
every refusal leaves the target as it was."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from miniport.clock import FakeClock
from miniport.domain import backups as rules
from miniport.errors import Conflict, InvalidInput, StorageFull
from miniport.platform import Platform, create_platform
from miniport.services.backup import make_backup, move_backup, restore
from miniport.storage import backup as files
from miniport.storage import migrate
from miniport.storage.data_dir import holding
from tests.conftest import make_settings
from tests.services.test_analytics_retention import report_at, setup, total


@pytest.fixture
async def source(tmp_path: Path, clock: FakeClock) -> Any:
    p = create_platform(make_settings(tmp_path / "a"), clock)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


def is_dir(path: str) -> bool:
    return Path(path).is_dir()


def digests(directory: Path) -> dict[str, tuple[int, str]]:
    return {f.name: files.digest(f) for f in sorted(directory.iterdir()) if f.is_file()}


async def test_a_backup_made_while_open_restores_apps_keys_and_events(
    source: Platform, tmp_path: Path, clock: FakeClock
) -> None:
    appid = await setup(source)
    app = await source.apps.get(appid)
    openid = source.auth.openid(appid, "alice")
    await report_at(source, clock, appid, ["e1", "e2", "e3"])

    made = await make_backup(source, "ops")
    await report_at(source, clock, appid, ["late"])  # after the backup: not in it
    backup = Path(made["path"])
    assert backup.parent == source.settings.data_dir / "backups"
    assert backup.name == rules.backup_name(clock.now())
    assert made["state"] == rules.copied("sqlite", "miniport.db",
                                         *files.digest(backup / "miniport.db"), migrate.HEAD)
    assert made["events"]["kind"] == "duckdb"
    assert json.loads((backup / "manifest.json").read_text()) == {
        k: v for k, v in made.items() if k not in ("path", "pruned")
    }
    (entry, *_) = await source.db.read(source.registry.list_audit, None, 1)
    assert (entry.action, entry.actor) == ("backup.create", "ops")
    assert entry.detail["path"] == str(backup)

    target = make_settings(tmp_path / "b")
    done = restore(target, backup)
    assert done["files"] == ["miniport.db", "events.duckdb"] and done["replaced_into"] is None
    restored = create_platform(target, clock)
    await restored.start()
    try:
        assert (await restored.apps.get(appid)).secret == app.secret
        assert restored.auth.openid(appid, "alice") == openid  # the server key came along
        assert await total(restored, appid) == 3
        # the events' unique key came along: a client's retry of e1 is still a duplicate
        now = int(clock.now() * 1000)
        again = {"sent_at": now, "events": [
            {"id": "e1", "event": "purchase", "data": {"price": 1}, "ts": now}]}
        assert (await restored.analytics.ingest(appid, "u1", again))["accepted"] == 0
        assert await total(restored, appid) == 3
    finally:
        await restored.close()


async def test_restoring_over_a_data_directory_moves_its_files_aside(
    source: Platform, tmp_path: Path, clock: FakeClock
) -> None:
    appid = await setup(source)
    made = await make_backup(source, "ops")
    await source.apps.create("made after the backup", "ops")
    await source.close()
    before = digests(source.settings.data_dir)

    done = restore(source.settings, Path(made["path"]))
    aside = Path(done["replaced_into"])
    assert aside.parent == source.settings.data_dir
    # the files replaced, and the WAL beside the state file (replayed into the restored file,
    # it would bring back what the backup did not hold)
    assert set(digests(aside)) >= {"miniport.db", "events.duckdb"}
    assert digests(aside)["miniport.db"] == before["miniport.db"]
    reopened = create_platform(source.settings, clock)
    try:
        assert [a.appid for a in await reopened.db.read(reopened.registry.list_apps)] == [appid]
    finally:
        await reopened.close()

    again = restore(source.settings, Path(made["path"]), discard=True)
    assert again["replaced_into"] is None
    assert not list(source.settings.data_dir.glob("replaced-by-*-2"))


async def test_a_backup_that_cannot_be_restored_changes_nothing(
    source: Platform, tmp_path: Path
) -> None:
    await setup(source)
    made = Path((await make_backup(source, "ops"))["path"])
    target = make_settings(tmp_path / "b")
    restore(target, made)  # a data directory with files of its own
    untouched = digests(target.data_dir)

    def broken(name: str, change: Any) -> Path:
        copy = tmp_path / name
        shutil.copytree(made, copy)
        change(copy)
        return copy

    def refused(backup: Path, *expected: str, settings: Any = target) -> None:
        with pytest.raises(InvalidInput) as error:
            restore(settings, backup)
        said = " ".join(p.message for p in error.value.problems) or error.value.message
        for words in expected:
            assert words in said, said
        assert digests(target.data_dir) == untouched
        assert not list(target.data_dir.glob("replaced-by-*"))

    def flip_a_byte(d: Path) -> None:
        with (d / "events.duckdb").open("r+b") as f:
            f.seek(5000)
            byte = f.read(1)
            f.seek(5000)
            f.write(bytes([byte[0] ^ 0xFF]))

    def newer(d: Path) -> None:
        m = json.loads((d / "manifest.json").read_text())
        m["state"]["version"] = "9999"
        (d / "manifest.json").write_text(json.dumps(m))

    refused(broken("altered", flip_a_byte), "events: events.duckdb is not the file backed up")
    refused(broken("truncated", lambda d: (d / "miniport.db").write_bytes(b"")),
            "state: miniport.db is not the file backed up")
    refused(broken("missing", lambda d: (d / "miniport.db").unlink()),
            "state: miniport.db is missing")
    refused(broken("newer", newer), "schema revision 9999, newer than this version's")
    refused(broken("no-manifest", lambda d: (d / "manifest.json").unlink()),
            "holds no manifest.json: not a Miniport backup")
    refused(broken("bad-json", lambda d: (d / "manifest.json").write_text("{")), "cannot be read")
    refused(tmp_path / "nowhere", "is not a directory")
    on_postgres = make_settings(tmp_path / "b", database_url="postgresql://127.0.0.1/x")
    refused(made, "these settings keep the state in MINIPORT_DATABASE_URL's", settings=on_postgres)


async def test_a_running_server_keeps_a_restore_out(source: Platform, tmp_path: Path) -> None:
    made = Path((await make_backup(source, "ops"))["path"])
    target = make_settings(tmp_path / "b")
    before = digests(target.data_dir) if target.data_dir.exists() else {}
    held = holding(target.data_dir, lambda: RuntimeError("held"))  # as `miniport serve` does
    with held, pytest.raises(Conflict, match="a server is running on"):
        restore(target, made)
    assert {k: v for k, v in digests(target.data_dir).items() if k != "serve.lock"} == before


async def test_one_backup_at_a_time_and_a_failed_one_leaves_nothing(
    source: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = source.settings.data_dir / "backups"
    with files.backup_lock(root), pytest.raises(Conflict, match="being made or restored"):
        await make_backup(source, "ops")  # another process is making one

    store = source.analytics.store

    def disk_full(target: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "backup_to", disk_full)
    with pytest.raises(StorageFull, match=r"no room left to write a backup in .*No space left"):
        await make_backup(source, "ops")
    assert [p.name for p in root.iterdir()] == [files.LOCK]  # no partial backup left behind
    monkeypatch.undo()
    first, second = await make_backup(source, "ops"), await make_backup(source, "ops")
    assert Path(second["path"]).name == Path(first["path"]).name + "-2"  # the same millisecond


async def test_older_backups_beyond_the_kept_number_and_dead_partials_are_deleted(
    tmp_path: Path, clock: FakeClock
) -> None:
    p = create_platform(make_settings(tmp_path / "k", backup_keep=2), clock)
    await p.start()
    try:
        root = p.settings.data_dir / "backups"
        made = []
        for _ in range(3):
            made.append(await make_backup(p, "ops"))
            clock.advance(60)
        assert made[0]["pruned"] == made[1]["pruned"] == []
        assert made[2]["pruned"] == [Path(made[0]["path"]).name]
        mine = root / "keep-me"  # not a backup: left alone
        mine.mkdir()
        dead = root / (files.PARTIAL + "backup-20000101T000000.000Z")  # a process died in it
        dead.mkdir()
        fourth = await make_backup(p, "ops")
        assert fourth["pruned"] == [Path(made[1]["path"]).name]
        assert sorted(x.name for x in root.iterdir()) == sorted(
            [files.LOCK, "keep-me", Path(made[2]["path"]).name, Path(fourth["path"]).name]
        )
    finally:
        await p.close()


async def test_a_clean_up_that_fails_keeps_the_backup_and_says_so(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting an old backup failed (a file of another owner): the new one, whole, was
    reported as an error, unaudited, and so was every later one."""
    p = create_platform(make_settings(tmp_path / "k", backup_keep=1), clock)
    await p.start()
    try:
        first = await make_backup(p, "ops")
        clock.advance(60)
        real = shutil.rmtree

        def refused(path: Any, *args: Any, **kwargs: Any) -> None:
            if Path(path) == Path(first["path"]):
                raise PermissionError(13, "Permission denied", str(path))
            real(path, *args, **kwargs)

        monkeypatch.setattr(files.shutil, "rmtree", refused)
        second = await make_backup(p, "ops")
        assert is_dir(second["path"]) and is_dir(first["path"])
        assert second["pruned"] == [Path(first["path"]).name]
        assert "Permission denied" in second["prune_failed"]
        (entry, *_) = await p.db.read(p.registry.list_audit, None, 1)
        assert entry.action == "backup.create" and entry.detail["path"] == second["path"]
    finally:
        await p.close()


async def test_a_backup_to_be_moved_out_prunes_nothing_and_names_an_absolute_path(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--to`` moves the backup out: counting it deleted one backup too many. And a server
    started in another directory named its backup relative to its own."""
    monkeypatch.chdir(tmp_path)
    p = create_platform(make_settings(Path("rel"), backup_keep=1), clock)
    await p.start()
    try:
        kept = await make_backup(p, "ops")
        assert Path(kept["path"]).is_absolute() and is_dir(kept["path"])
        clock.advance(60)
        moving = await make_backup(p, "ops", prune=False)
        assert moving["pruned"] == [] and is_dir(kept["path"])
    finally:
        await p.close()


async def test_no_room_for_the_state_copy_is_storage_full_not_the_state_away(
    source: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's "database or disk is full" from writing the copy read as the state database
    being away: a 503 to retry, for ever, by a scheduled job."""
    real_connect = sqlite3.connect

    class FullTarget:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def backup(self, target: Any) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        def close(self) -> None:
            self.conn.close()

    def connect(database: Any, *args: Any, **kwargs: Any) -> Any:
        conn = real_connect(database, *args, **kwargs)
        return FullTarget(conn) if kwargs.get("uri") else conn  # the source: read by URI

    monkeypatch.setattr(files.sqlite3, "connect", connect)
    with pytest.raises(StorageFull, match="no room left to write a backup"):
        await make_backup(source, "ops")
    root = source.settings.data_dir / "backups"
    assert [x.name for x in root.iterdir()] == [files.LOCK]


async def test_a_backup_of_the_data_directorys_own_is_restored_under_the_backups_lock(
    source: Platform, tmp_path: Path
) -> None:
    """A backup made meanwhile (MINIPORT_BACKUP_KEEP reached) pruned the one being restored
    half-way through its copy."""
    made = await make_backup(source, "ops")
    root = source.settings.data_dir / "backups"
    with files.backup_lock(root), pytest.raises(Conflict, match="being made or restored"):
        restore(source.settings, Path(made["path"]))
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(made["path"], elsewhere)
    server = holding(source.settings.data_dir, lambda: Conflict("a server is running"))
    with files.backup_lock(root), server, pytest.raises(Conflict, match="a server is running"):
        restore(source.settings, elsewhere)  # not one of its own: only the server's lock


async def test_moving_a_backup_needs_an_empty_place(source: Platform, tmp_path: Path) -> None:
    moved_into_an_empty_place(await make_backup(source, "ops"), tmp_path)


def moved_into_an_empty_place(made: dict[str, Any], tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "something").write_text("x")
    with pytest.raises(Conflict, match="not an empty directory; the backup stays at"):
        move_backup(made, taken)
    assert Path(made["path"]).is_dir()
    (tmp_path / "a-file").write_text("x")
    for bad in (tmp_path / "a-file" / "sub", Path("/proc/no-such-place")):
        with pytest.raises(Conflict, match="the backup stays at"):
            move_backup(made, bad)
        assert Path(made["path"]).is_dir()
    moved = move_backup(made, tmp_path / "new" / "place")
    assert Path(moved["path"]).is_dir() and not Path(made["path"]).exists()
    assert (Path(moved["path"]) / "manifest.json").is_file()


@pytest.mark.postgres
async def test_on_postgresql_the_state_is_named_not_copied(
    tmp_path: Path, clock: FakeClock, pg_url: str
) -> None:
    p = create_platform(make_settings(tmp_path / "a", database_url=pg_url), clock)
    await p.start()
    try:
        appid = await setup(p)
        await report_at(p, clock, appid, ["e1"])
        made = await make_backup(p, "ops")
    finally:
        await p.close()
    assert made["state"] == rules.not_copied("postgresql")
    assert "pg_dump" in made["state"]["note"]
    assert sorted(f.name for f in Path(made["path"]).iterdir()) == [  # noqa: ASYNC240
        "events.duckdb", "manifest.json"]
    done = restore(make_settings(tmp_path / "b", database_url=pg_url), Path(made["path"]))
    assert done["files"] == ["events.duckdb"]


@pytest.mark.parametrize("odd", ["data#1", "data%41", "data [x]"])
async def test_a_data_directory_with_uri_characters_in_its_path_is_backed_up_whole(
    tmp_path: Path, clock: FakeClock, odd: str
) -> None:
    """The path went into SQLite's file: URI as it was: '#' cut it short (an empty database was
    opened and backed up, and passed every check), '%41' read as 'A'."""
    p = create_platform(make_settings(tmp_path / odd), clock)
    await p.start()
    try:
        appid = await setup(p)
        made = await make_backup(p, "ops")
    finally:
        await p.close()
    assert made["state"]["version"] == migrate.HEAD
    target = make_settings(tmp_path / "restored")
    restore(target, Path(made["path"]))
    again = create_platform(target, clock)
    try:
        assert [a.appid for a in await again.db.read(again.registry.list_apps)] == [appid]
    finally:
        await again.close()


async def test_a_restore_that_cannot_copy_its_files_leaves_the_data_directory_as_it_was(
    source: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = Path((await make_backup(source, "ops"))["path"])
    target = make_settings(tmp_path / "b")
    restore(target, made)
    before = digests(target.data_dir)
    copies, real_copy = 0, shutil.copyfile

    def disk_full_at_the_second(src: Any, dst: Any) -> None:
        nonlocal copies
        copies += 1
        if copies == 2:
            raise OSError(28, "No space left on device")
        real_copy(src, dst)

    monkeypatch.setattr(files.shutil, "copyfile", disk_full_at_the_second)
    for discard in (False, True):
        copies = 0
        with pytest.raises(OSError, match="No space left"):
            restore(target, made, discard=discard)
        assert digests(target.data_dir) == before  # nothing replaced, nothing left over
        assert not list(target.data_dir.glob("*.restoring"))
        assert not list(target.data_dir.glob("replaced-by-*"))
