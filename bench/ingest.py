"""Analytics ingestion: events/s through the runtime HTTP API (``POST .../analytics/events``,
batches of 100, a real ``miniport serve`` process) until N events, then a count through the
admin API proving none was lost or doubled; against a bare in-process DuckDB append of the same
rows (the event store's ``append`` in calls of 100 rows) in the same run.

    python bench/ingest.py [--events 1000000] [--connections 32] [--batch 100]

The load generator is wrk (C, one thread) with a Lua script that builds each batch: event ids
are ``<wrk thread>-<counter>``, so every event is unique; once N events have been sent, the
script re-sends earlier ids (duplicates the server must drop) until wrk stops, so the stored
count must be exactly N. Target: >= 50,000 events/s on the 2-core machine. Last line: JSON,
with the server's CPU seconds per 1,000 events (its own /proc counters, all threads) beside the
bare append's per 1,000 rows (this process's): figures the neighbours' load does not move.

``--profile FILE`` runs the server under cProfile (its stats are written to FILE on exit)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import cpu_s, free_port, wait_http  # noqa: E402
from miniport.analytics.event_store import DuckDBEventStore, StoredEvent  # noqa: E402
from miniport.config import Settings  # noqa: E402
from miniport.platform import create_platform  # noqa: E402

COLORS = ("red", "green", "blue", "black", "white")

LUA = r"""
-- globals, so that done() can read them from each thread with thread:get()
batch = %(batch)d
max_requests = %(requests)d
path = "%(path)s"
marker = "%(marker)s"
headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(token)s"}
colors = {"red", "green", "blue", "black", "white"}
counter = 0
responses = 0
errors = 0
accepted = 0
duplicates = 0
started = 0
finished = false
tid = 0
local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_usec; } timeval_t;
  int gettimeofday(timeval_t *tv, void *tz);
]]
local tv = ffi.new("timeval_t")

local function now_s()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) + tonumber(tv.tv_usec) / 1e6
end

function init(args)
  tid = 1
end

function request()
  if started == 0 then
    started = now_s()
  end
  local first = counter
  if counter >= max_requests then
    first = counter %% max_requests  -- past N: earlier batches again (duplicates)
  end
  counter = counter + 1
  local now = os.time() * 1000
  local parts = {}
  for i = 0, batch - 1 do
    local n = first * batch + i
    parts[#parts + 1] = string.format(
      '{"id":"%%d-%%d","event":"purchase","data":{"price":%%d,"color":"%%s"},"ts":%%d}',
      tid, n, n %% 1000, colors[(n %% 5) + 1], now)
  end
  local body = '{"sent_at":' .. now .. ',"events":[' .. table.concat(parts, ",") .. ']}'
  return wrk.format("POST", path, headers, body)
end

function response(status, hdrs, body)
  responses = responses + 1
  if status ~= 200 then
    errors = errors + 1
  else
    accepted = accepted + tonumber(string.match(body, '"accepted":%%s*(%%d+)'))
    duplicates = duplicates + tonumber(string.match(body, '"duplicates":%%s*(%%d+)'))
  end
  -- done when every unique event is acknowledged as stored (or, if some never are, after
  -- twice the requests needed: the admin count then shows the loss)
  if not finished and (accepted >= max_requests * batch or responses >= 2 * max_requests) then
    finished = true
    local f = io.open(marker, "w")
    f:write(string.format(
      "RESULT responses=%%d errors=%%d accepted=%%d duplicates=%%d seconds=%%.6f\n",
      responses, errors, accepted, duplicates, now_s() - started))
    f:close()
    wrk.thread:stop()
  end
end
"""


def seed(data_dir: Path) -> tuple[str, str, str]:
    """An app with two fields and one published API event; a runtime token; an admin key."""

    async def go() -> tuple[str, str, str]:
        platform = create_platform(Settings(data_dir=data_dir, dev=True))
        await platform.start()
        try:
            app = await platform.apps.create("bench", "bench")
            svc = platform.analytics
            await svc.add_field(app.appid, {"name": "price", "type": "int"})
            await svc.add_field(app.appid, {"name": "color", "type": "string"})
            await svc.save_event(
                app.appid,
                {
                    "name": "purchase",
                    "display_name": "购买",
                    "mode": "api",
                    "fields": ["price", "color"],
                },
            )
            await svc.publish(app.appid, "bench")
            token = platform.auth.runtime_token("bench-user", "bench-device")
            key = (await platform.auth.create_key("api", "bench", "admin"))["key"]
            return app.appid, token, str(key)
        finally:
            await platform.close()

    return asyncio.run(go())


def bare_append(path: Path, events: int, batch: int) -> tuple[float, float]:
    """Rows/s of the store's append, 100-row calls, one thread, the same rows as over HTTP,
    and the CPU seconds this process (all its threads: DuckDB's too) spent on them."""
    now = int(time.time() * 1000)
    rows = [
        StoredEvent(
            "mpbench",
            f"1-{n}",
            "purchase",
            "bench-user",
            now,
            now,
            False,
            None,
            None,
            None,
            {0: n % 1000},
            {0: COLORS[n % 5]},
        )
        for n in range(events)
    ]
    store = DuckDBEventStore(path)
    try:
        start = time.perf_counter()
        cpu_start = time.process_time()
        for i in range(0, events, batch):
            store.append(rows[i : i + batch])
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        stored = store.count("mpbench")
    finally:
        store.close()
    if stored != events:
        raise RuntimeError(f"bare append stored {stored} of {events}")
    return events / elapsed, cpu


def admin_count(base: str, appid: str, key: str) -> int:
    request = urllib.request.Request(
        f"{base}/admin/v1/apps/{appid}/analytics/count?event=purchase",
        headers={"Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return int(json.load(resp)["count"])


def run_wrk(
    base: str, appid: str, token: str, *, events: int, batch: int, connections: int, tmp: Path
) -> tuple[float, dict[str, int]]:
    """Events/s from the first request until all N events are acknowledged as stored (timed
    inside wrk's Lua), and what the responses said. wrk runs until told to stop: the script
    writes its result to a marker file then, and this function stops wrk."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    marker = tmp / "wrk-result.txt"
    script = tmp / "ingest.lua"
    script.write_text(
        LUA
        % {
            "batch": batch,
            "requests": events // batch,
            "path": f"/runtime/v1/apps/{appid}/analytics/events",
            "token": token,
            "marker": str(marker),
        }
    )
    cmd = ["wrk", "-t1", f"-c{connections}", "-d600s", "--timeout", "30s", "-s", str(script)]
    proc = subprocess.Popen(
        [*cmd, base + "/"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 600
        text = ""
        while not text.endswith("\n"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"wrk ended without a result:\n{proc.communicate()[0]}")
            time.sleep(0.05)
            text = marker.read_text() if marker.exists() else ""
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0]
    match = re.search(
        r"RESULT responses=(\d+) errors=(\d+) accepted=(\d+) duplicates=(\d+)"
        r" seconds=([\d.]+)",
        text,
    )
    if match is None:
        raise RuntimeError(f"unreadable wrk result {text!r}:\n{out}")
    keys = ("responses", "errors", "accepted", "duplicates")
    seen = dict(zip(keys, map(int, match.groups()[:4]), strict=True))
    return events / float(match.group(5)), seen


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--profile", help="run the server under cProfile, stats to this file")
    args = parser.parse_args()
    if args.events % args.batch:
        raise SystemExit("--events must be a multiple of --batch")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIPORT_")}
    env["PYTHONPATH"] = str(ROOT / "src")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data_dir = tmp / "data"
        appid, token, key = seed(data_dir)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve = [sys.executable, "-m", "miniport", "serve", "--port", str(port)]
        if args.profile:
            serve = [sys.executable, "-m", "cProfile", "-o", args.profile, "-m", "miniport"]
            serve += ["serve", "--port", str(port)]
        # its log (an access line per request, as in production) to a file: shown if it fails
        server_log = tmp / "server.log"
        server = subprocess.Popen(
            [*serve, "--data-dir", str(data_dir), "--dev"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=server_log.open("wb"),
        )
        try:
            wait_http(f"{base}/healthz")
            load_http = os.getloadavg()[0]
            cpu_before = cpu_s(server.pid)
            http_rate, seen = run_wrk(
                base,
                appid,
                token,
                events=args.events,
                batch=args.batch,
                connections=args.connections,
                tmp=tmp,
            )
            server_cpu = cpu_s(server.pid) - cpu_before
            stored = admin_count(base, appid, key)
        except BaseException:
            sys.stderr.write(server_log.read_text(errors="replace")[-3000:])
            raise
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(60)
        load_before = os.getloadavg()[0]
        bare_rate, bare_cpu = bare_append(tmp / "bare.duckdb", args.events, args.batch)
    lost = max(0, args.events - stored)
    doubled = max(0, stored - args.events)
    ratio = http_rate / bare_rate
    server_ms = server_cpu / args.events * 1000 * 1000  # CPU ms per 1,000 events
    bare_ms = bare_cpu / args.events * 1000 * 1000
    print(
        f"HTTP ingest: {http_rate:,.0f} events/s ({args.events:,} events in batches of"
        f" {args.batch}, {args.connections} connections; {seen['responses']} responses,"
        f" {seen['errors']} errors, {seen['accepted']:,} accepted, {seen['duplicates']:,}"
        f" duplicates dropped); bare DuckDB append: {bare_rate:,.0f} rows/s; ratio {ratio:.2f};"
        f" stored {stored:,}, lost {lost}, doubled {doubled}; CPU per 1,000 events: server"
        f" {server_ms:.1f} ms (all threads), bare append {bare_ms:.1f} ms (CPU ratio"
        f" {bare_ms / server_ms:.2f}); load average {load_http:.2f} before HTTP,"
        f" {load_before:.2f} before bare, on {os.cpu_count()} cores"
    )
    print(
        json.dumps(
            {
                "bench": "ingest",
                "events": args.events,
                "batch": args.batch,
                "connections": args.connections,
                "http_events_per_s": round(http_rate),
                "bare_append_per_s": round(bare_rate),
                "ratio": round(ratio, 3),
                "stored": stored,
                "lost": lost,
                "doubled": doubled,
                "http_errors": seen["errors"],
                "server_cpu_us_per_event": round(server_cpu / args.events * 1e6, 1),
                "server_cpu_s_per_1000_events": round(server_ms / 1000, 5),
                "bare_cpu_s_per_1000_rows": round(bare_ms / 1000, 5),
                "cpu_ratio": round(bare_ms / server_ms, 3),
                "load_before_http": load_http,
                "load_before_bare": load_before,
            }
        )
    )


if __name__ == "__main__":
    main()
