"""Running the real ``miniport`` executable from a test, without blocking the event loop (the
loopback developer servers of a test live in it)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


async def run_cli(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
    """``miniport ARGV…`` with no MINIPORT_* variable from the caller's environment but ``env``."""
    proc = await asyncio.create_subprocess_exec(
        MINIPORT, *argv, env={**CLEAN_ENV, **(env or {})}, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return Result(proc.returncode or 0, out.decode(), err.decode())
