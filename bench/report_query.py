"""Benchmark: event analysis (PV + UV by day, one string group-by) over 30 days of events.

Generates N events (default 10,000,000) for one app over 30 days (~50k users, 4 event names,
an int and a string field) with SQL straight into the store's own table (through
``DuckDBEventStore.insert_from_query``, so the layout and the primary key are the store's),
then times the report engine (``event_analysis``: build the SQL, run it, shape the rows) and
the same query written by hand as plain SQL on the same table, interleaved, 5 runs each
after a warm-up. The target (SPEC section 7): engine under 1 s for 10M events; the ratio
hand-written time / engine time at least 0.8.

    .venv/bin/python bench/report_query.py [--events N] [--runs 5]

The last line printed is a JSON object; the data file lives in a temp dir, deleted at exit.
"""

from __future__ import annotations

import argparse
import json
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
from miniport.analytics.event_store import DEFAULT_FILE_NAME, DuckDBEventStore  # noqa: E402
from miniport.analytics.reports import EventQuery, FieldSlots  # noqa: E402

APPID = "bench-app"
DAY_MS = 86_400_000
T0 = 1_790_812_800_000  # 2026-10-01T00:00:00Z
SPAN = 30 * DAY_MS
TZ = "Asia/Shanghai"
TZ_OFFSET_MS = 8 * 3_600_000
SLOTS: FieldSlots = {"price": ("int", 0), "color": ("string", 0)}
COLUMNS = (
    "appid",
    "uid",
    "event",
    "user_id",
    "ts_ms",
    "received_ms",
    "time_estimated",
    "page",
    "trigger",
    "visible",
    "i0",
    "s0",
)


def generate(store: DuckDBEventStore, n: int) -> float:
    """Insert ``n`` events in time order (as they arrive), random users/events/values."""
    select = f"""
        SELECT '{APPID}', 'ev-' || i::VARCHAR,
               (['view', 'view', 'click', 'buy', 'share'])[1 + (hash(i, 1) % 5)::INTEGER],
               'user-' || (hash(i, 2) % 50000)::VARCHAR,
               {T0} + (i * {SPAN} // {n})::BIGINT + (hash(i, 3) % 1000)::BIGINT AS ts,
               {T0} + (i * {SPAN} // {n})::BIGINT + 1500,
               false,
               'pages/p' || (hash(i, 4) % 8)::VARCHAR,
               'click',
               true,
               (hash(i, 5) % 10000)::INTEGER,
               (['red', 'green', 'blue', 'black', 'white', 'pink'])[1 + (hash(i, 6) % 6)::INTEGER]
        FROM range({n}) r(i)
    """
    start = time.perf_counter()
    inserted = store.insert_from_query(COLUMNS, select)
    assert inserted == n, inserted
    return time.perf_counter() - start


BARE_SQL = f"""
SELECT (ts_ms + {TZ_OFFSET_MS}) // {DAY_MS} AS day, s0 AS color,
       count(*) AS pv, count(DISTINCT user_id) AS uv
FROM events
WHERE appid = '{APPID}' AND event = 'view' AND visible
  AND ts_ms >= {T0} AND ts_ms < {T0 + SPAN}
GROUP BY 1, 2
ORDER BY 1, 2
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    n, runs = args.events, max(1, args.runs)

    tmp = Path(tempfile.mkdtemp(prefix="miniport-bench-"))
    try:
        store = DuckDBEventStore(tmp / DEFAULT_FILE_NAME)
        try:
            gen_s = generate(store, n)
            print(f"generated {n:,} events in {gen_s:.1f} s", file=sys.stderr)
            query = EventQuery.parse(
                event="view",
                from_ms=T0,
                to_ms=T0 + SPAN,
                not_before_ms=T0,
                metrics=["count", "users"],
                group_by=["color"],
                granularity="day",
                tz=TZ,
            )

            def engine() -> list[dict[str, object]]:
                return store.event_analysis(APPID, query, SLOTS)

            # the same database file, a plain DuckDB connection (shares the open instance)
            bare_con = duckdb.connect(str(tmp / DEFAULT_FILE_NAME))

            def bare() -> list[tuple[object, ...]]:
                return bare_con.execute(BARE_SQL).fetchall()

            got, want = engine(), bare()  # warm-up, and both must agree
            assert len(got) == len(want) and len(got) >= 30, (len(got), len(want))
            for row, ref in zip(got, want, strict=True):
                assert (row["color"], row["count"], row["users"]) == ref[1:], (row, ref)

            times: dict[str, list[float]] = {"engine": [], "bare": []}
            fns: dict[str, Callable[[], object]] = {"engine": engine, "bare": bare}
            for _ in range(runs):
                for name, fn in fns.items():
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
            bare_con.close()
        finally:
            store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    engine_best, bare_best = min(times["engine"]), min(times["bare"])
    engine_med = statistics.median(times["engine"])
    bare_med = statistics.median(times["bare"])
    ratio = bare_med / engine_med
    print(
        f"event analysis, {n:,} events / 30 days, PV+UV by day by color: "
        f"engine best {engine_best:.3f} s median {engine_med:.3f} s; "
        f"hand-written SQL best {bare_best:.3f} s median {bare_med:.3f} s; "
        f"ratio (hand-written / engine, medians) {ratio:.2f} "
        f"[target: engine < 1 s, ratio >= 0.8]"
    )
    print(
        json.dumps(
            {
                "bench": "report_query",
                "events": n,
                "engine_s": round(engine_med, 4),
                "engine_best_s": round(engine_best, 4),
                "bare_s": round(bare_med, 4),
                "bare_best_s": round(bare_best, 4),
                "ratio": round(ratio, 3),
                "generate_s": round(gen_s, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
