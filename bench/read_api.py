"""getBackgroundFetchData requests/s through the real server (auth, storage read, JSON) against a
bare endpoint of the same framework returning a constant, at the same concurrency, same run.

    python bench/read_api.py [--seconds 8] [--connections 50] [--rounds 3] [--src OTHER/src]

Besides requests/s (best of the rounds), each server's own CPU seconds per 1,000 requests
(from /proc: independent of how busy the neighbours are) and their ratio (bare / read: the
share of the bare endpoint's efficiency the read path keeps), and the load average before
each round. ``--src`` serves another checkout's sources (e.g. the main branch's, to compare).
Target: ratio >= 0.7. Last line: JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import cpu_s, free_port, loadavg, wait_http, wrk  # noqa: E402
from miniport.config import Settings  # noqa: E402
from miniport.platform import create_platform  # noqa: E402
from miniport.storage.fetches import FetchRecord  # noqa: E402


def seed(data_dir: Path) -> tuple[str, str]:
    async def go() -> tuple[str, str]:
        platform = create_platform(Settings(data_dir=data_dir, dev=True))
        app = await platform.apps.create("bench", "bench")
        now = platform.clock.now()
        platform.fetches.record(
            [
                FetchRecord(
                    app.appid,
                    "u1",
                    "periodic",
                    "schedule",
                    now,
                    "http://127.0.0.1/x",
                    "cached",
                    200,
                    48,
                    1.0,
                    None,
                    '{"goods":[{"name":"Tea","price":12}],"ok":true}',
                    int(now * 1000),
                )
            ]
        )
        token = platform.auth.runtime_token("u1", "d1")
        await platform.close()
        return app.appid, token

    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--src", type=Path, help="a checkout's src directory to serve instead")
    args = parser.parse_args()
    src = f"{args.src.resolve()}{os.pathsep}" if args.src else ""
    env = {**os.environ, "PYTHONPATH": src + str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        appid, token = seed(data_dir)
        bare_port, mp_port = free_port(), free_port()
        bare = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.bare_app:app",
                "--port",
                str(bare_port),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
        )
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "miniport",
                "serve",
                "--port",
                str(mp_port),
                "--data-dir",
                str(data_dir),
                "--dev",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            # its log (an access line per request, as in production) to a file: shown if the
            # run fails, not an access line per request on the terminal
            stderr=(data_dir / "server.log").open("wb"),
        )
        try:
            bare_url = f"http://127.0.0.1:{bare_port}/const"
            read_url = (
                f"http://127.0.0.1:{mp_port}/runtime/v1/apps/{appid}/background-fetch/data"
                "?fetchType=periodic"
            )
            wait_http(bare_url)
            wait_http(f"http://127.0.0.1:{mp_port}/healthz")
            auth = {"Authorization": f"Bearer {token}"}
            wrk(bare_url, seconds=2, connections=args.connections)  # warm up
            wrk(read_url, seconds=2, connections=args.connections, headers=auth)
            bare_rates, read_rates, loads = [], [], []
            cpu_ms: dict[str, list[float]] = {"bare": [], "read": []}

            def timed(name: str, pid: int, url: str, headers: dict[str, str] | None) -> float:
                before = cpu_s(pid)
                rate = wrk(url, seconds=args.seconds, connections=args.connections,
                           headers=headers)  # fmt: skip
                cpu_ms[name].append((cpu_s(pid) - before) * 1e6 / (rate * args.seconds))
                return rate

            for _ in range(args.rounds):
                loads.append(loadavg())
                bare_rates.append(timed("bare", bare.pid, bare_url, None))
                read_rates.append(timed("read", server.pid, read_url, auth))
        except BaseException:
            sys.stderr.write((data_dir / "server.log").read_text(errors="replace")[-3000:])
            raise
        finally:
            for proc in (bare, server):
                proc.terminate()
                proc.wait(10)
    bare_rate, read_rate = max(bare_rates), max(read_rates)
    ratio = read_rate / bare_rate
    bare_cpu, read_cpu = min(cpu_ms["bare"]), min(cpu_ms["read"])
    print(
        f"bare FastAPI constant: {bare_rate:,.0f} req/s; getBackgroundFetchData: {read_rate:,.0f}"
        f" req/s; ratio {ratio:.2f} ({args.connections} connections, best of {args.rounds})"
    )
    print(
        f"server CPU per 1,000 requests: bare {bare_cpu:.0f} ms, read {read_cpu:.0f} ms;"
        f" ratio {bare_cpu / read_cpu:.2f} (least of {args.rounds}); load average before each"
        f" round: {', '.join(f'{x:.2f}' for x in loads)}"
    )
    print(
        json.dumps(
            {
                "bench": "read_api",
                "connections": args.connections,
                **({"src": str(args.src)} if args.src else {}),
                "bare_rps": round(bare_rate),
                "read_rps": round(read_rate),
                "ratio": round(ratio, 3),
                "bare_cpu_ms_per_1k": round(bare_cpu, 1),
                "read_cpu_ms_per_1k": round(read_cpu, 1),
                "cpu_ratio": round(bare_cpu / read_cpu, 3),
                "loadavg": loads,
            }
        )
    )


if __name__ == "__main__":
    main()
