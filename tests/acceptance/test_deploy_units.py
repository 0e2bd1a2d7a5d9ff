"""The systemd units in deploy/ are ones systemd reads without a warning, and their command
lines are ones `miniport` accepts (a renamed flag would otherwise break a deployment at its
next restart, not in CI)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import MINIPORT

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
INSTALLED = "/opt/miniport/.venv/bin/miniport"  # where the units expect the package
UNITS = {"miniport.service": "miniport.service",
         "miniport-worker@.service": "miniport-worker@1.service"}


def exec_start(unit: Path) -> list[str]:
    (line,) = [x for x in unit.read_text().splitlines() if x.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_reads_the_unit_without_a_warning(name: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine (CI has it)")
    text = (DEPLOY / name).read_text()
    assert INSTALLED in text
    # verify checks that the command exists: this test's own executable stands in for it
    (tmp_path / name).write_text(text.replace(INSTALLED, MINIPORT))
    done = subprocess.run([analyze, "verify", UNITS[name]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done


@pytest.mark.parametrize("name", sorted(UNITS))
def test_the_units_command_line_is_one_miniport_accepts(name: str) -> None:
    """Parsed as `miniport` parses it (names and values of every option), without running."""
    argv = exec_start(DEPLOY / name)
    assert argv[0] == INSTALLED
    code = (
        "import sys, typer.main\n"
        "from miniport.cli import main\n"
        "main._register_server_commands()\n"
        "group = typer.main.get_command(main.app)\n"
        "parent = group.make_context('miniport', sys.argv[1:2])\n"
        "command = group.get_command(parent, sys.argv[1])\n"
        "command.make_context(sys.argv[1], sys.argv[2:], parent=parent)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv[1:]], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
