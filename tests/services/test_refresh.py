"""Refreshes from the developer's back end: the engine fetches the chosen users (and tells their
devices), progress counts them, one refresh per app at a time, a cancel puts the rest back on
their schedule; and the HTTP API accepts an access token or the app's secret only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from miniport.clock import FakeClock
from miniport.domain.requests import Launch
from miniport.errors import Conflict, InvalidInput, NotFound
from miniport.platform import Platform
from miniport.storage import schema as t
from tests.conftest import LiveServer, confirm_url
from tests.support.platforms import Counter, eventually, run

Make = Callable[..., Awaitable[Platform]]
USERS = [f"u{i}" for i in range(12)]


async def fetched_app(p: Platform, counter: Counter) -> str:
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "periodic", counter.url + "/periodic")
    for user in USERS:
        await p.background.launch(app.appid, user, Launch())
        await p.background.set_token(app.appid, user, user)
    assert await run(p) == len(USERS)
    return app.appid


async def test_a_refresh_of_every_user_runs_through_the_engine(
    platforms: Make, fake_clock: FakeClock, counter: Counter
) -> None:
    p = await platforms(clock=fake_clock)
    appid = await fetched_app(p, counter)
    device = p.broker.subscribe("u3", "phone")
    fake_clock.advance(60)
    started = await p.refresh.start(appid, {"all": True})
    assert started["users"] == len(USERS)
    rid = started["refresh_id"]
    assert await p.refresh.progress(appid, rid) == {
        **await p.refresh.progress(appid, rid), "state": "running", "done": 0, "total": 12
    }
    with pytest.raises(Conflict, match="still running"):
        await p.refresh.start(appid, {"users": ["u1"]})
    counter.requests.clear()
    assert await run(p) == len(USERS)
    assert sorted(r.query["token"] for r in counter.requests) == sorted(USERS)
    shown = await p.refresh.progress(appid, rid)
    assert (shown["state"], shown["done"], shown["total"]) == ("done", 12, 12)
    message = device.pending.popleft()
    assert message["type"] == "backgroundFetchData" and message["fetchedData"] == "data for u3"

    again = await p.refresh.start(appid, {"users": ["u1", "u2", "nobody", "u1"]})
    assert again["users"] == 2  # unknown users are left out, duplicates once
    assert await run(p) == 2


async def test_a_cancelled_refresh_leaves_the_rest_on_schedule(
    platforms: Make, fake_clock: FakeClock, counter: Counter
) -> None:
    p = await platforms(clock=fake_clock)
    appid = await fetched_app(p, counter)
    fake_clock.advance(60)
    rid = (await p.refresh.start(appid, {"users": USERS[:5]}))["refresh_id"]
    cancelled = await p.refresh.cancel(appid, rid)
    assert (cancelled["state"], cancelled["done"]) == ("cancelled", 0)
    assert await run(p) == 0  # nothing fetched: all back at last success + 12 h
    with p.db.reading() as conn:
        due = {r[0] for r in conn.execute(select(t.app_users.c.next_due_at))}
    assert len(due) == 1 and min(due) > fake_clock.now() + 11 * 3600
    # a cancelled refresh no longer blocks another one
    assert (await p.refresh.start(appid, {"all": True}))["users"] == len(USERS)


async def test_a_cancel_leaves_users_without_a_token_out_of_the_due_index(
    platforms: Make, fake_clock: FakeClock, counter: Counter
) -> None:
    """Such a user sits out until a token comes (a fetch would only say token_not_set): the
    cancel made them due now, for one such fetch each."""
    p = await platforms(clock=fake_clock)
    appid = await fetched_app(p, counter)
    await p.background.launch(appid, "tokenless", Launch())
    assert await run(p) == 1  # token_not_set: out of the due index
    fake_clock.advance(60)
    rid = (await p.refresh.start(appid, {"users": ["tokenless", "u1"]}))["refresh_id"]
    await p.refresh.cancel(appid, rid)
    c = t.app_users.c
    with p.db.reading() as conn:
        due = dict(conn.execute(select(c.user_id, c.next_due_at).where(c.appid == appid)).all())
    assert due["tokenless"] is None and due["u1"] > fake_clock.now() + 11 * 3600
    assert await run(p) == 0


@pytest.mark.parametrize(
    "body", [None, [], {}, {"users": []}, {"users": "u1"}, {"users": [1]}, {"all": False},
             {"all": True, "users": ["u1"]}, {"users": ["x" * 129]}],
)  # fmt: skip
async def test_bad_refresh_requests_are_refused(
    body: object, platforms: Make, fake_clock: FakeClock
) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "dev")
    with pytest.raises(InvalidInput):
        await p.refresh.start(app.appid, body)
    with pytest.raises(NotFound):
        await p.refresh.progress(app.appid, "rf_nope")


async def test_the_refresh_api_over_http(
    live: Callable[..., Awaitable[LiveServer]], http: aiohttp.ClientSession
) -> None:
    server = await live()
    p = server.platform
    app = await p.apps.create("shop", "dev")
    other = await p.apps.create("other", "dev")
    base = f"{server.url}/api/v1/apps/{app.appid}/background-fetch/refresh"
    token = (await p.wechat.token("client_credential", app.appid, app.secret))["access_token"]
    foreign = (await p.wechat.token("client_credential", other.appid, other.secret))[
        "access_token"
    ]
    for params in ({}, {"secret": "wrong"}, {"access_token": foreign}, {"access_token": "x"}):
        async with http.post(base, params=params, json={"all": True}) as resp:
            assert resp.status == 401, params
    async with http.post(base, params={"secret": app.secret}, json={"all": True}) as resp:
        assert resp.status == 409  # no periodic URL yet: nothing would be fetched
        assert "no enabled periodic data URL" in (await resp.json())["message"]
    await confirm_url(p, app.appid, "periodic", "http://127.0.0.1:9/periodic")
    async with http.post(base, params={"secret": app.secret}, json={"all": True}) as resp:
        assert resp.status == 200
        started = await resp.json()
    assert started["users"] == 0
    url = f"{base}/{started['refresh_id']}"
    async with http.get(url, params={"access_token": token}) as resp:
        assert await resp.json() == {**(await resp.json()), "state": "done", "total": 0}
    async with http.delete(url, params={"access_token": token}) as resp:
        assert (await resp.json())["state"] == "done"  # already finished: nothing to cancel
    async with http.post(base, params={"access_token": token}, json={"users": []}) as resp:
        assert resp.status == 422


async def test_concurrent_starts_run_one_refresh(
    platforms: Make, fake_clock: FakeClock, counter: Counter
) -> None:
    """The running check and the keep were apart (database reads between): four concurrent
    starts all passed the check."""
    p = await platforms(clock=fake_clock)
    appid = await fetched_app(p, counter)
    fake_clock.advance(60)  # after the fetches of fetched_app: a refresh is then running
    results = await asyncio.gather(
        *(p.refresh.start(appid, {"all": True}) for _ in range(4)), return_exceptions=True
    )
    started = [r for r in results if isinstance(r, dict)]
    assert len(started) == 1, results
    assert all(isinstance(r, Conflict) for r in results if not isinstance(r, dict))


async def test_a_listed_user_who_is_not_active_is_left_out(
    platforms: Make, fake_clock: FakeClock, counter: Counter
) -> None:
    """The engine parks an inactive pair unfetched: counted in, it kept the refresh running
    for good, and every later refresh of the app was refused."""
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("old", "dev")
    await confirm_url(p, app.appid, "periodic", counter.url)
    await p.background.launch(app.appid, "gone", Launch())
    await p.background.set_token(app.appid, "gone", "gone")
    fake_clock.advance(8 * 86400)  # past the 7 active days
    await p.background.launch(app.appid, "here", Launch())
    await p.background.set_token(app.appid, "here", "here")
    await run(p)
    fake_clock.advance(60)
    started = await p.refresh.start(app.appid, {"users": ["gone", "here"]})
    assert started["users"] == 1
    await run(p)
    shown = await p.refresh.progress(app.appid, started["refresh_id"])
    assert (shown["state"], shown["done"], shown["total"]) == ("done", 1, 1)


async def test_users_that_cannot_be_fetched_do_not_hold_a_refresh_open(
    platforms: Make, fake_clock: FakeClock, counter: Counter
) -> None:
    """An app whose periodic URL is disabled during a refresh has none of its users fetched
    (they leave the due index): counted as pending, they kept the refresh running for good,
    now across restarts too (refreshes are kept in the database), and every later refresh of
    the app was refused until someone cancelled it."""
    p = await platforms(clock=fake_clock)
    appid = await fetched_app(p, counter)
    fake_clock.advance(60)
    started = await p.refresh.start(appid, {"all": True})
    pending = await p.apps.request_change(appid, "periodic", "disable", None, "dev")
    await p.apps.confirm(pending.code, "dev")
    assert await run(p) == 0
    shown = await p.refresh.progress(appid, started["refresh_id"])
    assert (shown["state"], shown["total"]) == ("done", len(USERS))
    assert shown["finished_at"] is not None
    with pytest.raises(Conflict, match="no enabled periodic data URL"):  # not "still running"
        await p.refresh.start(appid, {"all": True})


async def test_a_refresh_leaves_out_the_users_being_fetched_and_ends(
    platforms: Make, fake_clock: FakeClock, counter: Counter, db: dict[str, Any]
) -> None:
    """Users being fetched when a refresh starts: kept in it, their results (attempted before
    its start) counted for nothing and moved them 12 hours on, so the refresh ran for 12 hours
    and refused every other refresh of the app. Their fetch under way brings their data: the
    refresh is about the others."""
    p = await platforms(clock=fake_clock, **db)
    appid = await fetched_app(p, counter)
    fake_clock.advance(60)
    busy = USERS[:6]
    for user in busy:  # new tokens: due now, and held at the developer's server
        await p.background.set_token(appid, user, f"{user}-new")
    counter.hold, counter.release = True, asyncio.Event()
    counter.requests.clear()
    engine = p.make_engine()
    stop = asyncio.Event()
    running = asyncio.create_task(engine.run(stop))
    await eventually(lambda: asyncio.sleep(0, len(counter.requests) == len(busy)))
    fake_clock.advance(1)
    started = await p.refresh.start(appid, {"all": True})
    assert started["users"] == len(USERS) - len(busy)
    counter.hold = False
    counter.release.set()
    await eventually(lambda: asyncio.sleep(0, engine.completed == len(USERS)))
    stop.set()
    await running
    assert counter.by_token() == {**{f"{u}-new": 1 for u in busy}, **{u: 1 for u in USERS[6:]}}
    shown = await p.refresh.progress(appid, started["refresh_id"])
    assert (shown["state"], shown["done"]) == ("done", len(USERS) - len(busy))
    assert (await p.refresh.start(appid, {"users": ["u1"]}))["users"] == 1  # not refused


async def test_an_interval_change_leaves_users_due_now_due(
    platforms: Make, fake_clock: FakeClock, counter: Counter, db: dict[str, Any]
) -> None:
    """A URL change (or a new token) makes users due now; an interval change meanwhile moved
    them to their last success plus the new interval, and they kept the old URL's body (or no
    data) for hours."""
    p = await platforms(clock=fake_clock, **db)
    appid = await fetched_app(p, counter)
    fake_clock.advance(3600)
    await confirm_url(p, appid, "periodic", counter.url + "/new")  # every user due now
    await p.background.set_token(appid, "u1", "another account")  # due now, data dropped
    await p.apps.update_fetch_settings(appid, {"interval": "6h"}, "dev")
    counter.requests.clear()
    assert await run(p) == len(USERS)
    assert {r.path for r in counter.requests} == {"/new"}
    data = await p.background.get_data(appid, "u1", "periodic")
    assert data["fetchedData"] == "data for another account"


async def test_cancelling_a_refresh_leaves_users_made_due_since_due(
    platforms: Make, fake_clock: FakeClock, counter: Counter, db: dict[str, Any]
) -> None:
    p = await platforms(clock=fake_clock, **db)
    appid = await fetched_app(p, counter)
    fake_clock.advance(60)
    rid = (await p.refresh.start(appid, {"users": USERS[:5]}))["refresh_id"]
    fake_clock.advance(1)
    await p.background.set_token(appid, "u1", "another account")  # its data dropped: due now
    await p.refresh.cancel(appid, rid)
    counter.requests.clear()
    assert await run(p) == 1  # u1 only; the refresh's other users are back on schedule
    assert counter.by_token() == {"another account": 1}


async def test_a_refresh_counts_only_users_the_engine_will_fetch(
    platforms: Make, fake_clock: FakeClock, counter: Counter
) -> None:
    """The platform's 7 days were used, not the app's own active window, and an app with no
    periodic URL was refreshed too: users counted, never fetched, then counted as done."""
    p = await platforms(clock=fake_clock)
    appid = await fetched_app(p, counter)  # u0..u11, launched now
    await p.apps.update_fetch_settings(appid, {"active_days": 1}, "ops")
    fake_clock.advance(3 * 86400)
    await p.background.launch(appid, "fresh", Launch())
    await p.background.set_token(appid, "fresh", "fresh")
    assert await run(p) == 1
    started = await p.refresh.start(appid, {"all": True})
    assert started["users"] == 1
    counter.requests.clear()
    assert await run(p) == 1
    assert [r.query["token"] for r in counter.requests] == ["fresh"]

    pre_only = await p.apps.create("pre-only", "dev")
    await p.background.launch(pre_only.appid, "u1", Launch())
    with pytest.raises(Conflict, match="no enabled periodic data URL"):
        await p.refresh.start(pre_only.appid, {"all": True})


async def test_a_refresh_keeps_to_the_platforms_active_days_when_the_apps_are_longer(
    platforms: Make, fake_clock: FakeClock, counter: Counter
) -> None:
    """An app's days set before the platform's were lowered (MINIPORT_ACTIVE_DAYS): the claims
    leave out a user beyond the platform's days first, whom the refresh counted."""
    p = await platforms(clock=fake_clock)
    appid = await fetched_app(p, counter)  # u0..u11
    await p.apps.update_fetch_settings(appid, {"active_days": 5}, "ops")
    fake_clock.advance(3 * 86400)
    await p.background.launch(appid, "fresh", Launch())
    await p.background.set_token(appid, "fresh", "fresh")
    await p.background.pending.flush()  # its launch written
    lowered = await platforms(clock=fake_clock, active_days=1)  # the same data directory
    assert (await lowered.refresh.start(appid, {"all": True}))["users"] == 1
    counter.requests.clear()
    assert await run(lowered) == 1
