"""Retention on a FakeClock platform: events older than the window (30 days by default, a
setting) are never counted in reports, and the scheduled job deletes them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from miniport.clock import FakeClock
from miniport.platform import Platform, create_platform
from tests.conftest import make_settings
from tests.support.analytics_api import PURCHASE

DAY_S = 86_400


async def setup(p: Platform) -> str:
    appid = (await p.apps.create("ret", "test")).appid
    for name, kind in (("price", "int"), ("color", "string")):
        await p.analytics.add_field(appid, {"name": name, "type": kind})
    await p.analytics.save_event(appid, PURCHASE)
    await p.analytics.publish(appid, "test")
    return appid


async def report_at(p: Platform, clock: FakeClock, appid: str, ids: list[str]) -> None:
    now = int(clock.now() * 1000)
    batch = {
        "sent_at": now,
        "events": [{"id": i, "event": "purchase", "data": {"price": 1}, "ts": now} for i in ids],
    }
    assert (await p.analytics.ingest(appid, "u1", batch))["accepted"] == len(ids)


async def total(p: Platform, appid: str, days: int = 60) -> Any:
    now = int(p.clock.now() * 1000)
    found = await p.analytics.event_analysis(
        appid,
        event="purchase",
        metrics=["count"],
        group_by=[],
        filters=[],
        any_=False,
        granularity="all",
        from_ms=now - days * DAY_S * 1000,
        to_ms=now + 1,
        tz="UTC",
    )
    return found["rows"][0]["count"] if found["rows"] else 0


async def test_old_events_are_never_counted_and_the_job_deletes_them(
    platform: Platform, clock: FakeClock
) -> None:
    assert platform.analytics.retention_days == 30  # the default
    appid = await setup(platform)
    await report_at(platform, clock, appid, ["old1", "old2"])
    clock.advance(10 * DAY_S)
    await report_at(platform, clock, appid, ["mid"])
    clock.advance(15 * DAY_S)
    await report_at(platform, clock, appid, ["new"])
    assert await total(platform, appid) == 4

    clock.advance(6 * DAY_S)  # old1/old2 are now 31 days old, mid 21, new 6
    # not counted even before the job has run ...
    assert await platform.analytics.count(appid, "purchase") == 4
    assert await total(platform, appid) == 2
    exported = await platform.analytics.export_csv(appid, "purchase", 0, None)
    assert len(exported.splitlines()) == 1 + 2  # the header and the two recent events
    # ... and the job deletes them
    assert await platform.analytics.apply_retention() == 2
    assert await platform.analytics.count(appid, "purchase") == 2
    assert await total(platform, appid) == 2

    clock.advance(10 * DAY_S)  # mid is 31 days old
    assert await total(platform, appid) == 1
    assert await platform.analytics.apply_retention() == 1
    assert await platform.analytics.count(appid) == 1


async def test_the_window_is_a_setting_and_the_loop_runs_the_job(tmp_path: Path) -> None:
    clock = FakeClock(1_800_000_000.0)
    p = create_platform(make_settings(tmp_path, analytics_retention_days=7), clock)
    await p.start()
    try:
        appid = await setup(p)
        await report_at(p, clock, appid, ["a", "b"])
        clock.advance(5 * DAY_S)
        await report_at(p, clock, appid, ["c"])
        clock.advance(3 * DAY_S)  # a, b: 8 days old; c: 3
        assert await total(p, appid) == 1

        stop = asyncio.Event()
        loop = asyncio.create_task(p.analytics.retention_loop(stop, every_s=0.05))
        try:
            for _ in range(200):
                if await p.analytics.count(appid) == 1:
                    break
                await asyncio.sleep(0.02)
            assert await p.analytics.count(appid) == 1
            clock.advance(5 * DAY_S)  # c: 8 days old, deleted at the next round
            for _ in range(200):
                if await p.analytics.count(appid) == 0:
                    break
                await asyncio.sleep(0.02)
            assert await p.analytics.count(appid) == 0
        finally:
            stop.set()
            await asyncio.wait_for(loop, 5)
    finally:
        await p.close()


async def test_the_loop_outlives_a_failed_round(tmp_path: Path) -> None:
    """A round that raised anything but AnalyticsUnavailable (the id index's PostgreSQL
    away, a disk error) ended the loop: no event was deleted again until a restart."""
    clock = FakeClock(1_800_000_000.0)
    p = create_platform(make_settings(tmp_path, analytics_retention_days=7), clock)
    await p.start()
    try:
        appid = await setup(p)
        await report_at(p, clock, appid, ["a"])
        clock.advance(8 * DAY_S)
        store = p.analytics.store
        delete, failed = store.delete_older_than, []

        def fails_once(cutoff_ms: int) -> int:
            if not failed:
                failed.append(cutoff_ms)
                raise ConnectionError("the id index went away")
            return delete(cutoff_ms)

        store.delete_older_than = fails_once  # type: ignore[method-assign]
        stop = asyncio.Event()
        loop = asyncio.create_task(p.analytics.retention_loop(stop, every_s=0.05))
        try:
            for _ in range(200):
                if await p.analytics.count(appid) == 0:
                    break
                await asyncio.sleep(0.02)
            assert failed and await p.analytics.count(appid) == 0
        finally:
            stop.set()
            await asyncio.wait_for(loop, 5)
    finally:
        await p.close()


async def test_a_stop_interrupts_a_round_that_waits(tmp_path: Path) -> None:
    """A round waiting for the store's deletes (ClickHouse: up to ten minutes) held up the
    server's stop as long; the loop now tells the store to give up the wait."""
    import threading

    from miniport.errors import AnalyticsUnavailable

    p = create_platform(make_settings(tmp_path), FakeClock(1_800_000_000.0))
    await p.start()
    try:
        store, started, given_up = p.analytics.store, threading.Event(), threading.Event()

        def waits_for_deletes(cutoff_ms: int) -> int:
            started.set()
            if not given_up.wait(60):
                return 0
            raise AnalyticsUnavailable("the server is stopping; ClickHouse goes on deleting")

        store.delete_older_than = waits_for_deletes  # type: ignore[method-assign]
        store.interrupt = given_up.set  # type: ignore[method-assign]
        stop = asyncio.Event()
        loop = asyncio.create_task(p.analytics.retention_loop(stop, every_s=3600))
        assert await asyncio.to_thread(started.wait, 10)  # the round is waiting
        stop.set()
        await asyncio.wait_for(loop, 10)
        assert given_up.is_set()
    finally:
        await p.close()
