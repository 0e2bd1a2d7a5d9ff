"""getBackgroundFetchData requests/s through the real server (auth, storage read, JSON) against a
bare endpoint of the same framework returning a constant, at the same concurrency, same run.

    python bench/read_api.py [--seconds 8] [--connections 50] [--rounds 3]

Target: ratio >= 0.5. Last line: JSON."""

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
from bench.common import free_port, wait_http, wrk  # noqa: E402
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
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
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
            bare_rates, read_rates = [], []
            for _ in range(args.rounds):
                bare_rates.append(wrk(bare_url, seconds=args.seconds, connections=args.connections))
                read_rates.append(
                    wrk(read_url, seconds=args.seconds, connections=args.connections, headers=auth)
                )
        finally:
            for proc in (bare, server):
                proc.terminate()
                proc.wait(10)
    bare_rate, read_rate = max(bare_rates), max(read_rates)
    ratio = read_rate / bare_rate
    print(
        f"bare FastAPI constant: {bare_rate:,.0f} req/s; getBackgroundFetchData: {read_rate:,.0f}"
        f" req/s; ratio {ratio:.2f} ({args.connections} connections, best of {args.rounds})"
    )
    print(
        json.dumps(
            {
                "bench": "read_api",
                "connections": args.connections,
                "bare_rps": round(bare_rate),
                "read_rps": round(read_rate),
                "ratio": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
