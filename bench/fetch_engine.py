"""End-to-end periodic fetching (due selection, request, acceptance, storing) against a bare
aiohttp loop fetching the same URLs at the same concurrency, in the same run.

    python bench/fetch_engine.py [--pairs 20000] [--concurrency 200]

Last line: a JSON object of the figures. Targets: ratio >= 0.6, >= 5,000 fetches/s."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import uvloop
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import dev_server
from miniport.config import Settings
from miniport.platform import create_platform
from miniport.storage import schema as t


async def bare_loop(urls: list[str], concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(url: str) -> None:
            async with sem, session.get(url) as resp:
                await resp.read()

        started = time.perf_counter()
        await asyncio.gather(*(one(u) for u in urls))
        return time.perf_counter() - started


async def engine_run(base: str, pairs: int, concurrency: int, data_dir: Path) -> tuple[float, int]:
    settings = Settings(
        data_dir=data_dir,
        dev=True,
        fetch_concurrency=concurrency,
        host_concurrency=concurrency,
        claim_batch=500,
    )
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
    engine = platform.make_engine()
    stop = asyncio.Event()
    started = time.perf_counter()
    await engine.run(stop, until_idle=True)
    elapsed = time.perf_counter() - started
    with platform.db.reading() as conn:
        from sqlalchemy import func, select

        stored = conn.execute(select(func.count()).select_from(t.fetched_data)).scalar_one()
    await platform.close()
    return elapsed, int(stored)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="alternating bare/engine rounds")
    args = parser.parse_args()
    bare_rates: list[float] = []
    engine_rates: list[float] = []
    stored_all: list[int] = []
    with dev_server() as base:
        urls = [f"{base}/periodic?appid=x&token=tok{i}&timestamp=1" for i in range(args.pairs)]
        await bare_loop(urls[:2000], args.concurrency)  # warm up
        # Alternate, so a noisy neighbour hurts both sides alike; report the best of each.
        for _ in range(args.rounds):
            bare_rates.append(args.pairs / await bare_loop(urls, args.concurrency))
            with tempfile.TemporaryDirectory() as tmp:
                engine_s, stored = await engine_run(base, args.pairs, args.concurrency, Path(tmp))
            engine_rates.append(args.pairs / engine_s)
            stored_all.append(stored)
    bare_rate, engine_rate = max(bare_rates), max(engine_rates)
    ratio = engine_rate / bare_rate
    print(
        f"bare aiohttp loop: {bare_rate:,.0f} fetches/s; Miniport engine (claim, fetch, accept,"
        f" store): {engine_rate:,.0f} fetches/s; ratio {ratio:.2f} (best of {args.rounds} rounds;"
        f" all rounds bare {[round(r) for r in bare_rates]},"
        f" engine {[round(r) for r in engine_rates]})"
    )
    print(
        json.dumps(
            {
                "bench": "fetch_engine",
                "pairs": args.pairs,
                "concurrency": args.concurrency,
                "bare_per_s": round(bare_rate),
                "engine_per_s": round(engine_rate),
                "ratio": round(ratio, 3),
                "lost": sum(args.pairs - s for s in stored_all),
            }
        )
    )


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main())
