"""Benchmark: event analysis (PV + UV by day, one string group-by) over 30 days of events on
ClickHouse, against the same SQL run bare.

Generates N events (default 10,000,000) for one app over 30 days (~50k users) inside
ClickHouse (``INSERT ... SELECT`` from ``system.numbers``, into the store's own table), then
times the store's ``event_analysis`` (build the SQL, render the values, run it over HTTP,
parse and shape the rows) and the very SQL it sends, run bare over the same HTTP interface,
interleaved, ``--runs`` each after a warm-up. Target: ratio bare / engine >= 0.8. Also
printed, for information: the same report hand-written WITHOUT the per-event-id dedup (what
exact dedup across nodes costs). 0.1 % of the events are stored twice (listed as repeated, as
two racing nodes leave them), so the dedup has real work.

    .venv/bin/python bench/clickhouse_report.py [--events N] [--runs 5] [--url clickhouse://...]

The URL defaults to $MINIPORT_TEST_CLICKHOUSE_URL (scripts/clickhouse/start.sh's server); the
benchmark uses a database of its own (``miniport_bench``), dropped at exit. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))
from miniport.analytics.clickhouse_store import ClickHouseEventStore  # noqa: E402
from miniport.analytics.clickhouse_transport import (  # noqa: E402
    HttpTransport,
    parse_clickhouse_url,
)
from miniport.analytics.reports import EventQuery, FieldSlots, compile_event_analysis  # noqa: E402
from miniport.analytics.sql_dialects import CLICKHOUSE, render_clickhouse  # noqa: E402
from miniport.storage.event_keys import EventKeyIndex  # noqa: E402

APPID = "bench-app"
DAY_MS = 86_400_000
T0 = 1_790_812_800_000  # 2026-10-01T00:00:00Z
SPAN = 30 * DAY_MS
TZ = "Asia/Shanghai"
SLOTS: FieldSlots = {"price": ("int", 0), "color": ("string", 0)}
DEFAULT_URL = "clickhouse://default:@127.0.0.1:18123/miniport_test"


def generate(store: ClickHouseEventStore, n: int, block: int = 1_000_000) -> float:
    store._ensure_fields(SLOTS)  # the slot columns, as a report would create them
    start = time.perf_counter()
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        store._exec(
            "INSERT INTO events (appid, uid, event, user_id, ts_ms, received_ms, time_estimated,"
            " page, trigger, action, test_id, visible, i0, s0)"
            f" SELECT '{APPID}', concat('ev-', toString(number)),"
            " arrayElement(['view', 'view', 'click', 'buy', 'share'], 1 + intHash32(number) % 5),"
            " concat('user-', toString(intHash64(number * 3 + 1) % 50000)),"
            f" toInt64({T0} + intDiv(number * {SPAN}, {n}) + intHash32(number * 5 + 2) % 1000),"
            f" toInt64({T0} + intDiv(number * {SPAN}, {n}) + 1500), 0,"
            " concat('pages/p', toString(intHash32(number * 7 + 3) % 8)), 'click', NULL, NULL, 1,"
            " toInt32(intHash32(number * 11 + 4) % 10000),"
            " arrayElement(['red', 'green', 'blue', 'black', 'white', 'pink'],"
            "  1 + intHash32(number * 13 + 5) % 6)"
            f" FROM system.numbers WHERE number >= {lo} LIMIT {hi - lo}"
        )
    # 0.1 % of the events sent twice (client retries racing on two nodes): second copies,
    # listed in event_dups as the store lists them, so the report's dedup does real work
    dups = max(1, n // 1000)
    store._exec(
        "INSERT INTO events SELECT * FROM events"
        f" WHERE appid = '{APPID}' AND uid IN (SELECT concat('ev-', toString(number))"
        f" FROM system.numbers LIMIT {dups})"
    )
    store._exec(
        f"INSERT INTO event_dups SELECT '{APPID}', concat('ev-', toString(number))"
        f" FROM system.numbers LIMIT {dups}"
    )
    return time.perf_counter() - start


PLAIN_SQL = f"""
SELECT intDiv(ts_ms + {8 * 3_600_000}, {DAY_MS}) AS day, s0 AS color,
       count() AS pv, uniqExact(user_id) AS uv
FROM events
WHERE appid = '{APPID}' AND event = 'view' AND visible
  AND ts_ms >= {T0} AND ts_ms < {T0 + SPAN}
GROUP BY day, color ORDER BY day, color FORMAT JSONCompact
"""
# the expected rows, each event id once: distinct ids instead of rows (run once, to check)
CHECK_SQL = PLAIN_SQL.replace("count() AS pv", "uniqExact(uid) AS pv")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--url", default=os.environ.get("MINIPORT_TEST_CLICKHOUSE_URL", DEFAULT_URL)
    )
    args = parser.parse_args(argv)
    n, runs = args.events, max(1, args.runs)
    url = args.url.split("?", 1)[0].rsplit("/", 1)[0] + "/miniport_bench"
    transport = HttpTransport(parse_clickhouse_url(url))
    transport.execute("DROP DATABASE IF EXISTS miniport_bench", in_database=False)
    tmp = tempfile.TemporaryDirectory(prefix="miniport-bench-")  # the index of ids
    keys = EventKeyIndex.open(f"sqlite:///{tmp.name}/keys.db")
    store = ClickHouseEventStore(HttpTransport(parse_clickhouse_url(url)), keys)
    try:
        gen_s = generate(store, n)
        print(f"generated {n:,} events in {gen_s:.1f} s", file=sys.stderr)
        query = EventQuery.parse(
            event="view", from_ms=T0, to_ms=T0 + SPAN, not_before_ms=T0,
            metrics=["count", "users"], group_by=["color"], granularity="day", tz=TZ,
        )  # fmt: skip
        compiled = compile_event_analysis(APPID, query, SLOTS, dialect=CLICKHOUSE)
        bare_sql = render_clickhouse(compiled.sql, compiled.params) + " FORMAT JSONCompact"

        def engine() -> object:
            return store.event_analysis(APPID, query, SLOTS)

        def bare() -> object:
            return transport.execute(bare_sql)

        def plain() -> object:
            return transport.execute(PLAIN_SQL)

        got = store.event_analysis(APPID, query, SLOTS)  # warm-up, and both must agree
        want = json.loads(transport.execute(CHECK_SQL))["data"]
        assert len(got) == len(want) >= 30, (len(got), len(want))
        for row, ref in zip(got, want, strict=True):
            assert (row["color"], row["count"], row["users"]) == (ref[1], int(ref[2]), int(ref[3]))
        times: dict[str, list[float]] = {"engine": [], "bare": [], "plain": []}
        fns: dict[str, Callable[[], object]] = {"engine": engine, "bare": bare, "plain": plain}
        for _ in range(runs):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    finally:
        store.close()
        tmp.cleanup()
        transport.execute("DROP DATABASE IF EXISTS miniport_bench", in_database=False)
        transport.close()

    med = {name: statistics.median(values) for name, values in times.items()}
    ratio = med["bare"] / med["engine"]
    print(
        f"ClickHouse event analysis, {n:,} events / 30 days, PV+UV by day by color: engine "
        f"median {med['engine']:.3f} s, same SQL bare {med['bare']:.3f} s, ratio "
        f"{ratio:.2f} [target >= 0.8]; without dedup per event id {med['plain']:.3f} s"
    )
    print(
        json.dumps(
            {
                "bench": "clickhouse_report",
                "events": n,
                "engine_s": round(med["engine"], 4),
                "bare_s": round(med["bare"], 4),
                "no_dedup_s": round(med["plain"], 4),
                "ratio": round(ratio, 3),
                "generate_s": round(gen_s, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
