"""Helpers shared by the benchmarks: a developer server in its own process, free ports."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def dev_server(delay_ms: float = 0.0) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "devserver.py"), str(port), str(delay_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "ready" not in line:
            raise RuntimeError("developer server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(5)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def wait_http(url: str, timeout_s: float = 20.0) -> None:
    import time
    import urllib.request

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def wrk(
    url: str, *, seconds: int, connections: int, headers: dict[str, str] | None = None
) -> float:
    """Requests per second from wrk (a C load generator: it does not steal the server's core
    the way a Python client would)."""
    import re
    import shutil

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if match is None or non2xx is not None:
        raise RuntimeError(f"wrk failed or got errors:\n{out}")
    return float(match.group(1))


def loadavg() -> float:
    """The 1-minute load average, printed beside every figure (this machine is shared)."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def cpu_s(pid: int | str = "self") -> float:
    """CPU seconds (user + system) a process has used, from its own counters in /proc: it does
    not depend on how busy the neighbours are."""
    import os

    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu_s() -> float:
    """CPU seconds (user + system) of this process, all its threads (DuckDB's own included),
    from ``getrusage``: finer than /proc's clock ticks for sub-second queries."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def pg_database(admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A fresh PostgreSQL database for one run, dropped afterwards."""
    import secrets

    import psycopg

    name = "miniport_bench_" + secrets.token_hex(4)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin_url.rsplit("/", 1)[0] + "/" + name
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sched_ns(pid: int | str = "self") -> tuple[int, int]:
    """Nanoseconds a process (or thread, ``self/task/TID``) has run on a CPU and waited for one
    (``/proc/PID/schedstat``): the run time is the work itself, the wait time is the neighbours'
    share of the machine."""
    with open(f"/proc/{pid}/schedstat") as f:
        run, wait, _ = f.read().split()
    return int(run), int(wait)


def floor_sql(appid: str, lo_ms: int, hi_ms: int) -> str:
    """The floor every analytics report is measured against: the distinct users of the same
    rows (one app, visible, the same time window), the least a per-user report can read."""
    return (
        f"SELECT count(DISTINCT user_id) FROM events WHERE appid = '{appid}' AND visible"
        f" AND ts_ms >= {int(lo_ms)} AND ts_ms < {int(hi_ms)}"
    )
