"""End-to-end periodic fetching (due selection, request, acceptance, storing) against a bare
aiohttp loop sending the same requests (URL and headers, made beforehand) at the same
concurrency, in the same run.

    python bench/fetch_engine.py [--pairs 20000] [--concurrency 200] [--postgres] [--workers 1,2]

The engine runs in worker processes of its own (one, then two on the same database), as
``miniport worker`` does, with its garbage-collector settings (``gc_tuning.tune_for_serving``;
the bare loop gets them too). ``--postgres`` uses a throwaway database on the local PostgreSQL.
Besides the rates it reports CPU seconds per 1,000 fetches from the processes' own counters
(the workers, the bare loop, and with ``--postgres`` the server backends serving the workers),
which do not depend on how busy the neighbours are.

It also gives the developer server's CPU per 1,000 fetches, the cores each run kept busy, and
with several worker counts the best scaling the cores permit (``scaling_ceiling``): a worker is
one core at most, and the workers, PostgreSQL and the developer server share all the cores, so
n workers reach at most min(n, cores x worker CPU per fetch / everyone's CPU per fetch) times
one; a scaling near it means the cores are the limit, not the engine.

It also times the transport alone (``fetcher_*``: each pair's signed request sent through
the engine's Fetcher, with no claims and no records) against the same bare loop: the part of
the engine's cost that its claims, schedules and records do not add, and so the highest ratio
an engine on this transport can reach.

Last line: a JSON object of the figures. Targets: ratio >= 0.75; two workers >= 1.6x one."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from sqlalchemy import func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import cpu_s, dev_server, loadavg, pg_database
from miniport.config import Settings
from miniport.domain.address_guard import AddressPolicy
from miniport.domain.requests import OutboundRequest, Validators, build_periodic_request
from miniport.fetch.client import Fetcher
from miniport.gc_tuning import tune_for_serving
from miniport.platform import create_platform
from miniport.storage import schema as t


async def bare_loop(requests: list[tuple[str, dict[str, str]]], concurrency: int) -> float:
    """The baseline: the same requests on the wire as the engine's (URL and headers made
    beforehand, untimed), sent with plain aiohttp and read whole."""
    sem = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(url: str, headers: dict[str, str]) -> None:
            async with sem, session.get(url, headers=headers) as resp:
                await resp.read()

        started = time.perf_counter()
        await asyncio.gather(*(one(u, h) for u, h in requests))
        return time.perf_counter() - started


def periodic_request(base: str, i: int) -> OutboundRequest:
    """Pair ``i``'s request as the engine builds and signs it (an app id and secret of the
    lengths the platform makes)."""
    return build_periodic_request(
        base_url=base + "/periodic",
        appid="mp0123456789abcdef",
        secret="0123456789abcdef0123456789abcdef",
        token=f"tok{i}",
        timestamp=int(time.time()),
        validators=Validators(None, None),
        version="1.0.0",
        env_version="release",
    )


async def fetcher_loop(base: str, pairs: int, concurrency: int) -> float:
    """The engine's transport alone, at the same concurrency: each pair's request built and
    signed as the engine builds it (``build_periodic_request``) and sent through
    :class:`~miniport.fetch.client.Fetcher` (address guard, per-request deadline, redirects by
    hand, body read up to the limit and decoded). No claims, no recording: the part of the
    engine's cost that is not the engine's own, and so the highest ratio any engine built on
    it could reach."""
    fetcher = Fetcher(AddressPolicy.build(dev=True), limit=concurrency)
    await fetcher.start()
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await fetcher.fetch(periodic_request(base, i), timeout_s=10)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(pairs)))
        return time.perf_counter() - started
    finally:
        await fetcher.close()


async def fill(settings: Settings, base: str, pairs: int) -> None:
    platform = create_platform(settings)
    await platform.start()
    app = await platform.apps.create("bench", "bench")
    pending = await platform.apps.request_change(
        app.appid, "periodic", "set", base + "/periodic", "bench"
    )
    await platform.apps.confirm(pending.code, "bench")
    now = platform.clock.now()
    with platform.db.writing() as conn:
        conn.execute(
            insert(t.app_users),
            [
                {
                    "appid": app.appid,
                    "user_id": f"u{i}",
                    "token": f"tok{i}",
                    "last_launch_at": now,
                    "next_due_at": now - 1,
                    "failures": 0,
                }
                for i in range(pairs)
            ],
        )
        if not platform.db.is_sqlite:
            conn.exec_driver_sql("ANALYZE app_users")
    await platform.close()


def worker(settings: Settings, ready: Any, go: Any, out: Any, finish: Any) -> None:
    """One engine process: start, wait for the signal, run until nothing is due."""

    async def run() -> None:
        platform = create_platform(settings)
        await platform.start()
        engine = platform.make_engine()
        tune_for_serving()  # as ``miniport worker`` does
        ready.release()
        await asyncio.to_thread(go.wait)
        cpu0 = cpu_s()
        await engine.run(asyncio.Event(), until_idle=True)
        backends = _backend_pids(platform)
        out.put({"completed": engine.completed, "cpu_s": cpu_s() - cpu0, "backends": backends})
        await asyncio.to_thread(finish.wait)  # keep the backends until their CPU is read
        await platform.close()

    uvloop.install()
    asyncio.run(run())


def _backend_pids(platform: Any) -> list[int]:
    if platform.db.is_sqlite:
        return []
    with platform.db.reading() as conn:
        rows = conn.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        ).all()
    return [int(r[0]) for r in rows]


def dev_server_pid() -> int:
    """The developer server this process started (bench.common.dev_server): its CPU counts, since
    it shares the two cores with the workers and PostgreSQL."""
    import os

    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if b"devserver.py" in cmd and ppid == os.getpid():
                return int(entry)
    raise RuntimeError("developer server not found")


def backend_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in set(pids):
        with contextlib.suppress(OSError):  # a backend that ended took its counters with it
            total += cpu_s(pid)
    return total


@contextlib.contextmanager
def database(postgres: bool) -> Iterator[str | None]:
    if postgres:
        with pg_database() as url:
            yield url
    else:
        yield None


def engine_run(
    base: str, pairs: int, concurrency: int, workers: int, postgres: bool
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, database(postgres) as url:
        settings = Settings(
            data_dir=Path(tmp),
            database_url=url,
            dev=True,
            fetch_concurrency=concurrency,
            host_concurrency=concurrency,
            claim_batch=500,
            start_scheduler=False,
        )
        asyncio.run(fill(settings, base, pairs))
        ctx = mp.get_context("spawn")
        ready, go, out, finish = ctx.Semaphore(0), ctx.Event(), ctx.Queue(), ctx.Event()
        procs = [
            ctx.Process(target=worker, args=(settings, ready, go, out, finish))
            for _ in range(workers)
        ]
        for proc in procs:
            proc.start()
        for _ in procs:
            ready.acquire()
        dev = dev_server_pid()
        dev0 = cpu_s(dev)
        started = time.perf_counter()
        go.set()
        results = [out.get() for _ in procs]
        elapsed = time.perf_counter() - started
        dev_cpu = cpu_s(dev) - dev0
        # the backends' whole life: their start-up work is negligible beside the run
        pg_cpu = backend_cpu([p for r in results for p in r["backends"]])
        finish.set()
        for proc in procs:
            proc.join()
        stored, logged = asyncio.run(count(settings))
    return {
        "elapsed": elapsed,
        "stored": stored,
        "logged": logged,
        "completed": sum(r["completed"] for r in results),
        "worker_cpu_s": sum(r["cpu_s"] for r in results),
        "pg_cpu_s": pg_cpu,
        "dev_cpu_s": dev_cpu,
    }


async def count(settings: Settings) -> tuple[int, int]:
    platform = create_platform(settings)
    with platform.db.reading() as conn:
        stored = conn.execute(select(func.count()).select_from(t.fetched_data)).scalar_one()
        logged = conn.execute(select(func.count()).select_from(t.fetch_log)).scalar_one()
    await platform.close()
    return int(stored), int(logged)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="alternating bare/engine rounds")
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL database")
    parser.add_argument("--workers", default="1", help="worker processes to try, e.g. 1,2")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    load = loadavg()
    bare_rates: list[float] = []
    bare_cpu: list[float] = []
    fetcher_rates: list[float] = []
    fetcher_cpu: list[float] = []
    runs: dict[int, list[dict[str, Any]]] = {w: [] for w in counts}
    with dev_server() as base:
        made = [periodic_request(base, i) for i in range(args.pairs)]
        requests = [(r.url, r.headers) for r in made]
        await bare_loop(requests[:2000], args.concurrency)  # warm up
        tune_for_serving()  # the same collector settings as the workers: a fair baseline
        # Alternate, so a noisy neighbour hurts both sides alike; report the best of each.
        for _ in range(args.rounds):
            cpu0 = cpu_s()
            bare_rates.append(args.pairs / await bare_loop(requests, args.concurrency))
            bare_cpu.append(cpu_s() - cpu0)
            cpu0 = cpu_s()
            elapsed = await fetcher_loop(base, args.pairs, args.concurrency)
            fetcher_rates.append(args.pairs / elapsed)
            fetcher_cpu.append(cpu_s() - cpu0)
            for w in counts:
                runs[w].append(
                    await asyncio.to_thread(
                        engine_run, base, args.pairs, args.concurrency, w, args.postgres
                    )
                )
    bare_rate = max(bare_rates)
    per_k = 1000 / args.pairs
    out: dict[str, Any] = {
        "bench": "fetch_engine",
        "database": "postgresql" if args.postgres else "sqlite",
        "pairs": args.pairs,
        "concurrency": args.concurrency,
        "load_before": load,
        "bare_per_s": round(bare_rate),
        "bare_cpu_s_per_1000": round(min(bare_cpu) * per_k, 4),
        # the transport alone (signed requests through the Fetcher): the ceiling of any engine
        "fetcher_per_s": round(max(fetcher_rates)),
        "fetcher_ratio": round(max(fetcher_rates) / bare_rate, 3),
        "fetcher_cpu_s_per_1000": round(min(fetcher_cpu) * per_k, 4),
    }
    print(
        f"the Fetcher alone (signed requests, no claims or records): {max(fetcher_rates):,.0f}"
        f" fetches/s, ratio {max(fetcher_rates) / bare_rate:.2f}: the highest an engine built on"
        " it can reach"
    )
    for w, rounds in runs.items():
        rates = [args.pairs / r["elapsed"] for r in rounds]
        best = max(range(len(rounds)), key=lambda i: rates[i])
        out[f"workers_{w}"] = {
            "engine_per_s": round(rates[best]),
            "all_rounds_per_s": [round(r) for r in rates],
            "ratio": round(rates[best] / bare_rate, 3),
            "worker_cpu_s_per_1000": round(min(r["worker_cpu_s"] for r in rounds) * per_k, 4),
            "pg_cpu_s_per_1000": round(min(r["pg_cpu_s"] for r in rounds) * per_k, 4),
            "dev_server_cpu_s_per_1000": round(min(r["dev_cpu_s"] for r in rounds) * per_k, 4),
            # the cores the run kept busy: workers + PostgreSQL + developer server, over wall time
            "cores_busy": round(
                (
                    rounds[best]["worker_cpu_s"]
                    + rounds[best]["pg_cpu_s"]
                    + rounds[best]["dev_cpu_s"]
                )
                / rounds[best]["elapsed"],
                2,
            ),
            "lost": sum(args.pairs - r["stored"] for r in rounds),
            "fetched_twice": sum(r["logged"] - args.pairs for r in rounds),
        }
        print(
            f"{w} worker(s): {rates[best]:,.0f} fetches/s, ratio {rates[best] / bare_rate:.2f}"
            f" of the bare loop ({bare_rate:,.0f}/s); rounds {[round(r) for r in rates]}"
        )
    if len(counts) > 1:
        one, most = out[f"workers_{counts[0]}"], out[f"workers_{counts[-1]}"]
        out["scaling"] = round(most["engine_per_s"] / one["engine_per_s"], 2)
        # What the machine allows, from the CPU counters alone (not the neighbours' noise): one
        # worker fetches at most one core / its CPU per fetch; n workers at most n times that,
        # and all the cores / the CPU one fetch costs every process together (workers,
        # PostgreSQL, developer server). Their ratio is the best scaling the cores permit.
        worker = one["worker_cpu_s_per_1000"]
        every = worker + one["pg_cpu_s_per_1000"] + one["dev_server_cpu_s_per_1000"]
        cores = os.cpu_count() or 1
        out["cores"] = cores
        out["scaling_ceiling"] = round(min(counts[-1], cores * worker / every), 2)
    print(json.dumps(out))


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main())
