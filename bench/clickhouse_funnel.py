"""Benchmark: a 5-step funnel with a 1-hour window over 30 days of events on ClickHouse,
against the same SQL run bare.

Generates N events (default 1,000,000) for one app over 30 days (10,000 users active in
bursts, as ``bench/funnel.py``) inside ClickHouse (``INSERT ... SELECT`` from
``system.numbers`` into the store's own table), then times the store's ``funnel`` (build the
SQL, render the values, run it over HTTP, parse and shape the rows) and the very SQL it
sends, run bare over the same HTTP interface, interleaved, ``--runs`` each after a warm-up,
for strict and any order. Wall seconds (the work is in the server's process); the load
average is printed with the figures.

    .venv/bin/python bench/clickhouse_funnel.py [--events N] [--runs 5] [--url clickhouse://...]

The URL defaults to $MINIPORT_TEST_CLICKHOUSE_URL (scripts/clickhouse/start.sh's server); the
benchmark uses a database of its own (``miniport_bench_funnel``), dropped at exit. Last line:
JSON.
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
from miniport.analytics.reports import FieldSlots, FunnelQuery, compile_funnel  # noqa: E402
from miniport.analytics.sql_dialects import CLICKHOUSE, render_clickhouse  # noqa: E402
from miniport.storage.event_keys import EventKeyIndex  # noqa: E402

APPID = "bench-app"
DAY_MS = 86_400_000
T0 = 1_790_812_800_000  # 2026-10-01T00:00:00Z
SPAN = 30 * DAY_MS
SLOTS: FieldSlots = {"price": ("int", 0), "color": ("string", 0)}
DEFAULT_URL = "clickhouse://default:@127.0.0.1:18123/miniport_test"
STEPS: list[tuple[str, list[str]]] = [
    ("view", []),
    ("click", []),
    ("view", ["price>=5000"]),
    ("buy", []),
    ("share", []),
]


def generate(store: ClickHouseEventStore, n: int, users: int, block: int = 1_000_000) -> float:
    store._ensure_fields(SLOTS)  # the slot columns, as a report would create them
    start = time.perf_counter()
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        store._exec(
            "INSERT INTO events (appid, uid, event, user_id, ts_ms, received_ms, time_estimated,"
            " page, trigger, action, test_id, visible, i0, s0)"
            f" SELECT '{APPID}', concat('ev-', toString(number)),"
            " arrayElement(['view', 'view', 'click', 'buy', 'share'], 1 + intHash32(number) % 5),"
            " concat('user-', toString((intDiv(number, 8) + intHash32(intDiv(number, 8)))"
            f" % {users})),"
            f" toInt64({T0} + intDiv(number * {SPAN}, {n}) + intHash32(number * 5 + 2) % 600000),"
            f" toInt64({T0} + intDiv(number * {SPAN}, {n}) + 600000), 0,"
            " concat('pages/p', toString(intHash32(number * 7 + 3) % 8)), 'click', NULL, NULL, 1,"
            " toInt32(intHash32(number * 11 + 4) % 10000),"
            " arrayElement(['red', 'green', 'blue', 'black', 'white', 'pink'],"
            "  1 + intHash32(number * 13 + 5) % 6)"
            f" FROM system.numbers WHERE number >= {lo} LIMIT {hi - lo}"
        )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--url", default=os.environ.get("MINIPORT_TEST_CLICKHOUSE_URL", DEFAULT_URL)
    )
    args = parser.parse_args(argv)
    n, runs = args.events, max(1, args.runs)
    url = args.url.split("?", 1)[0].rsplit("/", 1)[0] + "/miniport_bench_funnel"
    transport = HttpTransport(parse_clickhouse_url(url))
    transport.execute("DROP DATABASE IF EXISTS miniport_bench_funnel", in_database=False)
    tmp = tempfile.TemporaryDirectory(prefix="miniport-bench-")  # the index of ids
    keys = EventKeyIndex.open(f"sqlite:///{tmp.name}/keys.db")
    store = ClickHouseEventStore(HttpTransport(parse_clickhouse_url(url)), keys)
    result: dict[str, object] = {"bench": "clickhouse_funnel", "events": n, "users": args.users}
    try:
        gen_s = generate(store, n, args.users)
        print(f"generated {n:,} events in {gen_s:.1f} s", file=sys.stderr)
        for order in ("strict", "any"):
            query = FunnelQuery.parse(
                steps=STEPS, from_ms=T0, to_ms=T0 + SPAN, not_before_ms=T0, window="1h",
                order=order,
            )  # fmt: skip
            compiled = compile_funnel(APPID, query, SLOTS, dialect=CLICKHOUSE)
            bare_sql = render_clickhouse(compiled.sql, compiled.params) + " FORMAT JSONCompact"

            def engine(q: FunnelQuery = query) -> list[dict[str, object]]:
                return store.funnel(APPID, q, SLOTS)

            def bare(sql: str = bare_sql) -> object:
                return transport.execute(sql)

            rows = engine()  # warm-up
            users = [r["users"] for r in rows]
            assert users[0] > 0, users
            print(f"{order}: users per step {users}", file=sys.stderr)
            times: dict[str, list[float]] = {"engine": [], "bare": []}
            fns: dict[str, Callable[[], object]] = {"engine": engine, "bare": bare}
            for _ in range(runs):
                for name, fn in fns.items():
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
            med = {name: statistics.median(values) for name, values in times.items()}
            ratio = med["bare"] / med["engine"]
            print(
                f"ClickHouse funnel {order}, 5 steps, 1 h window, {n:,} events / 30 days: engine"
                f" median {med['engine']:.3f} s, same SQL bare {med['bare']:.3f} s, ratio"
                f" {ratio:.2f} (load average {os.getloadavg()[0]:.2f})"
            )
            result[order] = {
                "engine_s": round(med["engine"], 4),
                "bare_s": round(med["bare"], 4),
                "ratio": round(ratio, 3),
                "users_per_step": users,
            }
    finally:
        store.close()
        tmp.cleanup()
        transport.execute("DROP DATABASE IF EXISTS miniport_bench_funnel", in_database=False)
        transport.close()
    result["generate_s"] = round(gen_s, 1)
    result["loadavg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
