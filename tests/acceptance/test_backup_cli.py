"""`miniport backup` and `miniport restore` through the real executable, beside a real
`miniport serve`: the backup is made by the server (it holds the events file) while it runs,
the restore waits for it to stop, and the restored data directory serves what was backed up."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.test_cli import miniport, ok
from tests.support.cli import CLEAN_ENV, MINIPORT


@pytest.mark.timeout(300)
async def test_backup_while_serving_then_restore_elsewhere(
    tmp_path: Path, miniport_server: Any
) -> None:
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    appid = (await ok("app", "create", "Shop", data_dir=data))["appid"]
    served = await miniport_server()
    made = await ok("backup", "--to", str(tmp_path / "b1"), data_dir=data)
    assert made["path"] == str(tmp_path / "b1")
    assert (made["state"]["kind"], made["events"]["kind"]) == ("sqlite", "duckdb")
    audit = await ok("change", "audit", data_dir=data)  # made by the server: audited
    (entry,) = [e for e in audit["entries"] if e["action"] == "backup.create"]
    assert entry["actor"] == "key:local-cli"
    assert entry["detail"]["path"].startswith(f"{data}/backups/")

    # at 80 columns, without --json: where it is and what it holds
    shown = await miniport("backup", data_dir=data, env={"COLUMNS": "80"})
    assert shown.code == 0, shown.err
    assert "Backup made at" in shown.out and f"{data}/backups/backup-" in shown.out
    assert "state: miniport.db (sqlite," in shown.out
    assert "events: events.duckdb (duckdb," in shown.out

    refused = await miniport("restore", str(tmp_path / "b1"), "--json", data_dir=data)
    assert refused.code == 1 and refused.json["error"] == "conflict"
    assert "a server is running on" in refused.json["message"]
    served.proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(served.proc.wait(), 30)

    done = await ok("restore", str(tmp_path / "b1"), data_dir=elsewhere)
    assert done["files"] == ["miniport.db", "events.duckdb"]
    listed = await ok("app", "list", data_dir=elsewhere)
    assert [a["appid"] for a in listed["apps"]] == [appid]

    bad = await miniport("restore", str(tmp_path), data_dir=elsewhere)  # not a backup
    assert bad.code == 1 and "holds no manifest.json: not a Miniport backup" in bad.err


async def test_a_restore_waits_for_the_workers_on_sqlite(tmp_path: Path) -> None:
    """A restore replaced the files under a running SQLite worker (it held no lock), whose
    fetches then went on into the deleted database."""
    data = tmp_path / "data"
    await ok("backup", "--to", str(tmp_path / "b"), data_dir=data)
    worker = await asyncio.create_subprocess_exec(
        MINIPORT, "worker", "--data-dir", str(data),
        env={**CLEAN_ENV, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert worker.stdout is not None
        started = await asyncio.wait_for(worker.stdout.readline(), 60)
        assert b"Miniport worker fetching" in started  # its lock is held from before this
        refused = await miniport("restore", str(tmp_path / "b"), data_dir=data)
        assert refused.code == 1 and "a worker is running on" in refused.err, refused
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.communicate(), 60)
    assert worker.returncode == 0
    assert (await ok("restore", str(tmp_path / "b"), data_dir=data))["files"]
