"""Benchmark: what system properties cost the DuckDB append hot path.

Three runs in one process, each into a fresh file, ``--rows`` rows in ``append`` calls of
``--batch`` rows (``StoredEvent`` objects built beforehand, as the service does):

* ``bare``: rows with 1 int + 1 string field (the baseline: what a custom event cost before);
* ``context``: the same rows plus a full runtime context (13 system properties and the
  derived ``$new_user``: 14 more columns, created on first use);
* ``pageview``: built-in ``$pageview`` rows with their data (path, query, referrer) and the
  context.

Figures: process CPU seconds (user+sys, ``resource.getrusage``: DuckDB's own threads
included) and wall seconds per run, rows/s, and the ratio of each run's CPU per row to the
bare run's. Last line: one JSON object.

    .venv/bin/python bench/system_columns.py [--rows 200000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
from bench.common import self_cpu_s  # noqa: E402
from miniport.analytics.event_store import DuckDBEventStore, StoredEvent  # noqa: E402

T0 = 1_800_000_000_000
CONTEXT: dict[str, object] = {
    "sys_platform": "ios",
    "sys_os_version": "17.2",
    "sys_brand": "Apple",
    "sys_model": "iPhone 15",
    "sys_host_version": "8.0.50",
    "sys_mp_version": "1.2.0",
    "sys_env": "release",
    "sys_sdk_version": "0.9.0",
    "sys_network": "wifi",
    "sys_scene": 1001,
    "sys_language": "zh_CN",
    "sys_screen": "393x852",
    "sys_session": "s-1",
    "sys_new_user": False,
}


def rows(kind: str, n: int) -> list[StoredEvent]:
    out = []
    for i in range(n):
        extra: dict[str, object] = {}
        event, ints, strs = "purchase", {0: i % 1000}, {0: "red"}
        if kind != "bare":
            extra = {**CONTEXT, "sys_session": f"s-{i // 50}"}
        if kind == "pageview":
            event, ints, strs = "$pageview", {}, {}
            extra.update(ev_path=f"pages/p{i % 20}/index", ev_query="id=1", ev_referrer="")
        row = StoredEvent(
            "bench", f"e{i}", event, f"u{i % 5000}", T0 + i, T0 + i, False,
            None, None, None, ints, strs, None, extra,
        )  # fmt: skip
        out.append(row)
    return out


def run(kind: str, n: int, batch: int, tmp: Path) -> dict[str, float]:
    data = rows(kind, n)
    with DuckDBEventStore(tmp / f"{kind}.duckdb") as store:
        store.append(data[:batch])  # columns created, appender made: not what is measured
        cpu, wall = self_cpu_s(), time.perf_counter()
        for start in range(batch, n, batch):
            store.append(data[start : start + batch])
        cpu, wall = self_cpu_s() - cpu, time.perf_counter() - wall
        assert store.count("bench") == n
    measured = n - batch
    return {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "rows_per_s": round(measured / wall)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    results: dict[str, object] = {"rows": args.rows, "batch": args.batch}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("bare", "context", "pageview"):
            results[kind] = run(kind, args.rows, args.batch, Path(tmp))
            print(kind, results[kind], file=sys.stderr)
    bare = results["bare"]
    assert isinstance(bare, dict)
    for kind in ("context", "pageview"):
        figures = results[kind]
        assert isinstance(figures, dict)
        figures["cpu_ratio_vs_bare"] = round(figures["cpu_s"] / bare["cpu_s"], 2)
    results["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
