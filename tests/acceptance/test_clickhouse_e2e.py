"""End to end: two ``miniport serve`` processes on one PostgreSQL, one Redis and one ClickHouse
take a stream of event batches; one is killed with SIGKILL mid-stream, its unanswered
batches are sent again to the other (as a client or a load balancer would), and every
acknowledged event is counted exactly once, by the survivor's reports and in ClickHouse."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from miniport.analytics.clickhouse_store import ClickHouseEventStore
from tests.conftest import event_keys_at, free_port, make_settings
from tests.support.analytics_api import PURCHASE, now_ms

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(300)]
MINIPORT = str(Path(sys.executable).parent / "miniport")
BATCHES_PER_NODE = 30
PER_BATCH = 40


async def serve(data: Path, env: dict[str, str]) -> tuple[str, asyncio.subprocess.Process]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        MINIPORT, "serve", "--dev", "--port", str(port), "--data-dir", str(data), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            assert proc.returncode is None, "the server exited"
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return url, proc
            await asyncio.sleep(0.05)
    raise AssertionError("the server did not start")


def batch(first: int, now: int) -> dict[str, Any]:
    return {
        "sent_at": now,
        "events": [
            {"id": str(i), "event": "purchase", "data": {"price": 1}, "ts": now}
            for i in range(first, first + PER_BATCH)
        ],
    }


async def test_two_serve_processes_one_killed_mid_stream(
    tmp_path: Path, pg_url: str, redis_url: str, clickhouse_url: str
) -> None:
    from miniport.platform import create_platform

    setup = create_platform(
        make_settings(tmp_path / "setup", database_url=pg_url, analytics_url=clickhouse_url)
    )
    appid = (await setup.apps.create("analytics", "test")).appid
    for name, kind in (("price", "int"), ("color", "string")):
        await setup.analytics.add_field(appid, {"name": name, "type": kind})
    await setup.analytics.save_event(appid, PURCHASE)
    await setup.analytics.publish(appid, "test")
    token = setup.auth.runtime_token("u1")
    await setup.close()

    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIPORT_")} | {
        "MINIPORT_DATABASE_URL": pg_url,
        "MINIPORT_REDIS_URL": redis_url,
        "MINIPORT_ANALYTICS_URL": clickhouse_url,
    }
    (url_a, proc_a), (url_b, proc_b) = await asyncio.gather(
        serve(tmp_path / "a", env), serve(tmp_path / "b", env)
    )
    headers = {"Authorization": f"Bearer {token}"}
    path = f"/runtime/v1/apps/{appid}/analytics/events"
    now = now_ms()
    acked: set[int] = set()
    unanswered: list[int] = []

    async def stream(session: aiohttp.ClientSession, url: str, offset: int) -> None:
        for k in range(BATCHES_PER_NODE):
            first = (offset + k) * PER_BATCH
            try:
                async with session.post(url + path, json=batch(first, now), headers=headers) as r:
                    assert r.status == 200, await r.text()
                    answer = await r.json()
                    assert answer["rejected"] == []
                    acked.update(range(first, first + PER_BATCH))
            except aiohttp.ClientError:
                unanswered.append(first)
            if url == url_b and k == BATCHES_PER_NODE // 3 and proc_b.returncode is None:
                proc_b.send_signal(signal.SIGKILL)  # mid-stream, batches still in flight

    try:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(
                stream(session, url_a, 0),
                stream(session, url_b, BATCHES_PER_NODE),
                *(stream(session, url_b, BATCHES_PER_NODE + 100 * j) for j in (1, 2)),
            )
            await asyncio.wait_for(proc_b.wait(), 30)  # killed: no graceful shutdown
            assert unanswered, "node b was killed before any batch went unanswered"
            acked_before_retry = set(acked)
            for first in unanswered:  # the client retries on the surviving node
                async with session.post(url_a + path, json=batch(first, now), headers=headers) as r:
                    assert r.status == 200
                    acked.update(range(first, first + PER_BATCH))
        reader = event_keys_at(tmp_path / "k.db")
        with ClickHouseEventStore.from_url(clickhouse_url, reader) as store:
            assert store.count(appid) == len(acked)
        assert acked_before_retry < acked
    finally:
        for proc in (proc_a, proc_b):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 30)
