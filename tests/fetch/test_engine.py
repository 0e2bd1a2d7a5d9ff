"""The periodic fetch engine and its schedule, against a counting loopback developer server,
a real SQLite file and a FakeClock that only moves when told."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select

from miniport.clock import FakeClock
from miniport.domain.address_guard import AddressPolicy
from miniport.domain.requests import Launch
from miniport.errors import NoData
from miniport.fetch.engine import fetch_periodic
from miniport.fetch.outcome import record_for, schedule_after
from miniport.platform import Platform
from miniport.storage import schema as t
from miniport.storage.fetches import body_hash
from tests.conftest import LiveServer, confirm_url
from tests.support.platforms import (
    Counter,
    StartServer,
    eventually,
    periodic_app,
    run,
    user,
)

H = 3600.0
DAY = 86400.0
Make = Callable[..., Awaitable[Platform]]


async def data(p: Platform, appid: str, user_id: str) -> dict[str, object]:
    return await p.background.get_data(appid, user_id, "periodic")


async def test_due_twelve_hours_after_the_last_success(
    platforms: Make, fake_clock: FakeClock, counter: Counter,
) -> None:
    p = await platforms(clock=fake_clock)
    appid = await periodic_app(p, counter.url)
    await user(p, appid, "u1", "tok1")
    assert await run(p) == 1
    assert len(counter.requests) == 1
    first = await data(p, appid, "u1")
    assert first["fetchedData"] == "data for tok1"
    assert first["timeStamp"] == int(fake_clock.now() * 1000)
    assert first["errMsg"] == "getBackgroundFetchData:ok"

    assert await run(p) == 0  # nothing due again at once
    fake_clock.advance(12 * H - 1)
    assert await run(p) == 0
    assert len(counter.requests) == 1
    fake_clock.advance(1)
    assert await run(p) == 1
    assert len(counter.requests) == 2
    assert (await data(p, appid, "u1"))["timeStamp"] == int(fake_clock.now() * 1000)


async def test_the_request_carries_appid_token_and_seconds(
    platforms: Make, fake_clock: FakeClock, counter: Counter,
) -> None:
    p = await platforms(clock=fake_clock)
    appid = await periodic_app(p, counter.url + "/bg?lang=zh_CN")
    await user(p, appid, "u1", "tok1")
    await run(p)
    (request,) = counter.requests
    assert request.path == "/bg"
    assert list(request.query.items()) == [("lang", "zh_CN"), ("appid", appid),
                                           ("token", "tok1"),
                                           ("timestamp", str(int(fake_clock.now()))),
                                           ("version", ""), ("envVersion", "")]


async def test_the_interval_is_a_setting(
    platforms: Make, fake_clock: FakeClock, counter: Counter,
) -> None:
    p = await platforms(clock=fake_clock, periodic_interval_s=3 * H)
    appid = await periodic_app(p, counter.url)
    await user(p, appid, "u1", "t")
    assert await run(p) == 1
    fake_clock.advance(3 * H)
    assert await run(p) == 1


async def test_only_users_active_in_the_last_seven_days_are_fetched(
    platforms: Make, fake_clock: FakeClock, counter: Counter,
) -> None:
    p = await platforms(clock=fake_clock)
    appid = await periodic_app(p, counter.url)
    await user(p, appid, "old", "t-old")
    fake_clock.advance(3 * DAY)
    await user(p, appid, "recent", "t-recent")
    assert await run(p) == 2

    fake_clock.advance(4 * DAY + 1)  # "old" launched 7 days and 1 s ago, "recent" 4 days ago
    assert await run(p) == 1
    assert counter.by_token() == {"t-old": 1, "t-recent": 2}

    await p.background.launch(appid, "old", Launch())  # opening the app makes it active again
    assert await run(p) == 1
    assert counter.by_token() == {"t-old": 2, "t-recent": 2}


async def test_active_days_is_a_setting(
    platforms: Make, fake_clock: FakeClock, counter: Counter,
) -> None:
    p = await platforms(clock=fake_clock, active_days=1)
    appid = await periodic_app(p, counter.url)
    await user(p, appid, "u", "t")
    assert await run(p) == 1
    fake_clock.advance(DAY + 1)
    assert await run(p) == 0


async def test_no_token_no_fetch_and_the_reason_is_logged(
    platforms: Make, fake_clock: FakeClock, counter: Counter,
) -> None:
    p = await platforms(clock=fake_clock)
    appid = await periodic_app(p, counter.url)
    await user(p, appid, "u1")  # launched, never set a token
    await run(p)
    assert counter.requests == []
    (entry,) = await p.background.log(appid)
    assert entry["verdict"] == "token_not_set"
    assert entry["error"] == "token not set, maybe you should setBackgroundFetchToken first"
    with pytest.raises(NoData):
        await data(p, appid, "u1")

    await p.background.set_token(appid, "u1", "late")  # due at once once the token is there
    assert await run(p) == 1
    assert counter.by_token() == {"late": 1}


async def test_a_disabled_periodic_url_is_not_fetched(
    platforms: Make, fake_clock: FakeClock, counter: Counter,
) -> None:
    p = await platforms(clock=fake_clock)
    appid = await periodic_app(p, counter.url)
    await user(p, appid, "u", "t")
    pending = await p.apps.request_change(appid, "periodic", "disable", None, "dev")
    await p.apps.confirm(pending.code, "admin")
    assert await run(p) == 0
    assert counter.requests == []


class Flaky:
    """A developer server whose answer each test switches."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.hits = 0
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        if self.mode == "ok":
            return web.Response(text=f"v{self.hits}")
        if self.mode == "500":
            return web.Response(status=500, text="down")
        if self.mode == "oversize":
            return web.Response(text="x" * (300 * 1024))
        if self.mode == "binary":
            return web.Response(body=b"\x00\x01", content_type="application/octet-stream")
        if self.mode == "redirects":
            raise web.HTTPFound(request.path_qs)
        await asyncio.wait_for(self.release.wait(), 30)  # "timeout"
        return web.Response(text="late")


@pytest.mark.parametrize(("mode", "verdict"), [("500", "http_error"), ("oversize", "oversize"),
                                               ("binary", "bad_encoding"),
                                               ("redirects", "too_many_redirects"),
                                               ("timeout", "timeout")])
async def test_nothing_is_cached_on_failure_and_the_previous_data_stays(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer, mode: str, verdict: str,
) -> None:
    flaky = Flaky()
    url = await loopback(flaky.handle)
    p = await platforms(clock=fake_clock, fetch_timeout_s=0.3)
    appid = await periodic_app(p, url)
    await user(p, appid, "u", "t")
    await run(p)
    before = await data(p, appid, "u")
    assert before["fetchedData"] == "v1"

    flaky.mode = mode
    fake_clock.advance(12 * H)
    try:
        assert await run(p) == 1
    finally:
        flaky.release.set()
    latest = (await p.background.log(appid, limit=1))[0]
    assert latest["verdict"] == verdict
    assert latest["error"]
    assert await data(p, appid, "u") == before  # same body, same timeStamp


async def test_failures_retry_with_capped_backoff_never_past_the_next_regular_time(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer,
) -> None:
    flaky = Flaky()
    url = await loopback(flaky.handle)
    p = await platforms(clock=fake_clock, retry_base_s=60, retry_max_s=600)
    appid = await periodic_app(p, url)
    await user(p, appid, "u", "t")
    engine = p.make_engine()
    engine.rand = lambda: 1.0  # the top of the jitter range
    await run(p)
    success_at = fake_clock.now()
    flaky.mode = "500"
    fake_clock.advance(12 * H)

    delays = []
    for _ in range(6):
        attempt_at = fake_clock.now()
        assert await run(p) == 1
        row = await p.db.read(p.fetches.get_user, appid, "u")
        assert row is not None
        delays.append(row["next_due_at"] - attempt_at)
        fake_clock.advance(row["next_due_at"] - attempt_at - 1)
        assert await run(p) == 0  # not before its time
        fake_clock.advance(1)
    assert delays == [60, 120, 240, 480, 600, 600]  # doubling, capped at retry_max_s
    assert row["failures"] == 6
    assert row["last_success_at"] == success_at

    # with jitter the delay falls anywhere in the upper half of the step
    engine.rand = lambda: 0.0
    attempt_at = fake_clock.now()
    await run(p)
    row = await p.db.read(p.fetches.get_user, appid, "u")
    assert row is not None and row["next_due_at"] - attempt_at == 300

    # recovering resets the count and goes back to the regular interval
    flaky.mode = "ok"
    fake_clock.set(row["next_due_at"])
    await run(p)
    row = await p.db.read(p.fetches.get_user, appid, "u")
    assert row is not None and row["failures"] == 0
    assert row["next_due_at"] == fake_clock.now() + 12 * H


async def test_a_failure_just_before_the_regular_time_does_not_delay_it(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer,
) -> None:
    flaky = Flaky()
    url = await loopback(flaky.handle)
    p = await platforms(clock=fake_clock, retry_base_s=3600, retry_max_s=3600)
    appid = await periodic_app(p, url)
    await user(p, appid, "u", "t")
    p.make_engine().rand = lambda: 1.0
    await run(p)
    regular = fake_clock.now() + 12 * H
    # a devtools fetch fails 11:59 after the last success: the retry would be an hour later
    flaky.mode = "500"
    fake_clock.advance(12 * H - 60)
    await p.background.fetch_now(appid, "u", "periodic")
    row = await p.db.read(p.fetches.get_user, appid, "u")
    assert row is not None and row["next_due_at"] == regular


async def test_requests_to_one_host_are_bounded(
    platforms: Make, fake_clock: FakeClock, counter: Counter,
) -> None:
    counter.delay_s = 0.2
    p = await platforms(clock=fake_clock, host_concurrency=2, fetch_concurrency=20)
    appid = await periodic_app(p, counter.url)
    for i in range(8):
        await user(p, appid, f"u{i}", f"t{i}")
    assert await run(p) == 8
    assert counter.max_in_flight == 2
    assert sorted(counter.by_token()) == [f"t{i}" for i in range(8)]


async def test_fetches_in_flight_are_bounded_overall(
    platforms: Make, fake_clock: FakeClock, counter: Counter,
) -> None:
    counter.delay_s = 0.2
    p = await platforms(clock=fake_clock, host_concurrency=50, fetch_concurrency=3,
                        claim_batch=3)
    appid = await periodic_app(p, counter.url)
    for i in range(7):
        await user(p, appid, f"u{i}", f"t{i}")
    assert await run(p) == 7
    assert counter.max_in_flight <= 3


async def test_a_host_that_keeps_failing_rests_as_a_whole(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer,
) -> None:
    flaky = Flaky()
    flaky.mode = "500"
    url = await loopback(flaky.handle)
    p = await platforms(clock=fake_clock, host_failure_threshold=3, host_backoff_s=900,
                        retry_base_s=10, retry_max_s=10, host_concurrency=1,
                        fetch_concurrency=1)
    appid = await periodic_app(p, url)
    for i in range(5):
        await user(p, appid, f"u{i}", f"t{i}")
    assert await run(p) == 5
    assert flaky.hits == 3  # the host rested after the third failure in a row
    verdicts = [e["verdict"] for e in reversed(await p.background.log(appid))]
    assert verdicts[:3] == ["http_error"] * 3
    assert verdicts[3:] == ["host_backoff"] * 2
    rested = [r for r in await p.background.log(appid) if r["verdict"] == "host_backoff"]
    assert "resting" in rested[0]["error"]
    fake_clock.advance(900)
    await run(p)
    assert flaky.hits > 3  # the host is tried again after its rest


async def test_users_refused_by_the_developers_server_do_not_rest_its_host(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer,
) -> None:
    """401 for revoked tokens is an answer about each user, not the host being down: counted
    as host failures, a few such users in a row rested the host for every user of every app on
    it (host_backoff), the good ones included."""
    async def handle(request: web.Request) -> web.Response:
        if request.query["token"].startswith("revoked"):
            return web.Response(status=401, text="who are you")
        return web.Response(text="fine")

    url = await loopback(handle)
    p = await platforms(clock=fake_clock, host_failure_threshold=3, host_backoff_s=900,
                        host_concurrency=1, fetch_concurrency=1)  # fmt: skip
    appid = await periodic_app(p, url)
    for i in range(6):
        await user(p, appid, f"r{i}", f"revoked{i}")
    assert await run(p) == 6
    await user(p, appid, "good", "fine-token")  # then a user the host serves
    assert await run(p) == 1
    verdicts = [e["verdict"] for e in await p.background.log(appid)]  # newest first
    assert verdicts == ["cached"] + ["http_error"] * 6


async def test_conditional_get_on_the_next_fetch_and_304_keeps_the_body(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer,
) -> None:
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        if request.headers.get("If-None-Match") == '"e1"':
            return web.Response(status=304)
        return web.Response(text="body-1", headers={
            "ETag": '"e1"', "Last-Modified": "Thu, 01 Jan 2026 00:00:00 GMT"})

    url = await loopback(handle)
    p = await platforms(clock=fake_clock)
    appid = await periodic_app(p, url)
    await user(p, appid, "u", "t")
    await run(p)
    first = await data(p, appid, "u")
    assert "If-None-Match" not in seen[0] and "If-Modified-Since" not in seen[0]

    fake_clock.advance(12 * H)
    await run(p)
    assert seen[1]["If-None-Match"] == '"e1"'
    assert seen[1]["If-Modified-Since"] == "Thu, 01 Jan 2026 00:00:00 GMT"
    assert (await p.background.log(appid, limit=1))[0]["verdict"] == "not_modified"
    assert await data(p, appid, "u") == first
    row = await p.db.read(p.fetches.get_user, appid, "u")
    assert row is not None and row["last_success_at"] == fake_clock.now()  # counts as success

    # clearing the cache drops the validators: the next fetch is a full one
    await p.background.clear(appid, "u")
    fake_clock.advance(12 * H)
    await run(p)
    assert "If-None-Match" not in seen[2]


async def test_a_full_answer_without_validators_clears_the_old_ones(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer,
) -> None:
    seen: list[dict[str, str]] = []
    answers = iter([{"ETag": '"e1"'}, {}, {}])

    async def handle(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text=f"body-{len(seen)}", headers=next(answers))

    url = await loopback(handle)
    p = await platforms(clock=fake_clock)
    appid = await periodic_app(p, url)
    await user(p, appid, "u", "t")
    await run(p)
    fake_clock.advance(12 * H)
    await run(p)
    assert seen[1]["If-None-Match"] == '"e1"'  # answered 200 with no ETag this time
    fake_clock.advance(12 * H)
    await run(p)
    assert "If-None-Match" not in seen[2]  # so the stale validator is not sent again


async def test_a_claimed_pair_whose_worker_died_is_fetched_once_after_the_lease(
    platforms: Make, fake_clock: FakeClock, counter: Counter,
) -> None:
    p = await platforms(clock=fake_clock, claim_lease_s=120)
    appid = await periodic_app(p, counter.url)
    for i in range(3):
        await user(p, appid, f"u{i}", f"t{i}")
    now = fake_clock.now()
    # a worker claims the pairs and dies before fetching them
    claimed = await p.db.write(p.fetches.claim_due, now, p.rules.active_since(now),
                               p.rules.lease_until(now), 2)
    assert len(claimed) == 2

    # a restarted server (a new platform on the same data) fetches the one unclaimed pair
    await p.close()
    restarted = await platforms(clock=fake_clock, claim_lease_s=120)
    assert await run(restarted) == 1
    assert await run(restarted) == 0  # no burst: the claimed pairs wait for their lease
    fake_clock.advance(119)
    assert await run(restarted) == 0
    fake_clock.advance(1)
    assert await run(restarted) == 2
    assert await run(restarted) == 0
    assert counter.by_token() == {"t0": 1, "t1": 1, "t2": 1}


async def test_a_restart_loses_no_schedule(
    platforms: Make, fake_clock: FakeClock, counter: Counter,
) -> None:
    p = await platforms(clock=fake_clock)
    appid = await periodic_app(p, counter.url)
    await user(p, appid, "u", "t")
    await run(p)
    await p.close()

    restarted = await platforms(clock=fake_clock)
    assert await run(restarted) == 0  # restarting does not refetch
    fake_clock.advance(12 * H)
    assert await run(restarted) == 1
    assert (await data(restarted, appid, "u"))["fetchedData"] == "data for t"


async def test_new_data_is_pushed_to_the_users_connected_runtimes(
    platforms: Make, fake_clock: FakeClock, counter: Counter,
) -> None:
    p = await platforms(clock=fake_clock)
    appid = await periodic_app(p, counter.url)
    mine = p.broker.subscribe("u", "phone")
    other = p.broker.subscribe("someone-else", "phone")
    await user(p, appid, "u", "t")
    await run(p)
    message = mine.pending.popleft()
    assert message == {"type": "backgroundFetchData", "appid": appid, "fetchType": "periodic",
                       "fetchedData": "data for t", "timeStamp": int(fake_clock.now() * 1000),
                       "path": None, "query": None, "scene": None}
    assert not other.pending


async def test_the_running_scheduler_honours_a_short_interval(
    live: Callable[..., Awaitable[LiveServer]], counter: Counter,
) -> None:
    """The real server (scheduler in its lifespan, system clock) with a 1 s interval: the pair
    is fetched again and again, each time once its interval has passed."""
    server = await live(periodic_interval_s=1)
    appid = await periodic_app(server.platform, counter.url)
    token = server.platform.auth.runtime_token("u")
    base = f"{server.url}/runtime/v1/apps/{appid}"
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []

    def body(request: web.Request) -> str:
        arrivals.append(loop.time())
        return "data"

    counter.body = body
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s:
        await s.post(base + "/launch", json={})
        await s.post(base + "/background-fetch/token", json={"token": "t"})

        async def three() -> bool:
            return len(arrivals) >= 3

        await eventually(three, timeout_s=20)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(gap >= 0.75 for gap in gaps), gaps  # never long before it is due


async def test_without_dev_mode_the_engine_refuses_loopback(
    platforms: Make, fake_clock: FakeClock, counter: Counter,
) -> None:
    p = await platforms(clock=fake_clock, dev=False)
    # the URL was set while the server ran in dev mode; the fetcher still refuses it now
    p.apps.dev, p.apps.address_policy = True, AddressPolicy.build(dev=True)
    appid = await periodic_app(p, counter.url)
    await user(p, appid, "u", "t")
    assert await run(p) == 1
    (entry,) = await p.background.log(appid)
    assert entry["verdict"] == "blocked_address"
    assert "loopback" in entry["error"]
    assert counter.requests == []


async def test_an_allow_listed_network_is_reachable_without_dev_mode(
    platforms: Make, fake_clock: FakeClock, counter: Counter,
) -> None:
    p = await platforms(clock=fake_clock, dev=False, allow_hosts=("127.0.0.1/32",))
    appid = await periodic_app(p, counter.url)
    await user(p, appid, "u", "t")
    await run(p)
    assert counter.by_token() == {"t": 1}


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_a_token_set_while_a_fetch_is_in_flight_keeps_the_pair_due(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer, dialect: str, request: Any,
) -> None:
    release = asyncio.Event()
    seen: list[str] = []

    async def handle(req: web.Request) -> web.Response:
        seen.append(req.query["token"])
        if len(seen) == 1:
            await release.wait()  # the first fetch hangs while the user sets a new token
        return web.Response(text="body " + req.query["token"])

    extra = {"database_url": request.getfixturevalue("pg_url")} if dialect == "postgres" else {}
    p = await platforms(clock=fake_clock, **extra)
    appid = await periodic_app(p, await loopback(handle))
    await user(p, appid, "u", "old")
    engine = p.make_engine()
    stop = asyncio.Event()
    running = asyncio.create_task(engine.run(stop))
    await eventually(lambda: _true(len(seen) == 1))
    await p.background.set_token(appid, "u", "new")  # due at once again...
    release.set()
    # ...and the in-flight result (for the old token) must not push it 12 h away
    await eventually(lambda: _true(seen[-1:] == ["new"]))
    stop.set()
    engine.wake()
    await running
    assert (await data(p, appid, "u"))["fetchedData"] == "body new"


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_pairs_waiting_for_a_slow_host_longer_than_their_lease_are_fetched_once(
    platforms: Make, counter: Counter, dialect: str, request: Any,
) -> None:
    """A short lease, one slot for a slow host: most claimed pairs wait longer than the lease for
    their turn. Their leases are renewed while they wait, so the same (or another) worker does not
    claim and fetch them again within the interval."""
    counter.delay_s = 0.3
    extra = {"database_url": request.getfixturevalue("pg_url")} if dialect == "postgres" else {}
    p = await platforms(claim_lease_s=1, host_concurrency=1, fetch_concurrency=20, **extra)
    appid = await periodic_app(p, counter.url)
    for i in range(8):
        await user(p, appid, f"u{i}", f"t{i}")
    assert await run(p) == 8  # about 2.4 s: more than twice the lease
    assert counter.by_token() == {f"t{i}": 1 for i in range(8)}
    now = p.clock.now()
    assert await p.db.write(p.fetches.claim_due, now, p.rules.active_since(now),
                            p.rules.lease_until(now), 10) == []  # all scheduled, none leased


async def test_a_stop_with_hanging_fetches_is_prompt_and_releases_their_claims(
    platforms: Make, fake_clock: FakeClock, counter: Counter,
) -> None:
    counter.hold = True  # the developer server never answers (until the test ends)
    p = await platforms(clock=fake_clock, fetch_timeout_s=30)
    appid = await periodic_app(p, counter.url)
    for i in range(2):
        await user(p, appid, f"u{i}", f"t{i}")
    engine = p.make_engine()
    engine.stop_grace_s = 0.2
    stop = asyncio.Event()
    running = asyncio.create_task(engine.run(stop))
    await eventually(lambda: _true(counter.in_flight == 2))
    stop.set()
    engine.wake()
    await asyncio.wait_for(running, 5)  # not the 30 s fetch timeout
    # the claims were released: both pairs are due at once for the next worker, not after the
    # lease; nothing was recorded for them
    now = fake_clock.now()
    again = await p.db.write(p.fetches.claim_due, now, p.rules.active_since(now),
                             p.rules.lease_until(now), 10)
    assert sorted(d.user_id for d in again) == ["u0", "u1"]
    assert await p.background.log(appid, 10, None) == []


async def test_a_result_that_could_not_be_stored_is_fetched_again_after_its_lease(
    platforms: Make, counter: Counter, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database refuses the first result (the batch, then the row alone): the result is
    dropped, and its claim must then run out so the pair is fetched again, while the worker
    keeps running. Renewing a dropped claim with the held ones kept the pair out of the due
    index for as long as the worker ran."""
    p = await platforms(claim_lease_s=1)
    appid = await periodic_app(p, counter.url)
    await user(p, appid, "u", "t")
    store = p.fetches.record
    refused = 0

    def record(*args: Any, **kwargs: Any) -> Any:
        nonlocal refused
        if refused < 2:
            refused += 1
            raise RuntimeError("the database is away")
        return store(*args, **kwargs)

    monkeypatch.setattr(p.fetches, "record", record)
    engine = p.make_engine()
    stop = asyncio.Event()
    running = asyncio.create_task(engine.run(stop))
    try:
        await eventually(lambda: _true(refused == 2))
        await eventually(lambda: _true(len(counter.requests) == 2))
        await eventually(lambda: _true(engine.in_flight() == 0))
    finally:
        stop.set()
        engine.wake()
        await running
    assert (await data(p, appid, "u"))["fetchedData"] == "data for t"


async def test_a_new_periodic_url_is_fetched_in_full_not_with_the_old_urls_validators(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer,
) -> None:
    """The admin changes the URL's language; the server's ETag is the user's data version,
    the same in both languages. The fetch made due by the change sent the old URL's validators,
    got 304, and the old URL's body stayed as the new URL's data."""
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        if request.headers.get("If-None-Match") == '"v7"':
            return web.Response(status=304)
        return web.Response(text="data in " + request.query["lang"], headers={"ETag": '"v7"'})

    url = await loopback(handle)
    p = await platforms(clock=fake_clock)
    appid = await periodic_app(p, url + "/bg?lang=en")
    await user(p, appid, "u", "t")
    await run(p)
    assert (await data(p, appid, "u"))["fetchedData"] == "data in en"

    await confirm_url(p, appid, "periodic", url + "/bg?lang=zh")
    assert await run(p) == 1  # due at once
    assert "If-None-Match" not in seen[1]
    assert (await data(p, appid, "u"))["fetchedData"] == "data in zh"


async def test_a_new_token_is_fetched_in_full_not_with_the_old_tokens_validators(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer,
) -> None:
    """Another account signs in to the mini-program (a new token for the same user): the fetch
    made due by it sent the previous account's ETag; a server whose ETag is a data version
    (both accounts at version 1) answered 304, and the previous account's data stayed."""
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        if request.headers.get("If-None-Match") == '"1"':
            return web.Response(status=304)
        return web.Response(text="data of " + request.query["token"], headers={"ETag": '"1"'})

    url = await loopback(handle)
    p = await platforms(clock=fake_clock)
    appid = await periodic_app(p, url)
    await user(p, appid, "u", "alice")
    await run(p)
    assert (await data(p, appid, "u"))["fetchedData"] == "data of alice"

    await p.background.set_token(appid, "u", "bob")
    assert await run(p) == 1  # due at once
    assert "If-None-Match" not in seen[1]
    assert (await data(p, appid, "u"))["fetchedData"] == "data of bob"


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_a_fetch_in_flight_for_the_old_token_does_not_leave_its_validators_to_the_new(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer, dialect: str, request: Any,
) -> None:
    """The token changes while the old token's fetch is in flight: that fetch's ETag must not
    be stored for the new token, whose fetch (due at once) would send it, get 304 and keep the
    old token's data. The engine's steps, in this order, by hand."""
    seen: list[dict[str, str]] = []

    async def handle(req: web.Request) -> web.Response:
        seen.append(dict(req.headers))
        if req.headers.get("If-None-Match") == '"1"':
            return web.Response(status=304)
        return web.Response(text="data of " + req.query["token"], headers={"ETag": '"1"'})

    extra = {"database_url": request.getfixturevalue("pg_url")} if dialect == "postgres" else {}
    p = await platforms(clock=fake_clock, **extra)
    appid = await periodic_app(p, await loopback(handle))
    await user(p, appid, "u", "alice")
    now = fake_clock.now()
    [due] = await p.db.write(p.fetches.claim_due, now, p.rules.active_since(now),
                             p.rules.lease_until(now), 10)
    await p.background.set_token(appid, "u", "bob")  # while alice's fetch is in flight
    result, sent = await fetch_periodic(p.fetcher, due, now, 5)
    assert result.etag == '"1"' and sent is not None
    record = record_for(result, appid=appid, user_id="u", kind="periodic", trigger="schedule",
                        now=now, requested_url=sent.url)
    update = schedule_after(due, result.verdict, now, p.rules, lambda: 0.5, error=None,
                            etag=result.etag, last_modified=result.last_modified)
    await p.db.write(p.fetches.record, [record], [update])

    assert await run(p) == 1  # bob's fetch, due at once
    assert "If-None-Match" not in seen[1]
    assert (await data(p, appid, "u"))["fetchedData"] == "data of bob"


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_an_old_tokens_fetch_recorded_after_the_new_tokens_leaves_the_new_body(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer, dialect: str, request: Any,
) -> None:
    """The old token's fetch hangs; the new token makes the pair due and its fetch is recorded
    first. The old fetch's body, recorded last, must neither replace the new body nor be pushed
    to the device, and must hold no reference to a stored body."""
    release = asyncio.Event()
    seen: list[str] = []

    async def handle(req: web.Request) -> web.Response:
        seen.append(req.query["token"])
        if req.query["token"] == "old":
            await release.wait()
        return web.Response(text="body " + req.query["token"])

    extra = {"database_url": request.getfixturevalue("pg_url")} if dialect == "postgres" else {}
    p = await platforms(clock=fake_clock, **extra)
    appid = await periodic_app(p, await loopback(handle))
    await user(p, appid, "u", "old")
    engine = p.make_engine()
    pushed: list[str | None] = []

    async def notify(records: Any) -> None:
        pushed.extend(r.body for r in records)

    engine.notify = notify
    stop = asyncio.Event()
    running = asyncio.create_task(engine.run(stop))
    await eventually(lambda: _true(seen == ["old"]))
    await p.background.set_token(appid, "u", "new")
    await eventually(lambda: _true(engine.completed == 1))  # the new token's, recorded first
    assert (await data(p, appid, "u"))["fetchedData"] == "body new"
    release.set()
    await eventually(lambda: _true(engine.completed == 2))
    stop.set()
    engine.wake()
    await running
    assert seen == ["old", "new"]
    assert (await data(p, appid, "u"))["fetchedData"] == "body new"
    assert pushed == ["body new", None]  # the old body was logged, not pushed
    with p.db.reading() as conn:
        refs = dict(conn.execute(select(t.bodies.c.hash, t.bodies.c.refs)).all())
    assert refs == {body_hash("body new"): 1}


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_a_pair_claimed_again_while_held_keeps_its_second_claim_renewed(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer, dialect: str, request: Any,
) -> None:
    """A new token makes a pair in flight due; the engine claims it again. The first result,
    stored before the second fetch ends, must not end the second claim: its lease is renewed
    while that fetch takes longer than the lease, so the pair is not claimed a third time."""
    gates = {"old": asyncio.Event(), "new": asyncio.Event()}
    seen: list[str] = []

    async def handle(req: web.Request) -> web.Response:
        seen.append(req.query["token"])
        await gates[req.query["token"]].wait()
        return web.Response(text="body " + req.query["token"])

    extra = {"database_url": request.getfixturevalue("pg_url")} if dialect == "postgres" else {}
    p = await platforms(clock=fake_clock, claim_lease_s=1, **extra)
    appid = await periodic_app(p, await loopback(handle))
    await user(p, appid, "u", "old")
    engine = p.make_engine()
    stop = asyncio.Event()
    running = asyncio.create_task(engine.run(stop))
    try:
        await eventually(lambda: _true(seen == ["old"]))
        await p.background.set_token(appid, "u", "new")
        await eventually(lambda: _true(seen == ["old", "new"]))  # claimed again, on purpose
        gates["old"].set()
        await eventually(lambda: _true(engine.completed == 1))

        async def renewed_or_claimed_again() -> bool:
            row = await p.db.read(p.fetches.get_user, appid, "u")
            assert row is not None
            return len(seen) > 2 or (row["lease_until"] or 0) > fake_clock.now() + 0.5

        for _ in range(4):  # twice the lease, in steps shorter than it
            fake_clock.advance(0.5)
            await eventually(renewed_or_claimed_again, timeout_s=5)
        assert seen == ["old", "new"]
    finally:
        for gate in gates.values():
            gate.set()
        await eventually(lambda: _true(engine.completed >= 2))
        stop.set()
        engine.wake()
        await running
    assert (await data(p, appid, "u"))["fetchedData"] == "body new"


@pytest.mark.parametrize("changed", [True, False], ids=["200-new-etag", "304"])
@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_a_pair_in_flight_when_the_url_changes_is_fetched_again_from_the_new_url(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer, dialect: str, request: Any,
    changed: bool,
) -> None:
    """The URL changes while a pair's fetch from the old URL is in flight. Once that fetch is
    recorded the pair is due at once, and fetched from the new URL in full: not 12 h later, and
    not with the old URL's ETag (a data version both URLs share: 304), whether the fetch in
    flight brought a new one or was answered 304."""
    gate = asyncio.Event()
    seen: list[tuple[str, str | None]] = []

    async def handle(req: web.Request) -> web.Response:
        seen.append((req.query["lang"], req.headers.get("If-None-Match")))
        version = '"v8"' if changed and len(seen) > 1 else '"v7"'  # the user's data changed?
        if len(seen) == 2:
            await gate.wait()  # the second fetch (the regular one) hangs across the change
        if req.headers.get("If-None-Match") == version:
            return web.Response(status=304)
        return web.Response(text="data in " + req.query["lang"], headers={"ETag": version})

    extra = {"database_url": request.getfixturevalue("pg_url")} if dialect == "postgres" else {}
    p = await platforms(clock=fake_clock, **extra)
    url = await loopback(handle)
    appid = await periodic_app(p, url + "/bg?lang=en")
    await user(p, appid, "u", "t")
    assert await run(p) == 1
    fake_clock.advance(12 * H)
    async with engine_running(p, gate) as engine:
        await eventually(lambda: _true(len(seen) == 2))
        await confirm_url(p, appid, "periodic", url + "/bg?lang=zh")
        gate.set()
        await eventually(lambda: _true(len(seen) == 3), timeout_s=5)
        await eventually(lambda: _true(engine.completed == 2))
    assert seen == [("en", None), ("en", '"v7"'), ("zh", None)]
    assert (await data(p, appid, "u"))["fetchedData"] == "data in zh"
    assert await run(p) == 0  # and then scheduled as usual


async def test_a_devtools_fetch_for_the_old_token_recorded_last_leaves_the_new_body(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer,
) -> None:
    """The same rule for a devtools fetch (fetch now) made with the token the user had: it
    ends after the new token's fetch is stored, and must not replace nor push over it."""
    release = asyncio.Event()
    seen: list[str] = []

    async def handle(req: web.Request) -> web.Response:
        seen.append(req.query["token"])
        if req.query["token"] == "old":
            await release.wait()
        return web.Response(text="body " + req.query["token"])

    p = await platforms(clock=fake_clock)
    appid = await periodic_app(p, await loopback(handle))
    await user(p, appid, "u", "old")
    pushed: list[str | None] = []

    async def notify(records: Any) -> None:
        pushed.extend(r.body for r in records)

    p.background.notify = notify  # type: ignore[method-assign]
    devtools = asyncio.create_task(p.background.fetch_now(appid, "u", "periodic"))
    await eventually(lambda: _true(seen == ["old"]))
    await p.background.set_token(appid, "u", "new")
    assert await run(p) == 1 and seen == ["old", "new"]
    release.set()
    shown = await devtools
    assert shown["verdict"] == "cached"
    assert (await data(p, appid, "u"))["fetchedData"] == "body new"
    assert pushed == ["body new", None]


@contextlib.asynccontextmanager
async def engine_running(p: Platform, gate: asyncio.Event) -> AsyncIterator[Any]:
    """An engine of ``p`` running in the background; at the end ``gate`` (what the developer
    server waits on) is opened and the engine stopped."""
    engine = p.make_engine()
    stop = asyncio.Event()
    running = asyncio.create_task(engine.run(stop))
    try:
        yield engine
    finally:
        gate.set()
        stop.set()
        engine.wake()
        await running


async def raw_answer(answer: bytes) -> tuple[str, list[bytes], asyncio.Server]:
    """A loopback developer server that answers every request with ``answer`` as it is (bytes
    an aiohttp server would not send), and the request heads it got."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", heads, server


@contextlib.asynccontextmanager
async def fetched_once(
    platforms: Make, clock: FakeClock, answer: bytes, token: str = "tok", **settings: Any
) -> AsyncIterator[tuple[Platform, str, list[bytes]]]:
    """A platform whose app's periodic URL is a ``raw_answer`` server, with user u1 (and
    ``token``) fetched once: the platform, the app id and the request heads."""
    url, heads, server = await raw_answer(answer)
    try:
        p = await platforms(clock=clock, **settings)
        appid = await periodic_app(p, url)
        await user(p, appid, "u1", token)
        assert await run(p) == 1
        yield p, appid, heads
    finally:
        server.close()


async def test_validators_that_are_not_ascii_are_dropped_not_the_result(
    platforms: Make, fake_clock: FakeClock, db: dict[str, Any]
) -> None:
    """An ETag may hold non-ASCII bytes (RFC 9110 obs-text): aiohttp gave it as a lone
    surrogate, the result could not be stored, and the pair was fetched again every lease
    (120 s) with nothing cached. The body is kept; the validators, which could not be sent
    back either, are not: the next fetch is a full one."""
    answer = (
        b'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: "v1-\xe9"\r\n'
        b"Last-Modified: Thu, 01 Jan 2026 00:00:00 GMT\xff\r\n"
        b"Content-Length: 5\r\nConnection: close\r\n\r\nhello"
    )
    async with fetched_once(platforms, fake_clock, answer, **db) as (p, appid, heads):
        assert (await data(p, appid, "u1"))["fetchedData"] == "hello"
        assert [r["verdict"] for r in await p.background.log(appid)] == ["cached"]
        fake_clock.advance(12 * H - 1)
        assert await run(p) == 0  # the regular time, not the lease's 120 s
        fake_clock.advance(1)
        assert await run(p) == 1
        assert len(heads) == 2
        assert b"if-none-match" not in heads[1].lower()
        assert b"if-modified-since" not in heads[1].lower()


async def test_a_declared_length_past_32_bits_is_logged_as_oversize(
    platforms: Make, fake_clock: FakeClock, db: dict[str, Any]
) -> None:
    """``Content-Length: 3000000000`` was refused unread, then logged with that byte count,
    which PostgreSQL's 32-bit column refused: the result was dropped and the pair fetched again
    every lease. It is logged, as oversize, with the declared length in its error."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3000000000\r\n\r\n"
    async with fetched_once(platforms, fake_clock, answer, **db) as (p, appid, _heads):
        (row,) = await p.background.log(appid)
        assert row["verdict"] == "oversize" and "3000000000" in row["error"]
        assert row["bytes"] == 2**31 - 1
        with pytest.raises(NoData):
            await data(p, appid, "u1")
        fake_clock.advance(121)  # past the lease: a retry waits for its backoff instead
        stored = await p.db.read(p.fetches.get_user, appid, "u1")
        assert stored is not None and stored["failures"] == 1


async def test_a_claim_between_a_url_change_and_its_wake_sends_no_old_validators(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer, db: dict[str, Any]
) -> None:
    """Confirming a URL change writes the URL, then (another transaction) drops the pairs'
    validators. A claim between the two read the new URL with the old URL's ETag; the new URL
    answered 304 and the old URL's data stayed for 12 h. Validators older than the URL's last
    change are not sent."""
    from miniport.services.apps import hash_secret

    at_b = asyncio.Event()
    release_b = asyncio.Event()
    seen: list[tuple[str, str | None]] = []

    async def handle(req: web.Request) -> web.Response:
        seen.append((req.path, req.headers.get("If-None-Match")))
        if req.path == "/a":
            return web.Response(text="A-data", headers={"ETag": 'W/"1"'})
        at_b.set()
        await release_b.wait()
        if req.headers.get("If-None-Match") == 'W/"1"':
            return web.Response(status=304, headers={"ETag": 'W/"1"'})
        return web.Response(text="B-data", headers={"ETag": 'W/"1"'})

    base = await loopback(handle)
    p = await platforms(clock=fake_clock, **db)
    appid = await periodic_app(p, base + "/a")
    await user(p, appid, "u1", "tok")
    assert await run(p) == 1
    fake_clock.advance(12 * H)
    pending = await p.apps.request_change(appid, "periodic", "set", base + "/b", "dev")
    await p.db.write(p.registry.confirm_change, hash_secret(pending.code), fake_clock.now(), "ad")
    async with engine_running(p, release_b) as engine:
        await asyncio.wait_for(at_b.wait(), 10)  # claimed between the two writes
        await p.db.write(p.fetches.wake_app, appid, fake_clock.now())
        release_b.set()
        await eventually(lambda: _true(engine.completed == 1))
    assert seen == [("/a", None), ("/b", None)]
    assert (await data(p, appid, "u1"))["fetchedData"] == "B-data"


async def test_a_fetch_error_quoting_the_url_does_not_show_the_users_token(
    platforms: Make, fake_clock: FakeClock
) -> None:
    """aiohttp's message for a malformed answer quotes the request URL, token and all: it went
    into the log's error (which viewers read) and the pair's last error as it was."""
    answer = b"HTTP/1.1 200 OK\r\nBad\x01Header: x\r\nContent-Length: 2\r\n\r\nok"
    async with fetched_once(platforms, fake_clock, answer, "tok-SECRET-123") as (p, appid, _):
        (row,) = await p.background.log(appid)
        assert row["verdict"] == "connection_error"
        assert "token=***" in row["error"] and "SECRET" not in row["error"]
        stored = await p.db.read(p.fetches.get_user, appid, "u1")
        assert stored is not None and "SECRET" not in (stored["last_error"] or "")
        shown = await p.background.fetch_now(appid, "u1", "periodic", Launch())
        assert "SECRET" not in (shown["error"] or "")


async def test_the_engine_outlives_its_database_going_away(
    platforms: Make, fake_clock: FakeClock, counter: Counter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim that failed (PostgreSQL restarting, a failover) ended the engine's task: the
    server went on answering launches and never fetched again until it was restarted. The
    engine waits and tries again, and fetches once the database answers."""
    from miniport.fetch import engine as engine_module

    monkeypatch.setattr(engine_module, "RETRY_S", 0.01)
    p = await platforms(clock=fake_clock)
    appid = await periodic_app(p, counter.url)
    await user(p, appid, "u1", "t1")
    claim, polls = p.fetches.claim_due, p.fetches.next_due_at
    failed: list[str] = []

    def claim_away(*args: Any) -> Any:
        if len(failed) < 3:
            failed.append("claim")
            raise ConnectionError("the database went away")
        return claim(*args)

    def poll_away(*args: Any) -> Any:
        if "poll" not in failed:
            failed.append("poll")
            raise ConnectionError("the database went away")
        return polls(*args)

    monkeypatch.setattr(p.fetches, "claim_due", claim_away)
    monkeypatch.setattr(p.fetches, "next_due_at", poll_away)
    async with engine_running(p, asyncio.Event()) as engine:

        async def fetched() -> bool:
            return len(counter.requests) == 1 and engine.completed == 1

        await eventually(fetched)
        fake_clock.advance(12 * H)  # its next regular time: fetched again (the idle poll
        engine.wake()  # failed once on the way)

        async def again() -> bool:
            return len(counter.requests) == 2

        await eventually(again)
    assert failed == ["claim", "claim", "claim", "poll"]


async def test_results_met_by_the_database_away_are_not_written_one_by_one(
    platforms: Make, counter: Counter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of results that failed because the database was away was written again row
    by row: with the database still away, each row failed the same way (each after its own
    connection timeout when the host does not answer), holding up the recorder. One write
    per batch; the pairs are fetched again once their lease runs out, as for any result
    that could not be stored."""
    import sqlite3

    p = await platforms(claim_lease_s=1)
    appid = await periodic_app(p, counter.url)
    for name in ("u", "v", "w"):
        await user(p, appid, name, "t" + name)
    store, calls = p.fetches.record, []

    def record(records: Any, updates: Any) -> Any:
        calls.append(list(records))
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")  # past the busy timeout
        return store(records, updates)

    monkeypatch.setattr(p.fetches, "record", record)
    async with engine_running(p, asyncio.Event()):
        await eventually(lambda: _true(len(counter.requests) == 6))  # fetched again
    failed = {id(r) for r in calls[0]}  # none of those results was written again alone
    assert not [r for later in calls[1:] for r in later if id(r) in failed]
    for name in ("u", "v", "w"):
        assert (await data(p, appid, name))["fetchedData"] == f"data for t{name}"
