"""Benchmark: analytics ingestion over HTTP into ClickHouse through two API nodes, against a
bare loop inserting the same rows into ClickHouse directly in the same block sizes.

Two ``miniport serve`` processes share one PostgreSQL (a database of the benchmark's own,
dropped at exit) and one ClickHouse (database ``miniport_bench_ingest``, dropped at exit).
``--connections`` clients send batches of ``--batch`` unique events, alternating between the
nodes, until N events; the count through the admin API must then be exactly N. The nodes'
inserts are counted with ClickHouse's ``system.events`` (InsertQuery, InsertedRows), and
the bare loop inserts the same rows with the store's own TSV insert, one block of the nodes'
average size at a time. Each phase starts once ClickHouse merges no parts (``settle``).
Target: ratio (HTTP events/s / bare rows/s) >= 0.5. Beside the rates (which swing with the
neighbours on a shared machine), the CPU seconds per 1,000 events of both nodes (their own
/proc counters) and of the bare loop per 1,000 rows (this process's), and ClickHouse's for
each phase (its /proc counters when start.sh's server runs here, else its queries' own
counters in ``system.events``, which miss about three quarters).

    .venv/bin/python bench/clickhouse_ingest.py [--events 200000] [--connections 32]
        [--ids random|sequential]

Last measured (2 shared cores, load 0.3-2.4, 18.16 with its data on /dev/shm), with random
ids (the default, like the runtime's) claimed in the index of ids on PostgreSQL: 35-47k
events/s at 200k, 600k, 1M and 1.5M events, ratio 0.19-0.32 against 126-217k bare rows/s;
per 1,000 events both nodes 24-28 ms of CPU, ClickHouse 10-13.8 ms (bare inserts 7-11 ms)
and PostgreSQL 6-8.6 ms, the same at 1.5M events as at 200k. Before the index, ClickHouse's
CPU per 1,000 events grew with the table (22 ms at 200k, 64 ms at 1M on a faster machine;
38 ms at 200k on this one), as each dedup lookup read all the app's ids (see the README).

With each insert's check against the forgotten users (one SELECT on ``system.parts`` per
insert, counted in the summary), two runs each at 200k events and load 1.8-3.1: 30.9-36.6k
events/s (28.4-31.6k before), ClickHouse 12.0-12.7 ms of CPU per 1,000 events (10.6-11.4
before), nodes 22.4-24.1 ms (22.0-23.9); see bench/forget_check.py for the check alone.

Needs MINIPORT_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/postgres) and
MINIPORT_TEST_CLICKHOUSE_URL (default: scripts/clickhouse/start.sh's server). Last line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import cpu_s, free_port, loadavg  # noqa: E402
from miniport.analytics.clickhouse_store import ClickHouseEventStore  # noqa: E402
from miniport.analytics.clickhouse_transport import (  # noqa: E402
    HttpTransport,
    parse_clickhouse_url,
)
from miniport.analytics.event_store import StoredEvent  # noqa: E402
from miniport.config import Settings  # noqa: E402
from miniport.platform import create_platform  # noqa: E402
from miniport.storage.event_keys import EventKeyIndex  # noqa: E402

PG_URL = os.environ.get("MINIPORT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CH_URL = os.environ.get(
    "MINIPORT_TEST_CLICKHOUSE_URL", "clickhouse://default:@127.0.0.1:18123/miniport_test"
)
MINIPORT = str(Path(sys.executable).parent / "miniport")
PURCHASE = {"name": "purchase", "display_name": "buy", "mode": "api", "fields": ["price", "color"]}


def ch_url(database: str) -> str:
    return CH_URL.split("?", 1)[0].rsplit("/", 1)[0] + "/" + database


def clickhouse_pid(port: int) -> int | None:
    """The local ``clickhouse-server`` whose config serves HTTP on ``port`` (start.sh's), or
    None (another machine's, or not readable here)."""
    for proc in Path("/proc").iterdir():
        try:
            if not (proc / "comm").read_text().startswith("clickhouse-serv"):
                continue
            args = (proc / "cmdline").read_bytes().split(b"\0")
            for arg in args:
                if arg.startswith(b"--config-file="):
                    config = Path(arg.split(b"=", 1)[1].decode()).read_text()
                    if f"<http_port>{port}</http_port>" in config:
                        return int(proc.name)
        except (OSError, ValueError):
            continue
    return None


def postgres_pids(dbname: str) -> list[int]:
    """The PostgreSQL processes that work for this run: the backends connected to its database
    (the nodes keep theirs open for the whole run) and the server's own (WAL writer,
    checkpointer...); not the backends of other databases (other work on the machine)."""
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = %s OR backend_type <> 'client backend'",
            [dbname],
        ).fetchall()
    return [int(pid) for (pid,) in rows]


def postgres_cpu_s(pids: list[int]) -> dict[int, float]:
    """CPU seconds of these PostgreSQL processes, from their /proc counters (those gone are
    left out: a difference is taken over the processes alive at both ends)."""
    found: dict[int, float] = {}
    for pid in pids:
        try:
            found[pid] = cpu_s(pid)
        except OSError:
            continue
    return found


def server_counters(t: HttpTransport, pid: int | None) -> tuple[int, int, float, int]:
    """ClickHouse's inserts, inserted rows, CPU seconds: the whole server's (its /proc
    counters: queries, HTTP handling, merges) when it runs here, else what its queries
    counted (``system.events``; about a quarter of the whole in this benchmark), and
    SELECT queries (the nodes' dedup lookups and their check of each insert against the
    forgotten users)."""
    raw = t.execute(
        "SELECT event, value FROM system.events WHERE event IN ('InsertQuery', 'InsertedRows',"
        " 'SelectQuery', 'UserTimeMicroseconds', 'SystemTimeMicroseconds') FORMAT JSONCompact",
        in_database=False,
    )
    values = {name: int(v) for name, v in json.loads(raw)["data"]}
    if pid is not None:
        cpu = cpu_s(pid)
    else:
        cpu = (values.get("UserTimeMicroseconds", 0) + values.get("SystemTimeMicroseconds", 0))
        cpu /= 1e6
    inserts, rows = values.get("InsertQuery", 0), values.get("InsertedRows", 0)
    return inserts, rows, cpu, values.get("SelectQuery", 0)


def settle(t: HttpTransport, limit_s: float = 120.0) -> None:
    """Wait until ClickHouse merges no parts: each phase then starts on a server that is not
    still merging the other phase's inserts (the bare loop, run second, was 44k-257k rows/s
    depending on how much of the HTTP phase's merging it ran beside)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        raw = t.execute("SELECT count() FROM system.merges FORMAT JSONCompact", in_database=False)
        if int(json.loads(raw)["data"][0][0]) == 0:
            return
        time.sleep(0.2)


async def setup_app(settings: Settings) -> tuple[str, str]:
    p = create_platform(settings)
    appid = (await p.apps.create("bench", "bench")).appid
    await p.analytics.add_field(appid, {"name": "price", "type": "int"})
    await p.analytics.add_field(appid, {"name": "color", "type": "string"})
    await p.analytics.save_event(appid, PURCHASE)
    await p.analytics.publish(appid, "bench")
    token = p.auth.runtime_token("u1")
    await p.close()
    return appid, token


async def start_node(data: Path, env: dict[str, str]) -> tuple[str, asyncio.subprocess.Process]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        MINIPORT, "serve", "--port", str(port), "--data-dir", str(data), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=(data.parent / f"{data.name}.log").open("wb"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(1200):
            try:
                async with session.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return url, proc
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    log = (data.parent / f"{data.name}.log").read_text(errors="replace")
    raise RuntimeError(f"a node did not start:\n{log[-2000:]}")


ID_KINDS = ("random", "sequential")
_ids = {"kind": "random"}  # set from --ids


def event_id(i: int) -> str:
    """Event ``i``'s id: 32 hex digits spread over the key space like the runtime's (uuid4
    hex), the same in every run; or ``str(i)`` (``--ids sequential``, the ids of the runs
    before this option: a group's ids then sit together in the table's key order, and the
    dedup lookup of the store before its index of ids read a few granules instead of the
    whole table's ids)."""
    if _ids["kind"] == "sequential":
        return str(i)
    return hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest()


def body(first: int, size: int, now: int) -> bytes:
    events = [
        {"id": event_id(i), "event": "purchase", "data": {"price": i % 100, "color": f"c{i % 5}"},
         "ts": now - i % 1000}
        for i in range(first, first + size)
    ]  # fmt: skip
    return json.dumps({"sent_at": now, "events": events}).encode()


async def load(urls: list[str], path: str, token: str, n: int, batch: int, conns: int) -> float:
    now = int(time.time() * 1000)
    starts = iter(range(0, n, batch))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    payloads = {s: body(s, min(batch, n - s), now) for s in range(0, n, batch)}

    async def worker(k: int, session: aiohttp.ClientSession) -> None:
        for first in starts:
            async with session.post(urls[k % 2] + path, data=payloads[first], headers=headers) as r:
                if r.status != 200:
                    raise RuntimeError(f"{r.status}: {await r.text()}")
                await r.read()

    connector = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(k, session) for k in range(conns)))
        return time.perf_counter() - start


def bare(n: int, block: int, pid: int | None) -> tuple[float, float, float]:
    """The same rows inserted directly, ``block`` rows per insert, one after another: seconds,
    this process's CPU seconds for them (the bare loop's Python side, row encoding
    included), and ClickHouse's CPU seconds meanwhile (as ``server_counters`` counts them)."""
    url = ch_url("miniport_bench_bare")
    ch = HttpTransport(parse_clickhouse_url(url))
    ch.execute("DROP DATABASE IF EXISTS miniport_bench_bare", in_database=False)
    now = int(time.time() * 1000)
    rows = [
        StoredEvent("bench", event_id(i), "purchase", "u1", now - i % 1000, now, False, None, None,
                    None, {0: i % 100}, {1: f"c{i % 5}"})
        for i in range(n)
    ]  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="miniport-bench-") as tmp,
        ClickHouseEventStore.from_url(url, EventKeyIndex.open(f"sqlite:///{tmp}/k.db")) as store,
    ):
        store.append(rows[:1])  # creates the tables and slot columns
        ch_start = server_counters(ch, pid)[2]
        start = time.perf_counter()
        cpu_start = time.process_time()
        for lo in range(1, n, block):
            store._insert(rows[lo : lo + block])
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        ch_cpu = server_counters(ch, pid)[2] - ch_start
        store._exec("DROP DATABASE IF EXISTS miniport_bench_bare")
    scale = n / max(1, n - 1)
    return elapsed * scale, cpu * scale, ch_cpu * scale


async def run(n: int, batch: int, conns: int) -> dict[str, Any]:
    pg_name = "miniport_bench_" + secrets.token_hex(4)
    admin = psycopg.connect(PG_URL, autocommit=True)
    admin.execute(f'CREATE DATABASE "{pg_name}"')
    pg_url = PG_URL.rsplit("/", 1)[0] + "/" + pg_name
    analytics_url = ch_url("miniport_bench_ingest")
    ch = HttpTransport(parse_clickhouse_url(analytics_url))
    ch.execute("DROP DATABASE IF EXISTS miniport_bench_ingest", in_database=False)
    ch_pid = clickhouse_pid(parse_clickhouse_url(analytics_url).port)
    procs: list[asyncio.subprocess.Process] = []
    try:
        with tempfile.TemporaryDirectory(prefix="miniport-bench-") as tmp:
            base = Path(tmp)
            settings = Settings(
                data_dir=base / "setup", database_url=pg_url, analytics_url=analytics_url
            )
            appid, token = await setup_app(settings)
            env = {k: v for k, v in os.environ.items() if not k.startswith("MINIPORT_")} | {
                "MINIPORT_DATABASE_URL": pg_url,
                "MINIPORT_ANALYTICS_URL": analytics_url,
                "MINIPORT_START_SCHEDULER": "false",
            }
            nodes = await asyncio.gather(*(start_node(base / f"n{i}", env) for i in range(2)))
            procs = [proc for _, proc in nodes]
            urls = [url for url, _ in nodes]
            path = f"/runtime/v1/apps/{appid}/analytics/events"
            await load(urls, path, token, min(n, 2 * batch), batch, 2)  # warm-up
            settle(ch)
            q0, r0, ch_cpu0, s0 = server_counters(ch, ch_pid)
            load_http = loadavg()
            pg_pids = postgres_pids(pg_name)
            cpu0, pg_cpu0 = sum(cpu_s(proc.pid) for proc in procs), postgres_cpu_s(pg_pids)
            http_s = await load(urls, path, token, n, batch, conns)
            nodes_cpu = sum(cpu_s(proc.pid) for proc in procs) - cpu0
            pg_cpu1 = postgres_cpu_s(pg_pids)
            pg_cpu = sum(t - pg_cpu0[pid] for pid, t in pg_cpu1.items() if pid in pg_cpu0)
            q1, r1, ch_cpu1, s1 = server_counters(ch, ch_pid)
            with ClickHouseEventStore.from_url(analytics_url, EventKeyIndex.open(pg_url)) as store:
                stored = store.count(appid)
            assert stored == n, (stored, n)
            block = max(1, round((r1 - r0) / max(1, q1 - q0)))
            settle(ch)
            load_bare = loadavg()
            bare_s, bare_cpu, bare_ch_cpu = bare(n, block, ch_pid)
            return {
                "http_s": http_s,
                "bare_s": bare_s,
                "block": block,
                "inserts": q1 - q0,
                "selects": s1 - s0 - 1,  # less server_counters' own
                "nodes_cpu": nodes_cpu,
                "pg_cpu": pg_cpu,
                "bare_cpu": bare_cpu,
                "http_ch_cpu": ch_cpu1 - ch_cpu0,
                "bare_ch_cpu": bare_ch_cpu,
                "ch_cpu_of": "process" if ch_pid is not None else "queries",
                "load_http": load_http,
                "load_bare": load_bare,
            }
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
        ch.execute("DROP DATABASE IF EXISTS miniport_bench_ingest", in_database=False)
        admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--ids", choices=ID_KINDS, default="random")
    args = parser.parse_args(argv)
    n = args.events
    _ids["kind"] = args.ids
    result = asyncio.run(run(n, args.batch, args.connections))
    http_rate, bare_rate = n / result["http_s"], n / result["bare_s"]
    ratio = http_rate / bare_rate
    nodes_ms = result["nodes_cpu"] / n * 1e6  # CPU ms per 1,000 events
    bare_ms = result["bare_cpu"] / n * 1e6
    http_ch_ms = result["http_ch_cpu"] / n * 1e6
    bare_ch_ms = result["bare_ch_cpu"] / n * 1e6
    pg_ms = result["pg_cpu"] / n * 1e6
    print(
        f"ClickHouse ingest, {n:,} events ({args.ids} ids) in batches of {args.batch} through "
        f"2 nodes: {http_rate:,.0f} events/s ({result['inserts']} inserts, "
        f"~{result['block']} rows each, {result['selects']} selects); "
        f"bare inserts of the same blocks: {bare_rate:,.0f} rows/s; ratio {ratio:.2f} "
        f"[target >= 0.5]; CPU per 1,000 events: both nodes {nodes_ms:.1f} ms + ClickHouse "
        f"{http_ch_ms:.1f} ms + PostgreSQL {pg_ms:.1f} ms, bare loop {bare_ms:.1f} ms + "
        f"ClickHouse {bare_ch_ms:.1f} ms "
        f"(ClickHouse's {result['ch_cpu_of']}); load average {result['load_http']:.2f} before "
        f"HTTP, {result['load_bare']:.2f} before bare"
    )
    print(
        json.dumps(
            {
                "bench": "clickhouse_ingest",
                "events": n,
                "ids": args.ids,
                "events_per_s": round(http_rate),
                "bare_rows_per_s": round(bare_rate),
                "block_rows": result["block"],
                "inserts": result["inserts"],
                "selects": result["selects"],
                "ratio": round(ratio, 3),
                "nodes_cpu_s_per_1000_events": round(nodes_ms / 1000, 5),
                "bare_cpu_s_per_1000_rows": round(bare_ms / 1000, 5),
                "clickhouse_cpu_s_per_1000_events": round(http_ch_ms / 1000, 5),
                "clickhouse_cpu_s_per_1000_bare_rows": round(bare_ch_ms / 1000, 5),
                "postgres_cpu_s_per_1000_events": round(pg_ms / 1000, 5),
                "clickhouse_cpu_of": result["ch_cpu_of"],
                "load_before_http": result["load_http"],
                "load_before_bare": result["load_bare"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
