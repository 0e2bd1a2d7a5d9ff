"""A ``server.json`` whose pid now belongs to another process (the server killed, the pid
reused) blocked every command for good: "a server (pid N) is registered … but does not
answer". ``serve`` holds the data directory's lock (``serve.lock``) while it runs, so a lock
that can be taken says no server runs there, whatever process has that pid now."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from miniport.cli import backend
from miniport.cli.backend import running_server
from miniport.errors import ServerNotRunning
from miniport.storage.data_dir import holding


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


def _register(data: Path, pid: int) -> None:
    data.mkdir(parents=True, exist_ok=True)
    info = {"url": f"http://127.0.0.1:{_closed_port()}", "pid": pid, "admin_key": "k"}
    (data / "server.json").write_text(json.dumps(info))


def test_a_server_json_whose_pid_is_reused_is_ignored_when_no_server_holds_the_lock(
    tmp_path: Path,
) -> None:
    _register(tmp_path, os.getpid())  # alive (this test's process), not a server
    assert running_server(tmp_path) is None


def test_what_answers_at_a_stale_address_is_not_taken_for_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def answers(url: str) -> bool:  # another program now listens at the old address
        return True

    monkeypatch.setattr(backend, "_answers", answers)
    _register(tmp_path, os.getpid())
    assert running_server(tmp_path) is None


def test_a_server_holding_the_lock_but_not_answering_is_still_an_error(tmp_path: Path) -> None:
    _register(tmp_path, os.getpid())
    with (
        holding(tmp_path, lambda: AssertionError("the lock was free")),
        pytest.raises(ServerNotRunning, match="does not answer; wait for it or stop it"),
    ):
        running_server(tmp_path)
    assert running_server(tmp_path) is None  # the lock released: no server
