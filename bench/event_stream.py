"""The event stream at scale: 10,000 devices of one user connected to ``miniport serve`` at
once (server-sent events on loopback), against a bare asyncio SSE server holding the same
connections in the same run (bench/bare_sse.py).

    python bench/event_stream.py [--devices 10000]

Reports per server: resident memory with every stream open and per open stream (growth /
streams), what is still held after every stream closed (and, for Miniport, how many streams
its /metrics still counts), and the time from asking for a push (``devtools push``: a periodic
fetch from the developer server, then the fetched data and a devtoolsRefresh message to each
of the user's devices; the bare server writes the same two events) until the last device (and
the median one) has it, with the server's CPU for the push from its own counters. The devices
are asyncio protocols in one client process sharing the machine's two cores with the server:
the bare server's time is what the client and the kernel leave to the server. The client
raises its open-file limit (the servers inherit it). Goals (issue 13): <= 10 KB per idle
stream, 10,000 streams under 600 MB, memory returned when streams close, < 200 ms to reach
10k streams. Last line: JSON."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import aiohttp
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import (  # noqa: E402
    cpu_s,
    dev_server,
    free_port,
    loadavg,
    percentile,
    wait_http,
)
from miniport.config import Settings  # noqa: E402
from miniport.platform import create_platform  # noqa: E402

USER = "u"


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < needed:
        raise SystemExit(f"open-file limit {hard} is below the {needed} this run needs")


async def seed(data_dir: Path, dev_url: str, devices: int) -> tuple[str, str, list[str]]:
    platform = create_platform(Settings(data_dir=data_dir, dev=True))
    app = await platform.apps.create("bench", "bench")
    pending = await platform.apps.request_change(
        app.appid, "periodic", "set", dev_url + "/periodic", "bench"
    )
    await platform.apps.confirm(pending.code, "bench")
    await platform.background.set_token(app.appid, USER, "tok")
    admin = await platform.auth.create_key("api", "bench", "admin")
    tokens = [platform.auth.runtime_token(USER, f"d{i}") for i in range(devices)]
    await platform.close()
    return app.appid, str(admin["key"]), tokens


class Device(asyncio.Protocol):
    """One open event stream on the client side: a protocol, not a task and a stream reader,
    so reading 10,000 streams costs the client as little as it can (the client shares the two
    cores with the server: its cost is part of every delivery time measured)."""

    def __init__(self, devices: Devices, request: bytes) -> None:
        self.devices, self.request = devices, request
        self.tail = b""
        self.hello = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        seen = self.tail + data
        if not self.hello and b"connected" in seen:
            self.hello = True
            self.devices.connected.release()
        if b"devtoolsRefresh" in seen:
            self.devices.arrival()
            seen = b""
        self.tail = seen[-64:]


class Devices:
    """Open event streams, each noting when the push arrives."""

    def __init__(self, port: int, path: str, expected: int) -> None:
        self.port, self.path, self.expected = port, path, expected
        self.arrived: list[float] = []
        self.all_arrived = asyncio.Event()
        self.connected = asyncio.Semaphore(0)
        self.open_streams: list[Device] = []

    async def open(self, token: str) -> None:
        request = f"GET {self.path}access_token={token} HTTP/1.1\r\nHost: b\r\n\r\n".encode()
        loop = asyncio.get_running_loop()
        _, device = await loop.create_connection(
            lambda: Device(self, request), "127.0.0.1", self.port
        )
        self.open_streams.append(device)

    def arrival(self) -> None:
        self.arrived.append(time.perf_counter())
        if len(self.arrived) == self.expected:
            self.all_arrived.set()

    async def close(self) -> None:
        for device in self.open_streams:
            if device.transport is not None:
                device.transport.close()
        await asyncio.sleep(0)


async def measure(
    pid: int, port: int, path: str, tokens: list[str], push: Any, still_open: Any = None
) -> dict[str, Any]:
    """Connect every device, push once, close everything; memory and times along the way.
    ``still_open``: how many streams the server still counts after they all closed."""
    devices = Devices(port, path, len(tokens))
    idle = rss_kb(pid)
    started = time.perf_counter()
    for start in range(0, len(tokens), 200):  # in waves: the listen backlog is finite
        await asyncio.gather(*(devices.open(t) for t in tokens[start : start + 200]))
    for _ in tokens:
        await asyncio.wait_for(devices.connected.acquire(), 60)
    connect_s = time.perf_counter() - started
    await asyncio.sleep(1)
    open_kb = rss_kb(pid)
    cpu0 = cpu_s(pid)
    pushed = time.perf_counter()
    await push()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(devices.all_arrived.wait(), 60)
    push_ms = (max(devices.arrived) - pushed) * 1000 if devices.arrived else float("nan")
    median_ms = (percentile(devices.arrived, 50) - pushed) * 1000 if devices.arrived else 0
    first_ms = (min(devices.arrived) - pushed) * 1000 if devices.arrived else 0
    push_cpu = cpu_s(pid) - cpu0
    reached = len(devices.arrived)
    await devices.close()
    await asyncio.sleep(3)  # the server sees every close, then gives memory back
    closed_kb = rss_kb(pid)
    n = len(tokens)
    per_stream = (open_kb - idle) / n
    return {
        "streams": n,
        "reached": reached,
        "connect_s": round(connect_s, 2),
        "idle_rss_mb": round(idle / 1024, 1),
        "open_rss_mb": round(open_kb / 1024, 1),
        "kb_per_stream": round(per_stream, 2),
        "kb_per_stream_after_close": round((closed_kb - idle) / n, 2),
        "returned_fraction": round(1 - (closed_kb - idle) / n / per_stream, 2),
        "open_after_close": await still_open() if still_open is not None else None,
        "push_ms": round(push_ms, 1),
        "push_p50_ms": round(median_ms, 1),
        # first device to last: the fan-out alone, without the fetch and the request before it
        "push_first_ms": round(first_ms, 1),
        "fanout_ms": round(push_ms - first_ms, 1),
        "push_cpu_ms": round(push_cpu * 1000, 1),
        "push_cpu_s_per_1000": round(push_cpu / max(reached, 1) * 1000, 4),
    }


def start(cmd: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # the server's log (an access line per stream) is not wanted
        cmd,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


async def run_bare(tokens: list[str]) -> dict[str, Any]:
    port = free_port()
    proc = start([sys.executable, str(ROOT / "bench" / "bare_sse.py"), str(port)])
    try:
        assert proc.stdout is not None and b"ready" in proc.stdout.readline()

        async def push() -> None:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /push HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()

        return await measure(proc.pid, port, "/runtime/v1/events?", tokens, push)
    finally:
        proc.terminate()
        proc.wait(10)


async def run_miniport(data_dir: Path, appid: str, admin: str, tokens: list[str]) -> dict[str, Any]:
    port = free_port()
    proc = start(
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
        ]
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz")
        async with aiohttp.ClientSession() as session:

            async def push() -> None:
                async with session.post(
                    f"{base}/admin/v1/apps/{appid}/devtools/push",
                    headers={"Authorization": f"Bearer {admin}"},
                    json={"user_id": USER},
                ) as resp:
                    assert resp.status == 200, await resp.text()

            async def still_open() -> int:
                async with session.get(f"{base}/metrics") as resp:
                    text = await resp.text()
                found = re.search(r"^miniport_device_connections (\S+)$", text, re.M)
                return int(float(found.group(1))) if found else -1

            path = f"/runtime/v1/events?appid={appid}&"
            return await measure(proc.pid, port, path, tokens, push, still_open)
    finally:
        proc.terminate()
        proc.wait(10)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=10_000)
    args = parser.parse_args()
    raise_fd_limit(args.devices + 1000)
    load = loadavg()
    with dev_server() as dev_url, tempfile.TemporaryDirectory() as tmp:
        appid, admin, tokens = await seed(Path(tmp), dev_url, args.devices)
        bare = await run_bare(tokens)
        print("bare", json.dumps(bare), flush=True)
        mini = await run_miniport(Path(tmp), appid, admin, tokens)
        print("miniport", json.dumps(mini), flush=True)
    out = {
        "bench": "event_stream",
        "devices": args.devices,
        "load_before": load,
        "bare": bare,
        "miniport": mini,
        "push_ratio_bare_over_miniport": round(bare["push_ms"] / mini["push_ms"], 3),
        "fanout_ratio_bare_over_miniport": round(bare["fanout_ms"] / mini["fanout_ms"], 3),
        "goals_met": {
            "kb_per_idle_stream_le_10": mini["kb_per_stream"] <= 10,
            "push_10k_lt_200ms": mini["push_ms"] < 200 and mini["reached"] == args.devices,
            # every stream let go, and most of their memory back with the system (what is left
            # is the allocator's: the bare server keeps ~90 % of its smaller share)
            "memory_returned": mini["open_after_close"] == 0 and mini["returned_fraction"] >= 0.5,
            "open_10k_lt_600mb": mini["open_rss_mb"] < 600,
        },
    }
    print(json.dumps(out))


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main())
