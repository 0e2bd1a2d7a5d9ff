"""Benchmark: the Overview report (and Real time) on DuckDB over 30 days of built-in events.

Generates N events (default 1,000,000) for one app over 30 days (5,000 users, one session
a day each, ~7 events per session; 10% ``$launch``, 40% ``$pageview``, 30% ``$pageleave``
with a duration, 20% a custom event; 20 pages, 3 scenes, 2 platforms) with SQL straight
into the store's table (``DuckDBEventStore.insert_from_query``), then times, interleaved,
after a warm-up:

* ``engine``: ``store.overview`` (build the statements, run them, shape the result),
  by day in Asia/Shanghai, split by ``$platform``;
* ``bare``: the same SQL statements with the same parameters on a plain DuckDB
  connection to the same file (no query object, no shaping): the floor for this SQL;
* ``realtime``: ``store.realtime`` at the end of the 30 days (informative).

Figures: wall seconds (median of ``--runs``) and process CPU seconds (user+sys over all
runs, DuckDB's threads included), ratio = bare / engine (1.0 = no overhead). Report the load
average next to them (printed). The last line is one JSON object.

    .venv/bin/python bench/overview.py [--events N] [--runs 5]

Measured (2-core VM shared with other jobs, load average ~9, DuckDB 2.0.0): 1M events,
by day by ``$platform``: engine median 1.76 s wall / 0.63 CPU s per run, the same SQL bare
1.80 s / 0.63 CPU s (ratio 1.02 wall, 1.00 CPU: the query object and shaping cost nothing
measurable; the time is DuckDB's); real time 0.03 s.

10M events (``--events 10000000``), three runs, load average 5.6 / 4.7 / 4.2 before each:
before the rewrite of three of the statements 3.0 CPU s; after it engine 2.39 / 2.43 /
2.62 s wall (2.45 / 2.41 / 2.49 CPU s per run), the same SQL bare 2.31 / 2.50 / 3.05 s
(2.41 / 2.40 / 2.55 CPU s); the floor, ``count(DISTINCT user_id)`` of the same rows,
0.03-0.07 s (0.04 CPU s: 5,000 users, their ids dictionary-compressed). The issue's target
(under 1 s) is not met: each of the four statements that group by user (per bucket, per
session, per page, per session's last view) is one hash aggregation over millions of rows,
0.4-0.7 CPU s each at 10M. On a quieter machine (load average 2.6 / 1.6 / 1.6 before three
more runs): engine 1.07 / 1.08 / 1.12 s (2.09 / 2.13 / 2.20 CPU s), the same SQL bare
1.06 / 1.10 / 1.15 s, floor 0.02 s: just above the target.

The session figures and the page exits then shared one pass over (user, session) that
aggregates plain numbers, with the exact tie-break by event id done only on the events at a
session's first time (when its group values differ) and at its last view's time (the exits
statement is empty on DuckDB): those two statements 1.25 -> 0.84 CPU s. Six runs at load
average 1.9-3.0 before each: engine 1.08-1.96 s wall (1.64-2.07 CPU s per run), the same SQL
bare 1.09-1.96 s (1.64-2.08 CPU s); the previous SQL in between (load 2.54) 1.91 s (1.99 CPU
s). The two SQL sets alternated in one process on one file (6 runs each, load 2.6): previous
2.51 CPU s median, now 2.08 (-17%). Under 1 s wall needs a quiet machine: the CPU seconds
spread over 2 cores with nothing else running.

Then the event figures, the session figures and the exits became ONE aggregation by (user,
session, bucket, group) (300,000 rows at 10M events) that every one of them is computed from,
the exits' path picked in it (its last view time and top two view times tell when a tie needs
the events re-read); views/visitors and page times two narrower aggregations (page views
alone, page leaves alone). Non-empty statements: 3 (was 4). The two SQL sets alternated in
one process on one file (4 runs each, load average 6.4): previous 2.30 CPU s median, now 1.88
(-18%). Three bench runs at 10M, load average 5.4 / 4.7 / 5.4 before each (the machine shared
with 3-4 other jobs): engine 1.12 / 2.67 / 1.91 s wall (1.87 / 1.86 / 1.82 CPU s per run), the
same SQL bare 1.85 / 3.33 / 3.59 s (1.86 / 1.88 / 1.89 CPU s), floor 0.04-0.06 s. The target
(~1.1 CPU s, so that 2 cores answer under 1 s even when shared) is not met: the one remaining
big aggregation costs ~0.75 CPU s for its keys and plain figures plus ~0.3 for the exit
figures (``max(ts_ms, 2)``, ``arg_max_null``); in DuckDB 2.0 a hash aggregation by several
keys with ~300,000 groups over 10M rows costs ~0.3-0.45 CPU s for the keys alone (one
dictionary-encoded key with 5,000 groups: ~0.04), whatever the keys are packed into (one hash,
an integer code from a join, time slices as separate aggregations: measured, no gain).
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
if str(ROOT / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from bench.common import floor_sql, self_cpu_s  # noqa: E402
from miniport.analytics.event_store import DEFAULT_FILE_NAME, DuckDBEventStore  # noqa: E402
from miniport.analytics.overview import (  # noqa: E402
    OverviewQuery,
    RealtimeQuery,
    compile_overview,
)

APPID = "bench-app"
DAY_MS = 86_400_000
T0 = 1_790_812_800_000  # 2026-10-01T00:00:00Z
SPAN = 30 * DAY_MS
COLUMNS = (
    "appid", "uid", "event", "user_id", "ts_ms", "received_ms", "time_estimated", "visible",
    "sys_platform", "sys_scene", "sys_session", "sys_new_user", "ev_path", "ev_duration_ms",
)  # fmt: skip


def generate(store: DuckDBEventStore, n: int) -> float:
    kinds = "['$launch', '$pageview', '$pageview', '$pageview', '$pageview', '$pageleave', "
    kinds += "'$pageleave', '$pageleave', 'buy', 'buy']"
    select = f"""
        SELECT '{APPID}', 'ev-' || i::VARCHAR, k, 'user-' || u::VARCHAR, ts, ts + 1500, false,
               true, (['ios', 'android'])[1 + (u % 2)::INTEGER],
               ([1001, 1007, 1089])[1 + (hash(u, 8) % 3)::INTEGER],
               's-' || (ts // 86400000)::VARCHAR, hash(u, 9) % 10 = 0,
               CASE WHEN k IN ('$pageview', '$pageleave')
                    THEN 'pages/p' || (hash(i, 4) % 20)::VARCHAR END,
               CASE WHEN k = '$pageleave' THEN (hash(i, 5) % 60000)::BIGINT END
        FROM (SELECT i, {kinds}[1 + (hash(i, 1) % 10)::INTEGER] AS k,
                     hash(i, 2) % 5000 AS u,
                     {T0} + (i * {SPAN} // {n})::BIGINT + (hash(i, 3) % 1000)::BIGINT AS ts
              FROM range({n}) r(i))
    """
    start = time.perf_counter()
    inserted = store.insert_from_query(COLUMNS, select)
    assert inserted == n, inserted
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    n, runs = args.events, max(1, args.runs)
    load_before = os.getloadavg()[0]
    query = OverviewQuery(
        from_ms=T0, to_ms=T0 + SPAN, not_before_ms=0, tz="Asia/Shanghai", group_by="$platform"
    )
    live = RealtimeQuery(now_ms=T0 + SPAN - 1, not_before_ms=0)
    tmp = Path(tempfile.mkdtemp(prefix="miniport-bench-"))
    try:
        store = DuckDBEventStore(tmp / DEFAULT_FILE_NAME)
        try:
            gen_s = generate(store, n)
            print(f"generated {n:,} events in {gen_s:.1f} s", file=sys.stderr)
            compiled = compile_overview(APPID, query, existing_columns=store.columns)
            bare_con = duckdb.connect(str(tmp / DEFAULT_FILE_NAME))

            def bare() -> object:
                return [  # an empty statement (exits within the sessions') answers no rows
                    bare_con.execute(s.sql, list(s.params)).fetchall() if s.sql else []
                    for s in compiled.statements
                ]

            fns: dict[str, Callable[[], object]] = {
                "engine": lambda: store.overview(APPID, query),
                "bare": bare,
                "realtime": lambda: store.realtime(APPID, live),
                "floor": lambda: bare_con.execute(floor_sql(APPID, T0, T0 + SPAN)).fetchall(),
            }
            found = store.overview(APPID, query)
            rows = found["rows"]
            assert isinstance(rows, list) and len(rows) >= 60, len(rows)  # warm-up, and sane
            bare()
            fns["floor"]()
            wall: dict[str, list[float]] = {name: [] for name in fns}
            cpu = dict.fromkeys(fns, 0.0)
            for _ in range(runs):
                for name, fn in fns.items():
                    c0, t0 = self_cpu_s(), time.perf_counter()
                    fn()
                    wall[name].append(time.perf_counter() - t0)
                    cpu[name] += self_cpu_s() - c0
            bare_con.close()
        finally:
            store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    med = {name: statistics.median(times) for name, times in wall.items()}
    ratio = med["bare"] / med["engine"]
    cpu_ratio = cpu["bare"] / cpu["engine"] if cpu["engine"] else 0.0
    load = os.getloadavg()[0]
    print(
        f"overview, {n:,} events / 30 days, by day (Asia/Shanghai) by $platform: engine "
        f"median {med['engine']:.3f} s ({cpu['engine'] / runs:.3f} CPU s/run), same SQL bare "
        f"{med['bare']:.3f} s ({cpu['bare'] / runs:.3f} CPU s/run), ratio bare/engine "
        f"{ratio:.2f} (CPU {cpu_ratio:.2f}); floor (count(DISTINCT user_id) of the same rows) "
        f"{med['floor']:.3f} s ({cpu['floor'] / runs:.3f} CPU s/run); realtime "
        f"{med['realtime']:.3f} s; load average {load_before:.2f} before, {load:.2f} after"
    )
    print(
        json.dumps(
            {
                "bench": "overview",
                "events": n,
                "engine_s": round(med["engine"], 4),
                "bare_s": round(med["bare"], 4),
                "ratio": round(ratio, 3),
                "engine_cpu_s": round(cpu["engine"] / runs, 4),
                "bare_cpu_s": round(cpu["bare"] / runs, 4),
                "cpu_ratio": round(cpu_ratio, 3),
                "floor_s": round(med["floor"], 4),
                "floor_cpu_s": round(cpu["floor"] / runs, 4),
                "realtime_s": round(med["realtime"], 4),
                "generate_s": round(gen_s, 1),
                "load_avg_1m_before": round(load_before, 2),
                "load_avg_1m": round(load, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
