"""Benchmark: what the console's real-time push costs at ingest (process CPU seconds).

For batches of ``--batch`` built-in events (``$pageview`` with context, as runtimes send them):
the CPU of checking each batch (``check_batch``, what ingest does anyway) against the CPU of
``LiveFeed.accepted`` when nobody watches the app (a dict lookup) and when somebody does (the
batch folded into the pending digest; one message per 0.25 s at most, delivered through the
in-process broker to one subscription). ``baseline``: the same paced loop without the feed
(what the other two include of the event loop's own cost); ``unwatched_ns_per_batch``: a
million calls for an app nobody watches, in a tight loop. Runs ``--seconds`` of simulated
ingest per case at ``--rate`` batches a second, so the coalescing is what a node would do.

    .venv/bin/python bench/live_feed.py [--batch 50] [--rate 2000] [--seconds 3]

Last line: JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from miniport.analytics.definitions import AnalyticsConfig
from miniport.analytics.ingest_rules import RuntimeConfigView, check_batch
from miniport.events.broker import MemoryBroker
from miniport.services.live_feed import LiveFeed


def batch(i: int, n: int, now: int) -> dict[str, Any]:
    return {"sent_at": now, "context": {"$platform": "ios", "$scene": 1001, "$session": f"s{i}"},
            "events": [{"id": f"{i}-{k}", "event": "$pageview", "ts": now - k, "page": "pages/a",
                        "data": {"path": "pages/a"}} for k in range(n)]}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    view = RuntimeConfigView.from_config(AnalyticsConfig(fields=[], events=[]), {})
    now = int(time.time() * 1000)
    total = int(args.rate * args.seconds)
    checked = []
    cpu = time.process_time()
    for i in range(total):
        checked.append(check_batch(batch(i, args.batch, now), config=view, received_at_ms=now))
    check_cpu = time.process_time() - cpu
    out: dict[str, Any] = {"batches": total, "batch": args.batch,
                           "check_batch_cpu_s": round(check_cpu, 4)}
    for case in ("baseline", "unwatched", "watched"):  # baseline: the same loop, no feed
        broker = MemoryBroker()
        feed = LiveFeed(broker)
        sub = await feed.watch("wxWATCHED") if case == "watched" else None
        appid = "wxWATCHED" if case == "watched" else "wxNOBODY"
        cpu = time.process_time()
        started = time.monotonic()
        step = max(1, int(args.rate / 100))  # yield to the loop every 10 ms of simulated time
        for i, verdict in enumerate(checked):
            if case != "baseline":
                feed.accepted(appid, f"user{i % 500}", now, verdict.accepted)
            if i % step == step - 1:
                await asyncio.sleep(max(0.0, started + (i + 1) / args.rate - time.monotonic()))
        await asyncio.sleep(0.3)
        spent = time.process_time() - cpu - 0.0
        messages = len(sub.take()) if sub else 0
        out[case] = {"feed_cpu_s": round(spent, 4), "messages": feed.messages,
                     "delivered": messages,
                     "messages_per_s": round(feed.messages / args.seconds, 2)}
        await feed.close()
    feed = LiveFeed(MemoryBroker())
    one = checked[0].accepted
    cpu = time.process_time()
    for _ in range(1_000_000):
        feed.accepted("wxNOBODY", "u", now, one)
    out["unwatched_ns_per_batch"] = round((time.process_time() - cpu) * 1000, 1)
    await feed.close()
    out["load_average"] = os.getloadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=3)
    result = asyncio.run(run(parser.parse_args()))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
