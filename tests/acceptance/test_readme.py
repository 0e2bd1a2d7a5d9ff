"""The README's commands work as written: the "Trying it" block puts `miniport` on the PATH
before its first bare `miniport`, and every command it lists exists."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.cli import run_cli

README = Path(__file__).parents[2] / "README.md"


def _trying_it() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Trying it"):]
    block = section[section.index("```bash") + 7:]
    return [line.split("#")[0].strip() for line in block[:block.index("```")].splitlines()]


async def test_the_trying_it_block_works_as_written() -> None:
    lines = [line for line in _trying_it() if line]
    first = next(i for i, line in enumerate(lines) if line.startswith("miniport "))
    assert any(re.fullmatch(r"(source|\.) \.venv/bin/activate", line) for line in lines[:first])
    for line in lines[first:]:
        words = [w for w in line.split()[1:3] if re.fullmatch(r"[a-z-]+", w)]
        shown = await run_cli(*words, "--help")
        assert shown.code == 0, (line, shown)
