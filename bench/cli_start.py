"""How long the ``miniport`` command takes to start: ``miniport --help`` and a local command
(``miniport app list --json`` on a data directory with no server running), each run N times
in a fresh process, against a bare ``python -c pass`` run as many times in the same run.

    python bench/cli_start.py [--runs 15] [--src OTHER/src]

The children run with the bytecode cache on (``PYTHONDONTWRITEBYTECODE`` dropped), as an
installed CLI does (pip compiles it at install; a checkout writes it at its first run): compiling
the platform's sources at every start would otherwise be ~0.1 s of each figure. ``--src`` runs
another checkout's sources (e.g. the main branch's, to compare) with this interpreter.

Figures per command: the median wall time and the median CPU seconds (user + system of the
child, from the kernel's own counters: they do not depend on how busy the neighbours are), and
the median wall time minus the bare interpreter's (what the CLI itself adds). Targets:
``--help`` <= 0.25 s, the local command <= 0.4 s. Last line: JSON."""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import loadavg  # noqa: E402

TARGETS = {"help": 0.25, "app_list": 0.4}


def one_run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(commands: dict[str, list[str]], runs: int, env: dict[str, str]) -> dict[str, Any]:
    """Each command ``runs`` times, interleaved (one of each in turn), so that a noisy second
    falls on all of them alike; one warm-up run each first (the bytecode cache)."""
    for argv in commands.values():
        one_run(argv, env)
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            wall, cpu = one_run(argv, env)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return {
        name: {
            "wall_s": round(statistics.median(walls[name]), 4),
            "cpu_s": round(statistics.median(cpus[name]), 4),
            "wall_min_s": round(min(walls[name]), 4),
        }
        for name in commands
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--src", type=Path, help="a checkout's src directory to run instead")
    args = parser.parse_args()
    exe = Path(sys.executable)
    miniport = str(exe.parent / "miniport")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        env = {**os.environ, "MINIPORT_DATA_DIR": str(data_dir)}
        env.pop("MINIPORT_DATABASE_URL", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        if args.src is not None:
            env["PYTHONPATH"] = str(args.src.resolve())
        subprocess.run([miniport, "app", "create", "bench", "--json"], env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        commands = {
            "bare": [str(exe), "-c", "pass"],
            "help": [miniport, "--help"],
            "app_list": [miniport, "app", "list", "--json"],
        }
        load = loadavg()
        figures = measure(commands, args.runs, env)
    bare = figures["bare"]["wall_s"]
    result: dict[str, Any] = {"bench": "cli_start", "runs": args.runs, "loadavg": load}
    if args.src is not None:
        result["src"] = str(args.src)
    for name in ("bare", "help", "app_list"):
        f = figures[name]
        line = f"{name:9} median {f['wall_s'] * 1000:7.1f} ms wall  {f['cpu_s'] * 1000:7.1f} ms CPU"
        if name != "bare":
            f["over_bare_s"] = round(f["wall_s"] - bare, 4)
            f["ratio_to_bare"] = round(f["wall_s"] / bare, 2)
            f["target_s"] = TARGETS[name]
            f["within_target"] = f["wall_s"] <= TARGETS[name]
            line += f"  (bare + {f['over_bare_s'] * 1000:.0f} ms, {f['ratio_to_bare']}x bare,"
            line += f" target {TARGETS[name]} s)"
        print(line)
        result[name] = f
    print(f"load average before: {load}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
