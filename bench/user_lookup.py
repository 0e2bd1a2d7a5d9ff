"""Benchmark: one user's events (the support lookup, a page of ``--limit``, newest last) on DuckDB,
against the same lookup written by hand as plain SQL on the same table.

Generates N events (default 10,000,000; ~50k users, so ~200 events each) over 30 days with
bench/report_query.py's generator, then times ``user_events`` (build the SQL, run it, decode
the fields, shape the page) for a first page and an older page (through the cursor), and the
bare ``SELECT ... WHERE appid AND user_id ORDER BY ts_ms DESC LIMIT 101``, interleaved,
``--runs`` each after a warm-up. Wall time and process CPU time (all DuckDB threads) are both
reported: the machine is shared, so CPU seconds are the steadier figure.

    .venv/bin/python bench/user_lookup.py [--events N] [--runs 5] [--limit 100]

The last line printed is a JSON object; the data file lives in a temp dir, deleted at exit.

Measured (2-core VM shared with other jobs, load average ~6.5, 10M events, pages of 100):
engine 0.40 s wall / 0.21 s CPU, an older page 0.24 s, the bare SQL 0.52 s wall / 0.24 s CPU
(ratio bare / engine 1.31, i.e. no overhead beyond noise; the lookup scans the app's
``user_id`` column, there is no per-user index).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "src", ROOT):  # run from a checkout without installing; bench's modules
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
from bench.report_query import APPID, SLOTS, generate  # noqa: E402
from miniport.analytics.event_store import DEFAULT_FILE_NAME, DuckDBEventStore  # noqa: E402

USER = "user-4242"
BARE_SQL = """
SELECT ts_ms, uid, event, page, trigger, action, test_id, visible, i0, s0
FROM events WHERE appid = '{appid}' AND user_id = '{user}' AND ts_ms >= 0
ORDER BY ts_ms DESC, uid DESC LIMIT {limit}
"""


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--limit", type=int, default=100, help="events per page")
    args = parser.parse_args(argv)
    n, runs, limit = args.events, max(1, args.runs), args.limit
    bare_sql = BARE_SQL.format(appid=APPID, user=USER, limit=limit + 1)
    tmp = Path(tempfile.mkdtemp(prefix="miniport-bench-"))
    try:
        store = DuckDBEventStore(tmp / DEFAULT_FILE_NAME)
        try:
            gen_s = generate(store, n)
            print(f"generated {n:,} events in {gen_s:.1f} s", file=sys.stderr)
            first = store.user_events(APPID, USER, SLOTS, limit=limit, before=None, not_before_ms=0)
            assert len(first.events) == limit and first.before, "the user needs > limit events"
            cursor = first.before
            bare_con = duckdb.connect(str(tmp / DEFAULT_FILE_NAME))
            want = bare_con.execute(bare_sql).fetchall()
            assert [e["id"] for e in first.events] == [r[1] for r in reversed(want[:limit])]
            fns: dict[str, Callable[[], object]] = {
                "engine": lambda: store.user_events(
                    APPID, USER, SLOTS, limit=limit, before=None, not_before_ms=0
                ),
                "engine_older": lambda: store.user_events(
                    APPID, USER, SLOTS, limit=limit, before=cursor, not_before_ms=0
                ),
                "bare": lambda: bare_con.execute(bare_sql).fetchall(),
            }
            walls: dict[str, list[float]] = {k: [] for k in fns}
            cpus: dict[str, list[float]] = {k: [] for k in fns}
            for _ in range(runs):
                for name, fn in fns.items():
                    wall, cpu = timed(fn)
                    walls[name].append(wall)
                    cpus[name].append(cpu)
            bare_con.close()
        finally:
            store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    ratio = med["bare"] / med["engine"]
    load = os.getloadavg()[0]
    print(
        f"user lookup, {n:,} events: engine {med['engine']:.3f} s (cpu {cpu['engine']:.3f} s),"
        f" older page {med['engine_older']:.3f} s, bare SQL {med['bare']:.3f} s"
        f" (cpu {cpu['bare']:.3f} s); ratio bare / engine {ratio:.2f}; load {load:.1f}"
    )
    print(
        json.dumps(
            {
                "bench": "user_lookup",
                "events": n,
                "limit": limit,
                "engine_s": round(med["engine"], 4),
                "engine_older_s": round(med["engine_older"], 4),
                "bare_s": round(med["bare"], 4),
                "engine_cpu_s": round(cpu["engine"], 4),
                "bare_cpu_s": round(cpu["bare"], 4),
                "ratio": round(ratio, 3),
                "load_1m": round(load, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
