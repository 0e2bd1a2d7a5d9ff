"""Running the real ``miniport`` executable from a test, without blocking the event loop (the
loopback developer servers of a test live in it): ``run_cli`` for one command, the ``serve``
fixture for a `miniport serve` subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import free_port
from tests.support.platforms import eventually

MINIPORT = str(Path(sys.executable).parent / "miniport")
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("MINIPORT_")}


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        lines = [line for line in self.out.splitlines() if line.strip()]
        assert len(lines) == 1, (self.out, self.err)  # --json prints one JSON object
        return json.loads(lines[0])


async def together(*calls: Any) -> list[Any]:
    """Independent commands side by side, a few at a time (their answers in order)."""
    slots = asyncio.Semaphore(3)

    async def one(call: Any) -> Any:
        async with slots:
            return await call

    return list(await asyncio.gather(*(one(c) for c in calls)))


async def run_cli(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
    """``miniport ARGV…`` with no MINIPORT_* variable from the caller's environment but ``env``."""
    proc = await asyncio.create_subprocess_exec(
        MINIPORT, *argv, env={**CLEAN_ENV, **(env or {})}, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return Result(proc.returncode or 0, out.decode(), err.decode())


@dataclass
class Served:
    url: str
    proc: asyncio.subprocess.Process
    lines: list[str]


async def _pump(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode())


@pytest.fixture
async def miniport_server(tmp_path: Path) -> AsyncIterator[Any]:
    """``served = await miniport_server("--dev")``: `miniport serve` as a subprocess on a free
    port, on the data directory ``tmp_path / "data"`` (the ``data`` of the CLI tests)."""
    data = tmp_path / "data"
    started: list[tuple[Served, list[asyncio.Task[None]]]] = []

    async def start(*flags: str) -> Served:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            MINIPORT, "serve", "--port", str(port), "--data-dir", str(data), *flags,
            env={**CLEAN_ENV, "COLUMNS": "400"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        lines: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [asyncio.create_task(_pump(proc.stdout, lines)),
                 asyncio.create_task(_pump(proc.stderr, lines))]
        served = Served(f"http://127.0.0.1:{port}", proc, lines)
        started.append((served, pumps))

        async def healthy() -> bool:
            assert proc.returncode is None, "".join(lines)
            try:
                async with aiohttp.ClientSession() as s, s.get(served.url + "/healthz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(healthy, timeout_s=30)
        return served

    try:
        yield start
    finally:
        for served, pumps in started:
            if served.proc.returncode is None:
                served.proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(served.proc.wait(), 30)
            await asyncio.gather(*pumps)
        for served, _ in started:  # a stop says nothing alarming (native modules' leak lists)
            said = "".join(served.lines)
            assert "leaked" not in said and "Traceback" not in said, said[-3000:]


