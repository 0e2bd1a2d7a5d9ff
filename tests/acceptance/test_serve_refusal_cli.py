"""The real executable on what the CLI wiring must turn into one line: a state database a newer
version made (every command and ``serve`` ended in Alembic's traceback), a port beyond
0-65535 (an OverflowError traceback), and a ``server.json`` whose pid another process now has
(every command refused, for good)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import text

from miniport.config import Settings
from miniport.storage import migrate
from miniport.storage.db import make_engine
from tests.acceptance.test_cli import miniport, ok
from tests.acceptance.test_serve import refused_once, serve_once
from tests.conftest import free_port
from tests.support.cli import together

NEWER = f"{int(migrate.HEAD) + 1:04d}"


async def test_a_state_database_a_newer_version_made_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    engine = make_engine(Settings(data_dir=data).state_url)
    migrate.upgrade(engine)  # as this version made it, then as a newer one left it
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": NEWER})
    engine.dispose()
    said = (
        f"error: the state database is at revision {NEWER}, newer than this version's "
        f"{migrate.HEAD}: run the version that made it"
    )
    served, listed, as_json = await together(
        serve_once("--port", str(free_port()), "--data-dir", str(data)),
        miniport("app", "list", data_dir=data, env={"COLUMNS": "80"}),
        miniport("app", "list", "--json", data_dir=data),
    )
    refused_once(served, NEWER)
    assert " ".join(served.err.split()) == said, served
    assert listed.code == 1 and " ".join(listed.err.split()) == said, listed
    assert as_json.code == 1 and as_json.json["error"] == "schema_too_new", as_json
    assert not (data / "server.json").exists()


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (("--port", "99999"), "--port"),
        (("--port", "-1"), "--port"),
        (("--demo", "--demo-port", "70000"), "--demo-port"),
    ],
)
async def test_a_port_beyond_0_to_65535_is_a_usage_error(
    tmp_path: Path, argv: tuple[str, ...], flag: str
) -> None:
    result = await serve_once(*argv, "--data-dir", str(tmp_path / "d"))
    assert result.code == 2 and "Traceback" not in result.err, result
    assert f"Invalid value for '{flag}'" in result.err, result
    bound = "less than or equal to 65535" if argv[-1] != "-1" else "greater than or equal to 0"
    assert bound in result.err, result
    assert max(len(line) for line in result.err.splitlines()) <= 80, result
    assert not (tmp_path / "d").exists()


async def test_a_server_json_whose_pid_lives_on_in_another_process_is_ignored(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    stale = {"url": f"http://127.0.0.1:{free_port()}", "pid": os.getpid(), "admin_key": "k"}
    (data / "server.json").write_text(json.dumps(stale))  # the pid: this test's, alive
    assert (await ok("app", "list", data_dir=data))["apps"] == []
