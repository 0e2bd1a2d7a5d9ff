"""Benchmark: retention with 30 daily periods over 30 days of events (DuckDB store).

Generates N events (default 1,000,000; ~50k users, 5 event names) for one app over 30 days
straight into the store's table (``DuckDBEventStore.insert_from_query``), then times, 5 runs
each after a warm-up, interleaved:

* ``engine``: ``store.retention`` (build the SQL, run it, shape the cohort rows) for
  start ``view``, return ``buy``, 30 periods, by day in Asia/Shanghai;
* ``compiled``: the SQL the engine builds, run bare on a plain DuckDB connection (what the
  store adds around it);
* ``bare``: the same report written by hand as plain SQL (fixed UTC+8 offset, no
  parameters), checked to give the same counts.

Reports medians of wall time and of process CPU seconds (``resource.getrusage``: DuckDB's
threads included), and the ratios bare / engine, and the floor: ``count(DISTINCT user_id)``
of the same rows. Issue 12 asks for under 1 s on 10M events: run with ``--events 10000000``
for that figure. Measured on the shared 2-core VM: the former SQL (a join of every start
period of a user with every return period, the hand-written query below) took 2.27 s
(2.36 CPU s) at 10M; the engine now makes one pass per (user, period) and reads return
periods off 32-period bit masks: three runs at load average 6.3 / 5.3 / 4.6: engine
1.32 / 1.49 / 1.43 s (1.44 / 1.42 / 1.44 CPU s), its SQL bare 1.32 / 1.98 / 1.72 s
(1.43 / 1.46 / 1.52 CPU s), hand-written 1.99 / 2.84 / 2.69 s (2.32 / 2.32 / 2.36 CPU s),
floor 0.34 / 0.48 / 0.47 s (0.39 / 0.43 / 0.44 CPU s). Not under 1 s: the one pass
(a hash aggregation of the 6M start and return events into 1.5M (user, day) groups) is
~0.8 CPU s by itself. On a quieter machine (load average 3.2 / 2.1 / 1.9 before three more
runs) the wall time is under 1 s: engine 0.626 / 0.623 / 0.623 s (1.22 / 1.21 / 1.22 CPU s),
its SQL bare 0.622 / 0.619 / 0.638 s, hand-written 1.08 / 1.06 / 1.05 s, floor 0.15 s
(0.29 CPU s): the CPU seconds are what to compare across loads.

    .venv/bin/python bench/retention.py [--events N] [--runs 5]

The last line printed is a JSON object; the data file lives in a temp dir, deleted at exit.
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
from miniport.analytics.retention import (  # noqa: E402
    RetentionQuery,
    compile_retention,
    period_label,
)

APPID = "bench-app"
DAY_MS = 86_400_000
T0 = 1_790_812_800_000  # 2026-10-01T00:00:00Z
SPAN = 30 * DAY_MS
TZ = "Asia/Shanghai"
TZ_OFFSET_MS = 8 * 3_600_000
PERIODS = 30
COLUMNS = ("appid", "uid", "event", "user_id", "ts_ms", "received_ms", "time_estimated",
           "page", "trigger", "visible")  # fmt: skip


def generate(store: DuckDBEventStore, n: int) -> float:
    select = f"""
        SELECT '{APPID}', 'ev-' || i::VARCHAR,
               (['view', 'view', 'click', 'buy', 'share'])[1 + (hash(i, 1) % 5)::INTEGER],
               'user-' || (hash(i, 2) % 50000)::VARCHAR,
               {T0} + (i * {SPAN} // {n})::BIGINT + (hash(i, 3) % 1000)::BIGINT,
               {T0} + (i * {SPAN} // {n})::BIGINT + 1500,
               false, 'pages/p' || (hash(i, 4) % 8)::VARCHAR, 'click', true
        FROM range({n}) r(i)
    """
    start = time.perf_counter()
    assert store.insert_from_query(COLUMNS, select) == n
    return time.perf_counter() - start


BARE_SQL = f"""
WITH ev AS (
    SELECT user_id, ts_ms, event, (ts_ms + {TZ_OFFSET_MS}) // {DAY_MS} AS p FROM events
    WHERE appid = '{APPID}' AND visible AND ts_ms >= {T0} AND ts_ms < {T0 + SPAN}),
s AS (SELECT user_id, p, min(ts_ms) AS t0 FROM ev WHERE event = 'view' GROUP BY 1, 2),
r AS (SELECT user_id, p AS rp, max(ts_ms) AS tmax FROM ev WHERE event = 'buy' GROUP BY 1, 2)
SELECT s.p, r.rp - s.p AS k, count(*) FROM s JOIN r
  ON r.user_id = s.user_id AND r.rp >= s.p AND r.rp <= s.p + {PERIODS}
  AND (r.rp > s.p OR r.tmax >= s.t0) GROUP BY 1, 2
UNION ALL SELECT p, -1, count(*) FROM s GROUP BY 1
"""


def check(got: list[dict[str, object]], bare_rows: list[tuple[object, ...]]) -> None:
    want: dict[tuple[str, int], int] = {}
    for p, k, n in bare_rows:
        assert isinstance(p, int) and isinstance(k, int) and isinstance(n, int)
        # the bench's epoch-day numbers -> the module's labels (shifted day numbers)
        label = period_label(p + 100_000, "day")
        want[(label, k)] = n
    assert len(got) == len({label for label, _ in want}) >= PERIODS, len(got)
    for row in got:
        cohort, retained = str(row["cohort"]), row["retained"]
        assert isinstance(retained, list)
        assert row["size"] == want[(cohort, -1)], row
        assert retained == [want.get((cohort, k), 0) for k in range(len(retained))], row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    n, runs = args.events, max(1, args.runs)
    query = RetentionQuery(start="view", returning="buy", periods=PERIODS, unit="day", tz=TZ,
                           from_ms=T0, to_ms=T0 + SPAN, not_before_ms=T0)  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="miniport-bench-"))
    names = ("engine", "compiled", "bare", "floor")
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    load_before = os.getloadavg()[0]
    try:
        store = DuckDBEventStore(tmp / DEFAULT_FILE_NAME)
        try:
            gen_s = generate(store, n)
            print(f"generated {n:,} events in {gen_s:.1f} s", file=sys.stderr)
            compiled = compile_retention(APPID, query, {})
            con = duckdb.connect(str(tmp / DEFAULT_FILE_NAME))
            fns: dict[str, Callable[[], object]] = {
                "engine": lambda: store.retention(APPID, query, {}),
                "compiled": lambda: con.execute(compiled.sql, list(compiled.params)).fetchall(),
                "bare": lambda: con.execute(BARE_SQL).fetchall(),
                "floor": lambda: con.execute(floor_sql(APPID, T0, T0 + SPAN)).fetchall(),
            }
            fns["floor"]()
            got = store.retention(APPID, query, {})  # warm-up, and all must agree
            check(got, con.execute(BARE_SQL).fetchall())
            raw = con.execute(compiled.sql, list(compiled.params)).fetchall()
            assert compiled.shape(raw) == got
            for _ in range(runs):
                for name, fn in fns.items():
                    c0, t0 = self_cpu_s(), time.perf_counter()
                    fn()
                    wall[name].append(time.perf_counter() - t0)
                    cpu[name].append(self_cpu_s() - c0)
            con.close()
        finally:
            store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in wall.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    load = os.getloadavg()[0]
    print(
        f"retention, {n:,} events / 30 days, 30 daily periods: engine {med['engine']:.3f} s "
        f"({cpu_med['engine']:.3f} CPU s), its SQL bare {med['compiled']:.3f} s, hand-written "
        f"{med['bare']:.3f} s ({cpu_med['bare']:.3f} CPU s); floor (count(DISTINCT user_id) of "
        f"the same rows) {med['floor']:.3f} s ({cpu_med['floor']:.3f} CPU s); load average "
        f"{load_before:.2f} before, {load:.2f} after"
    )
    print(
        json.dumps(
            {
                "bench": "retention",
                "events": n,
                "periods": PERIODS,
                "engine_s": round(med["engine"], 4),
                "compiled_bare_s": round(med["compiled"], 4),
                "bare_s": round(med["bare"], 4),
                "engine_cpu_s": round(cpu_med["engine"], 4),
                "compiled_bare_cpu_s": round(cpu_med["compiled"], 4),
                "bare_cpu_s": round(cpu_med["bare"], 4),
                "ratio": round(med["bare"] / med["engine"], 3),
                "cpu_ratio": round(cpu_med["bare"] / cpu_med["engine"], 3),
                "compiled_ratio": round(med["compiled"] / med["engine"], 3),
                "compiled_cpu_ratio": round(cpu_med["compiled"] / cpu_med["engine"], 3),
                "floor_s": round(med["floor"], 4),
                "floor_cpu_s": round(cpu_med["floor"], 4),
                "load_avg_1m_before": round(load_before, 2),
                "load_avg_1m": round(load, 2),
                "generate_s": round(gen_s, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
