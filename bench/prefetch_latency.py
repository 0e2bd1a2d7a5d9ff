"""Pre-fetch latency: what the platform adds between ``launch`` and the data being readable,
over the developer server's own response time, under an open-loop arrival of launches.

Each launch is a new user (a cold start: no token, so a login code is minted and sent). For each
launch the client POSTs launch and then reads the data with ``waitMs``; the overhead of that
launch is (data readable - launch sent) - (the developer server's response time as the fetcher
measured it, from the fetch log).

    python bench/prefetch_latency.py [--rate 200] [--seconds 30] [--delay-ms 20] [--steps ...]

Target: p99 overhead <= 5 ms at 200 launches/s. Also reports the highest stepped rate whose p99
stays under 5 ms, the server's CPU seconds per 1,000 launches from its own counters (they
include minting each launch's runtime token beforehand, which is not timed), and the server's
garbage-collection passes during the main run by generation (from its /metrics histogram: how
many, how many over 5 ms, the longest's bucket). Last line: JSON."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import cpu_s, dev_server, free_port, loadavg, percentile, wait_http  # noqa: E402
from miniport.config import Settings  # noqa: E402
from miniport.platform import create_platform  # noqa: E402


async def seed(data_dir: Path, dev_url: str) -> tuple[str, str]:
    platform = create_platform(Settings(data_dir=data_dir, dev=True))
    app = await platform.apps.create("bench", "bench")
    pending = await platform.apps.request_change(app.appid, "pre", "set", dev_url + "/pre", "b")
    await platform.apps.confirm(pending.code, "bench")
    host = await platform.auth.create_key("host", "bench")
    await platform.close()
    return app.appid, str(host["key"])


async def run_rate(
    base: str, appid: str, host_key: str, rate: float, seconds: float, prefix: str
) -> dict[str, float]:
    """Open loop: launches start on a fixed schedule whatever the server's speed."""
    total = int(rate * seconds)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tokens = []
        for i in range(total):  # tokens first, outside the timed part
            async with session.post(
                f"{base}/host/v1/runtime-tokens",
                headers={"Authorization": f"Bearer {host_key}"},
                json={"user_id": f"{prefix}{i}"},
            ) as resp:
                tokens.append((await resp.json())["runtime_token"])
        elapsed: dict[str, float] = {}
        errors = 0

        async def one(i: int) -> None:
            nonlocal errors
            headers = {"Authorization": f"Bearer {tokens[i]}"}
            started = time.perf_counter()
            async with session.post(
                f"{base}/runtime/v1/apps/{appid}/launch",
                headers=headers,
                json={"path": "pages/index/index", "query": "a=1", "scene": 1001},
            ) as r:
                await r.read()
            async with session.get(
                f"{base}/runtime/v1/apps/{appid}/background-fetch/data",
                params={"fetchType": "pre", "waitMs": "5000"},
                headers=headers,
            ) as r:
                ok = r.status == 200
                await r.read()
            if ok:
                elapsed[f"{prefix}{i}"] = (time.perf_counter() - started) * 1000
            else:
                errors += 1

        tasks = []
        # the load generator's own garbage collection must not show up as server latency
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            for i in range(total):
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)
        finally:
            gc.enable()
    return {"_errors": errors, **elapsed}


def gc_buckets(base: str) -> dict[tuple[str, str], float]:
    """The server's garbage-collection passes so far (its /metrics histogram): cumulative counts
    by (generation, bucket upper bound in seconds)."""
    import urllib.request

    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("miniport_gc_pause_seconds_bucket{"):
            labels, value = line[len("miniport_gc_pause_seconds_bucket{") :].split("} ")
            fields = dict(part.split("=") for part in labels.split(","))
            out[(fields["generation"].strip('"'), fields["le"].strip('"'))] = float(value)
    return out


def gc_pauses(
    before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]
) -> dict[str, dict[str, float | str | int]]:
    """Per generation over the timed run: passes, passes over 5 ms, and the bucket holding the
    longest (its upper bound in ms; "inf" above the last bucket)."""
    out: dict[str, dict[str, float | str | int]] = {}
    for gen in sorted({g for g, _ in after}):
        counts = {le: after[(g, le)] - before.get((g, le), 0.0) for g, le in after if g == gen}
        total = counts.get("+Inf", 0.0)
        if not total:
            continue
        bounds = sorted((float(le), n) for le, n in counts.items() if le != "+Inf")
        under_5ms = max((n for b, n in bounds if b <= 0.005), default=0.0)
        longest = next((b for b, n in bounds if n == total), None)
        out[gen] = {
            "passes": int(total),
            "over_5ms": int(total - under_5ms),
            "longest_under_ms": "inf" if longest is None else round(longest * 1000, 1),
        }
    return out


def overheads(db_path: Path, elapsed: dict[str, float]) -> list[float]:
    conn = sqlite3.connect(db_path)
    latency = dict(
        conn.execute(
            "SELECT user_id, latency_ms FROM fetch_log WHERE kind = 'pre' AND verdict = 'cached'"
        )
    )
    conn.close()
    return [elapsed[u] - latency[u] for u in elapsed if u in latency and not u.startswith("_")]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--delay-ms", type=float, default=20, help="developer server's own time")
    parser.add_argument("--steps", default="300,400,500,600", help="extra rates to try, 5 s each")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with dev_server(args.delay_ms) as dev_url, tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        appid, host_key = await seed(data_dir, dev_url)
        port = free_port()
        server = subprocess.Popen(  # noqa: ASYNC220 - started once, before the timed part
            [
                sys.executable,
                "-m",
                "miniport",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                "--dev",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            # its log (an access line per request, as in production) to a file: shown if the
            # run fails, not 60,000 lines on the terminal above the figures
            stderr=(data_dir / "server.log").open("wb"),
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{base}/healthz")
            await run_rate(base, appid, host_key, 50, 2, "warm")
            load = loadavg()
            cpu0 = cpu_s(server.pid)  # the server's own counters (token minting included)
            gc0 = gc_buckets(base)
            main_run = await run_rate(base, appid, host_key, args.rate, args.seconds, "m")
            server_cpu = cpu_s(server.pid) - cpu0
            pauses = gc_pauses(gc0, gc_buckets(base))
            steps: list[tuple[float, float, float]] = []
            for step in [float(s) for s in args.steps.split(",") if s]:
                res = await run_rate(base, appid, host_key, step, 5, f"s{int(step)}_")
                over = overheads(data_dir / "miniport.db", res)
                steps.append((step, percentile(over, 99), res["_errors"]))
            main_over = overheads(data_dir / "miniport.db", main_run)
        except BaseException:
            sys.stderr.write((data_dir / "server.log").read_text(errors="replace")[-3000:])
            raise
        finally:
            server.terminate()
            server.wait(10)
    p50, p99 = percentile(main_over, 50), percentile(main_over, 99)
    best = args.rate if p99 <= 5 and not main_run["_errors"] else 0.0
    for rate, step_p99, errors in steps:
        if step_p99 <= 5 and not errors:
            best = max(best, rate)
    print(
        f"{len(main_over)} launches at {args.rate:g}/s for {args.seconds:g} s, developer server"
        f" {args.delay_ms:g} ms: platform overhead p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        f" (errors {int(main_run['_errors'])})"
    )
    print(f"  server GC passes during it (token minting included): {pauses}")
    for rate, step_p99, errors in steps:
        print(f"  {rate:g}/s for 5 s: p99 {step_p99:.2f} ms, errors {int(errors)}")
    print(
        json.dumps(
            {
                "bench": "prefetch_latency",
                "rate": args.rate,
                "launches": len(main_over),
                "p50_ms": round(p50, 3),
                "p99_ms": round(p99, 3),
                "errors": int(main_run["_errors"]),
                "load_before": load,
                "server_cpu_s_per_1000_launches": round(
                    server_cpu / max(len(main_over), 1) * 1000, 3
                ),
                "highest_rate_p99_under_5ms": best,
                "server_gc_pauses": pauses,
                "steps": {str(int(r)): round(p, 3) for r, p, _ in steps},
            }
        )
    )


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main())
