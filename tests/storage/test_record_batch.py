"""Fetch results are stored in batches (one statement per kind on PostgreSQL): each batch keeps
every log row, the newest body per key, and the schedule rules of one-by-one writes. On SQLite
and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from miniport.clock import FakeClock
from miniport.platform import Platform
from miniport.storage.fetches import FetchRecord, ScheduleUpdate
from tests.support.platforms import Counter, periodic_app

Make = Callable[..., Awaitable[Platform]]


def attempt(appid: str, user_id: str, body: str | None, ts: float) -> FetchRecord:
    return FetchRecord(
        appid=appid,
        user_id=user_id,
        kind="pre",
        trigger="launch",
        ts=ts,
        url="http://127.0.0.1/x",
        verdict="cached" if body is not None else "http_error",
        status=200 if body is not None else 500,
        body=body,
        fetched_at_ms=int(ts * 1000) if body is not None else None,
        path="p",
        query=None,
        scene=1001 if body is not None else None,
    )


async def test_a_batch_keeps_every_log_row_and_the_newest_body_per_key(
    platforms: Make, fake_clock: FakeClock, counter: Counter, db: dict[str, Any]
) -> None:
    p = await platforms(clock=fake_clock, **db)
    appid = await periodic_app(p, counter.url)
    now = fake_clock.now()
    batch = [
        attempt(appid, "u", "old", now),
        attempt(appid, "v", "v1", now),
        attempt(appid, "u", None, now + 1),  # a failure stores no body
        attempt(appid, "u", "new", now + 2),
    ]
    await p.db.write(p.fetches.write_batch, [], batch)
    assert (await p.db.read(p.fetches.get_data, appid, "u", "pre")).body == "new"  # type: ignore[union-attr]
    assert (await p.db.read(p.fetches.get_data, appid, "v", "pre")).body == "v1"  # type: ignore[union-attr]
    log = await p.db.read(p.fetches.list_log, appid)
    assert sorted((e["user_id"], e["verdict"]) for e in log) == [
        ("u", "cached"), ("u", "cached"), ("u", "http_error"), ("v", "cached"),
    ]


async def test_a_batch_of_schedules_follows_the_one_by_one_rules(
    platforms: Make, fake_clock: FakeClock, counter: Counter, db: dict[str, Any]
) -> None:
    p = await platforms(clock=fake_clock, **db)
    appid = await periodic_app(p, counter.url)
    now = fake_clock.now()
    for user_id in ("ok", "failed", "moved"):
        await p.db.write(p.fetches.record_launch, appid, user_id, now)
        await p.db.write(p.fetches.set_token, appid, user_id, "t-" + user_id, now)
    first = [
        ScheduleUpdate(appid, u, now + 100, 0, now, None, last_success_at=now, etag="e1",
                       last_modified="m1", new_validators=True, token="t-" + u)
        for u in ("ok", "failed", "moved")
    ]
    await p.db.write(p.fetches.record, [], first)
    await p.db.write(p.fetches.set_token, appid, "moved", "t-new", now)  # while in flight
    second = [
        ScheduleUpdate(appid, "ok", now + 200, 0, now + 1, None, last_success_at=now + 1,
                       etag=None, last_modified=None, new_validators=False, token="t-ok"),
        ScheduleUpdate(appid, "failed", now + 60, 3, now + 1, "down", token="t-failed"),
        ScheduleUpdate(appid, "moved", now + 60, 1, now + 1, "down", token="t-moved"),
    ]
    await p.db.write(p.fetches.record, [], second)
    users = {u: await p.db.read(p.fetches.get_user, appid, u) for u in ("ok", "failed", "moved")}
    ok, failed, moved = users["ok"], users["failed"], users["moved"]
    assert ok is not None and failed is not None and moved is not None
    # a 304-like success keeps the validators; a failure keeps the last success and validators
    assert (ok["next_due_at"], ok["last_success_at"], ok["etag"]) == (now + 200, now + 1, "e1")
    assert (failed["next_due_at"], failed["failures"]) == (now + 60, 3)
    assert failed["last_error"] == "down"
    assert (failed["last_success_at"], failed["etag"], failed["last_modified"]) == (now, "e1", "m1")
    assert failed["lease_until"] is None
    # the token changed while the fetch was in flight: the pair stays due at once
    assert (moved["next_due_at"], moved["failures"]) == (now, 0)
    assert moved["last_error"] == "down"
