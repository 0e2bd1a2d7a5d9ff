"""What the CLI imports to start: ``miniport --help`` loads none of the heavy modules (web
framework, database, HTTP client, validation, the platform), and a local command loads only
what its operation uses. A behaviour test, read from ``sys.modules`` in a fresh interpreter
(the time it buys is measured in ``bench/cli_start.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY_FOR_HELP = (
    "aiohttp", "asyncio", "duckdb", "fastapi", "starlette", "uvicorn", "sqlalchemy", "pydantic",
    "pydantic_settings", "alembic", "psycopg", "redis", "prometheus_client", "cryptography",
    "argon2", "jinja2", "qrcode", "miniport.platform", "miniport.config",
    "miniport.cli.operations", "miniport.web",
)  # fmt: skip
# a local `app list --json` opens the SQL database (SQLAlchemy), nothing it does not use
# (no table: it prints JSON)
HEAVY_FOR_APP_LIST = (
    "aiohttp", "duckdb", "fastapi", "starlette", "uvicorn", "psycopg", "redis", "jinja2",
    "qrcode", "sqlalchemy.dialects.postgresql", "miniport.web", "miniport.services.analytics",
    "miniport.analytics.definitions", "rich.table",
)  # fmt: skip

PROBE = """
import contextlib, io, json, sys
from miniport.cli.main import main
sys.argv = ["miniport", *json.loads(sys.argv[1])]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
print(json.dumps({"code": code, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def run(argv: list[str], data_dir: Path) -> dict[str, object]:
    """The command's exit code, output and every module loaded, from a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"MINIPORT_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin", "COLUMNS": "100"},
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def loaded(modules: object, names: tuple[str, ...]) -> list[str]:
    assert isinstance(modules, list)
    return sorted(n for n in names if n in modules)


def test_help_imports_no_heavy_module(tmp_path: Path) -> None:
    result = run(["--help"], tmp_path)
    assert result["code"] == 0
    assert "app" in str(result["out"]) and "analytics" in str(result["out"])  # the real help
    assert loaded(result["modules"], HEAVY_FOR_HELP) == []


@pytest.mark.parametrize("group", ["app", "analytics", "fetch-url"])
def test_a_group_help_imports_no_heavy_module(tmp_path: Path, group: str) -> None:
    """Typer converts a subcommand's parameters with pydantic (its own import); nothing else."""
    result = run([group, "--help"], tmp_path)
    assert result["code"] == 0
    assert group in str(result["out"])
    assert loaded(result["modules"], HEAVY_FOR_HELP) in ([], ["pydantic"])


def test_the_probe_sees_a_heavy_import(tmp_path: Path) -> None:
    """The check can fail: a command that does open the platform shows it loaded."""
    result = run(["app", "list", "--json"], tmp_path)
    assert "miniport.platform" in loaded(result["modules"], HEAVY_FOR_HELP)


def test_local_app_list_imports_only_what_it_uses(tmp_path: Path) -> None:
    made = run(["app", "create", "demo", "--json"], tmp_path)
    assert made["code"] == 0
    result = run(["app", "list", "--json"], tmp_path)
    assert result["code"] == 0
    assert [a["name"] for a in json.loads(str(result["out"]))["apps"]] == ["demo"]
    assert loaded(result["modules"], HEAVY_FOR_APP_LIST) == []
