"""Benchmark: what each ClickHouse insert's check against the forgotten users costs.

After every insert that stored rows, a node reads table ``forgotten``'s newest block number
and row count from ``system.parts`` (see ``ClickHouseEventStore._check_forgotten``); only
when they moved (a forget was written somewhere) does it read the table itself. This times
that unchanged read, the common case, against the cheapest round trip (``SELECT 1``) on the
same connection, with 0 and with 10,000 forgotten users in the table: wall time per call
(median, p99), this process's CPU and ClickHouse's (its /proc counters when start.sh's
server runs here: they include whatever else it does meanwhile, so read them beside the load).

    .venv/bin/python bench/forget_check.py [--calls 2000]

Last measured (2 shared cores, 18.16, load 2.4-2.5, 2,000 calls): the check 1.18 ms wall
median (p99 1.7) with no forgotten user and 1.33 ms (p99 2.4) with 10,000, against 0.74-0.78
ms for ``SELECT 1``; per call 0.50-0.58 ms of this process's CPU (``SELECT 1``: 0.49-0.53)
and 0.78-0.92 ms of ClickHouse's (``SELECT 1``: 0.33-0.35). Reading the table instead
(``count()`` and a sum of hashes) cost ClickHouse 0.47 ms empty but 1.07 ms at 10,000 rows,
``system.parts`` 0.75-0.78 ms at both. In ``bench/clickhouse_ingest.py`` (200k events, two
nodes, inserts of ~780 rows) the check is one SELECT per insert (257-258 for 255-256
inserts, 2 before) and ClickHouse's CPU per 1,000 events went from 10.6-11.4 ms to
12.0-12.7 ms (~1 ms per insert); the nodes' (22-24 ms) and the rate (28-37k events/s) moved
within their run-to-run noise. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.clickhouse_ingest import ch_url, clickhouse_pid  # noqa: E402
from bench.common import cpu_s, loadavg, percentile  # noqa: E402
from miniport.analytics.clickhouse_store import ClickHouseEventStore  # noqa: E402
from miniport.analytics.clickhouse_transport import parse_clickhouse_url  # noqa: E402
from miniport.storage.event_keys import EventKeyIndex  # noqa: E402

DATABASE = "miniport_bench_forget"


def timed(call: Callable[[], object], n: int, ch_pid: int | None) -> dict[str, float]:
    """Per call: wall ms (median, p99), this process's CPU ms, ClickHouse's CPU ms."""
    walls: list[float] = []
    cpu0, ch0 = cpu_s(), cpu_s(ch_pid) if ch_pid is not None else 0.0
    for _ in range(n):
        start = time.perf_counter()
        call()
        walls.append((time.perf_counter() - start) * 1000)
    cpu, ch = cpu_s() - cpu0, (cpu_s(ch_pid) - ch0) if ch_pid is not None else float("nan")
    return {
        "wall_ms_median": round(percentile(walls, 50), 3),
        "wall_ms_p99": round(percentile(walls, 99), 3),
        "cpu_ms": round(cpu / n * 1000, 3),
        "clickhouse_cpu_ms": round(ch / n * 1000, 3),
    }


def run(calls: int) -> dict[str, Any]:
    url = ch_url(DATABASE)
    ch_pid = clickhouse_pid(parse_clickhouse_url(url).port)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="miniport-bench-") as tmp:
        keys = EventKeyIndex.open(f"sqlite:///{tmp}/keys.db")
        with ClickHouseEventStore.from_url(url, keys) as store:
            try:
                store._t.execute(f"DROP DATABASE IF EXISTS {DATABASE}", in_database=False)
                store._ready()
                for forgotten in (0, 10_000):
                    store.remember_forgotten(
                        ("bench", f"user-{i}", 1_800_000_000_000 + i) for i in range(forgotten)
                    )
                    assert len(store._forgotten) == forgotten
                    load = loadavg()
                    check = timed(store._read_forgotten, calls, ch_pid)
                    bare = timed(lambda: store._query("SELECT 1"), calls, ch_pid)
                    results[str(forgotten)] = {"check": check, "select_1": bare, "load": load}
            finally:
                store._t.execute(f"DROP DATABASE IF EXISTS {DATABASE}", in_database=False)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)
    results = run(args.calls)
    for forgotten, r in results.items():
        c, b = r["check"], r["select_1"]
        print(
            f"{forgotten} forgotten users: check {c['wall_ms_median']} ms median "
            f"(p99 {c['wall_ms_p99']}), CPU {c['cpu_ms']} ms here + {c['clickhouse_cpu_ms']} ms "
            f"ClickHouse; SELECT 1 {b['wall_ms_median']} ms (p99 {b['wall_ms_p99']}), CPU "
            f"{b['cpu_ms']} + {b['clickhouse_cpu_ms']} ms; load {r['load']:.2f}"
        )
    print(json.dumps({"bench": "forget_check", "calls": args.calls, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
