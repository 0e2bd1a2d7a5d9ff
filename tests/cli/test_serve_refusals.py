"""``serve``'s refusals say what is wrong: the events database held by another process only
when DuckDB says its lock is held (a damaged file was "held by another process: wait for
it", for ever), a newer events store in one line, and a port or host that cannot be bound
names the flag at fault (a port beyond 65535 was an OverflowError traceback, a host that does
not resolve said "choose another --port")."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from miniport.analytics.event_store import SCHEMA_VERSION, DuckDBEventStore
from miniport.cli.serve import StartRefused, _open_events, listening
from miniport.platform import create_platform
from tests.conftest import make_settings

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


@pytest.fixture
def events(tmp_path: Path) -> Path:
    return make_settings(tmp_path).events_path


async def refusal(tmp_path: Path) -> str:
    platform = create_platform(make_settings(tmp_path))
    with pytest.raises(StartRefused) as refused:
        await _open_events(platform)  # closes the platform
    return str(refused.value)


@pytest.fixture
def held(events: Path) -> Iterator[None]:
    """The events file open in another process, which holds DuckDB's lock on it."""
    events.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(events)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]


@pytest.fixture
def damaged(events: Path) -> Path:
    events.parent.mkdir(parents=True)
    events.write_bytes(b"\x07not a duckdb file\x00" * 1000)
    return events


async def test_a_damaged_events_file_is_named_damaged_not_held(
    tmp_path: Path, damaged: Path
) -> None:
    events = damaged
    said = await refusal(tmp_path)
    assert "held by another process" not in said and "wait for it" not in said, said
    assert said.startswith(f"the events database {events} is damaged or unreadable: IO Error:")
    assert "not a valid DuckDB database file" in said and "\n" not in said, said


async def test_an_events_file_locked_by_another_process_is_held(
    tmp_path: Path, events: Path, held: None
) -> None:
    said = await refusal(tmp_path)
    assert said == (
        f"the events database {events} is held by another process "
        "(a `miniport` command still running?): wait for it, or stop it"
    )


async def test_an_events_store_a_newer_version_made_is_one_line(
    tmp_path: Path, events: Path
) -> None:
    events.parent.mkdir(parents=True)
    DuckDBEventStore(events).close()
    with duckdb.connect(str(events)) as con:
        con.execute("UPDATE miniport_meta SET value = '99' WHERE key = 'schema_version'")
    said = await refusal(tmp_path)
    assert said == (
        f"the events database {events} is at schema version 99, newer than this version's "
        f"{SCHEMA_VERSION}: run the version that made it"
    )


@pytest.mark.parametrize(("port", "flag"), [(99999, "--port"), (-1, "--demo-port")])
def test_a_port_out_of_range_is_refused_naming_its_flag(port: int, flag: str) -> None:
    with pytest.raises(StartRefused) as refused:
        listening("127.0.0.1", port, "the server", flag)
    assert str(refused.value) == (
        f"cannot listen on 127.0.0.1:{port} for the server (a port is 0 to 65535): "
        f"choose another {flag}"
    )


def test_an_address_not_of_this_machine_names_the_host_not_the_port() -> None:
    with pytest.raises(StartRefused) as refused:
        listening("192.0.2.1", 0, "the server", "--port")  # TEST-NET-1: never a local address
    said = str(refused.value)
    assert said.startswith("cannot listen on 192.0.2.1:0 for the server (")
    assert said.endswith("): --host must be an address of this machine"), said
    assert "--port" not in said, said


class _Unresolved(socket.socket):
    def bind(self, address: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def test_a_host_name_that_does_not_resolve_names_the_host_not_the_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(Not resolved for real: no name lookup leaves the test.)"""
    monkeypatch.setattr(socket, "socket", _Unresolved)
    with pytest.raises(StartRefused) as refused:
        listening("bogus.invalid", 8700, "the server", "--port")
    assert str(refused.value) == (
        "cannot listen on bogus.invalid:8700 for the server (Name or service not known): "
        "give --host an address, or a name that resolves"
    )
