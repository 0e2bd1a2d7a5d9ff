"""Refreshes on several nodes sharing one state database (SQLite file, PostgreSQL): a refresh
started on one node is followed and cancelled on another, survives a restart, and of starts on
two nodes at once exactly one runs, the database refusing the others even when every start
passed the running check; finished refreshes are pruned."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from miniport.clock import FakeClock
from miniport.errors import Conflict, NotFound
from miniport.platform import Platform, create_platform
from miniport.storage import schema as t
from tests.conftest import confirm_url, make_settings
from tests.services.test_refresh import USERS, fetched_app
from tests.support.platforms import Counter, run

Make = Callable[..., Awaitable[Platform]]


def count(p: Platform, table: Any, *where: Any) -> int:
    with p.db.reading() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar())


async def test_a_refresh_started_on_one_node_is_followed_and_cancelled_on_another(
    platforms: Make, fake_clock: FakeClock, counter: Counter, db: dict[str, Any]
) -> None:
    a = await platforms(clock=fake_clock, **db)
    b = await platforms(clock=fake_clock, **db)
    appid = await fetched_app(a, counter)
    fake_clock.advance(60)
    rid = (await a.refresh.start(appid, {"all": True}))["refresh_id"]
    shown = await b.refresh.progress(appid, rid)
    assert (shown["state"], shown["done"], shown["total"]) == ("running", 0, len(USERS))
    with pytest.raises(Conflict, match="still running"):
        await b.refresh.start(appid, {"users": ["u1"]})
    assert await run(b) == len(USERS)  # b's engine fetches the users a made due
    for node in (b, a):
        shown = await node.refresh.progress(appid, rid)
        assert (shown["state"], shown["done"]) == ("done", len(USERS))
        assert shown["finished_at"] == fake_clock.now()

    fake_clock.advance(60)
    second = (await b.refresh.start(appid, {"users": USERS[:5]}))["refresh_id"]
    assert count(a, t.refresh_users) == 5  # the running refresh's users only
    cancelled = await a.refresh.cancel(appid, second)
    assert (cancelled["state"], cancelled["done"]) == ("cancelled", 0)
    assert await run(b) == 0  # back on their schedule, on every node
    assert (await b.refresh.progress(appid, second))["state"] == "cancelled"
    assert (await b.refresh.cancel(appid, second))["state"] == "cancelled"  # once
    audit = await b.db.read(b.registry.list_audit, appid)
    cancels = [e for e in audit if e.action == "refresh.cancel"]  # audited, once
    assert [(e.actor, e.detail["refresh_id"]) for e in cancels] == [("app-backend", second)]
    assert count(a, t.refresh_users) == 0  # a finished refresh keeps no users
    with pytest.raises(NotFound):
        await b.refresh.progress("wx_other", second)  # not a refresh of that app


async def test_starts_on_two_nodes_at_once_run_one_refresh(
    platforms: Make, fake_clock: FakeClock, counter: Counter, db: dict[str, Any]
) -> None:
    a = await platforms(clock=fake_clock, **db)
    b = await platforms(clock=fake_clock, **db)
    appid = await fetched_app(a, counter)
    fake_clock.advance(60)
    results = await asyncio.gather(
        *(node.refresh.start(appid, {"all": True}) for node in (a, b, a, b)),
        return_exceptions=True,
    )
    started = [r for r in results if isinstance(r, dict)]
    assert len(started) == 1, results
    assert all(isinstance(r, Conflict) for r in results if not isinstance(r, dict)), results
    assert count(b, t.refreshes, t.refreshes.c.state == "running") == 1
    audit = await b.db.read(b.registry.list_audit, appid)
    assert [e.action for e in audit].count("refresh.start") == 1


@pytest.mark.postgres
async def test_starts_that_all_passed_the_running_check_are_refused_by_the_database(
    platforms: Make, fake_clock: FakeClock, counter: Counter, pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Two nodes' starts both find no running refresh before either inserts its own (a
    barrier holds each after its check): PostgreSQL runs the two transactions at once, and the
    unique index makes the second insert wait for the first and fail."""
    a = await platforms(clock=fake_clock, database_url=pg_url)
    b = await platforms(clock=fake_clock, database_url=pg_url)
    appid = await fetched_app(a, counter)
    fake_clock.advance(60)
    barrier = threading.Barrier(2, timeout=20)
    for node in (a, b):
        check = node.refresh.store._running

        def checked_together(conn: Any, app: str, check: Any = check) -> Any:
            found = check(conn, app)
            barrier.wait()
            return found

        monkeypatch.setattr(node.refresh.store, "_running", checked_together)
    results = await asyncio.gather(
        a.refresh.start(appid, {"all": True}),
        b.refresh.start(appid, {"users": USERS[:3]}),
        return_exceptions=True,
    )
    started = [r for r in results if isinstance(r, dict)]
    assert len(started) == 1, results
    refused = [r for r in results if not isinstance(r, dict)]
    assert isinstance(refused[0], Conflict) and "still running" in refused[0].message, results
    # the refused start left nothing behind: its users were not named, nor audited
    assert count(a, t.refreshes) == 1
    assert count(a, t.refresh_users) == started[0]["users"]
    audit = await a.db.read(a.registry.list_audit, appid)
    assert [e.action for e in audit].count("refresh.start") == 1


async def test_a_restarted_node_knows_the_refresh(
    platforms: Make, fake_clock: FakeClock, counter: Counter, db: dict[str, Any], tmp_path: Path
) -> None:
    first = create_platform(make_settings(tmp_path, **db), fake_clock)
    await first.start()
    try:
        appid = await fetched_app(first, counter)
        fake_clock.advance(60)
        rid = (await first.refresh.start(appid, {"users": USERS[:4]}))["refresh_id"]
    finally:
        await first.close()
    again = await platforms(clock=fake_clock, **db)  # the same data directory / database
    shown = await again.refresh.progress(appid, rid)
    assert (shown["state"], shown["done"], shown["total"]) == ("running", 0, 4)
    with pytest.raises(Conflict, match=rid):
        await again.refresh.start(appid, {"all": True})
    assert await run(again) == 4
    assert (await again.refresh.progress(appid, rid))["state"] == "done"


async def test_finished_refreshes_are_pruned_by_age_and_count(
    platforms: Make, fake_clock: FakeClock, db: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from miniport.storage import refreshes as refresh_store

    monkeypatch.setattr(refresh_store, "KEPT_PER_APP", 2)
    p = await platforms(clock=fake_clock, **db)
    shop = (await p.apps.create("shop", "dev")).appid
    other = (await p.apps.create("other", "dev")).appid
    for appid in (shop, other):  # a periodic URL, no users
        await confirm_url(p, appid, "periodic", "http://127.0.0.1:9/periodic")
    ids = []
    for _ in range(4):  # no users: each is done at once
        ids.append((await p.refresh.start(shop, {"all": True}))["refresh_id"])
        fake_clock.advance(1)
    for rid in ids[:2]:
        with pytest.raises(NotFound):
            await p.refresh.progress(shop, rid)
    for rid in ids[2:]:
        assert (await p.refresh.progress(shop, rid))["state"] == "done"
    fake_clock.advance(refresh_store.KEPT_S + 1)
    kept = (await p.refresh.start(other, {"all": True}))["refresh_id"]  # another app's start
    for rid in ids[2:]:
        with pytest.raises(NotFound):
            await p.refresh.progress(shop, rid)
    assert (await p.refresh.progress(other, kept))["state"] == "done"
