"""Pre-fetch at launch: single flight per (app, user), its own timeout, reads before it finishes,
and the token / login-code choice, against loopback developer servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from miniport.clock import FakeClock
from miniport.domain.address_guard import AddressPolicy
from miniport.domain.requests import Launch
from miniport.errors import InvalidInput, NoData, NotFound
from miniport.platform import Platform
from miniport.verify import SIGNATURE_HEADER, verify_request
from tests.conftest import confirm_url
from tests.support.platforms import Counter, StartServer, eventually

Make = Callable[..., Awaitable[Platform]]
LAUNCH = Launch(path="pages/goods/detail", query="id=42", scene=1007)


async def pre_app(p: Platform, url: str) -> str:
    app = await p.apps.create("shop", "test")
    await confirm_url(p, app.appid, "pre", url)
    return app.appid


async def until(predicate: Callable[[], bool], timeout_s: float = 10) -> None:
    async def check() -> bool:
        return predicate()

    await eventually(check, timeout_s)


async def test_launch_pre_fetches_at_once_and_the_read_has_the_launch(
    platforms: Make, counter: Counter,
) -> None:
    p = await platforms()
    appid = await pre_app(p, counter.url + "/pre?v=1")
    result = await p.background.launch(appid, "u", LAUNCH)
    assert result == {"errMsg": "launch:ok", "prefetch": True}
    got = await p.background.get_data(appid, "u", "pre", wait_ms=5000)
    assert got["errMsg"] == "getBackgroundFetchData:ok"
    assert got["path"] == "pages/goods/detail"
    assert got["query"] == "id=42"
    assert got["scene"] == 1007
    assert isinstance(got["timeStamp"], int) and got["timeStamp"] > 1_000_000_000_000  # ms
    (request,) = counter.requests
    q = request.query
    assert q["v"] == "1" and q["appid"] == appid
    assert q["path"] == "pages/goods/detail" and q["query"] == "id=42" and q["scene"] == "1007"
    assert abs(int(q["timestamp"]) - time.time()) < 60  # seconds, not ms


async def test_without_a_token_the_request_carries_a_login_code_for_the_user(
    platforms: Make, counter: Counter,
) -> None:
    p = await platforms()
    appid = await pre_app(p, counter.url)
    await p.background.launch(appid, "u", LAUNCH)
    await p.background.get_data(appid, "u", "pre", wait_ms=5000)
    q = counter.requests[0].query
    assert "token" not in q and q["code"]
    await p.background.pending.flush()  # a login code's body is stored while there is no token
    stored = await p.db.read(p.fetches.get_data, appid, "u", "pre")
    assert stored is not None and stored.body
    app = await p.apps.get(appid)
    session = await p.auth.jscode2session(appid, app.secret, q["code"], "authorization_code")
    assert session["openid"] == p.auth.openid(appid, "u")

    await p.background.set_token(appid, "u", "tok")
    await p.background.launch(appid, "u", LAUNCH)
    await until(lambda: len(counter.requests) == 2)
    q2 = counter.requests[1].query
    assert q2["token"] == "tok" and "code" not in q2


async def test_two_launches_share_one_in_flight_pre_fetch(
    platforms: Make, counter: Counter,
) -> None:
    counter.hold = True
    p = await platforms()
    appid = await pre_app(p, counter.url)
    await p.background.launch(appid, "u", LAUNCH)
    await p.background.launch(appid, "u", LAUNCH)
    await until(lambda: len(counter.requests) == 1)
    reads = [asyncio.create_task(p.background.get_data(appid, "u", "pre", wait_ms=10_000))
             for _ in range(3)]
    await asyncio.sleep(0.2)
    assert len(counter.requests) == 1
    counter.release.set()
    results = await asyncio.gather(*reads)
    assert len(counter.requests) == 1
    assert {r["fetchedData"] for r in results} == {"data for ?"}
    # another user's launch is its own flight
    counter.hold = False
    await p.background.launch(appid, "v", LAUNCH)
    await p.background.get_data(appid, "v", "pre", wait_ms=5000)
    assert len(counter.requests) == 2


async def test_a_read_before_the_first_pre_fetch_finishes_fails_without_wait(
    platforms: Make, counter: Counter,
) -> None:
    counter.hold = True
    p = await platforms()
    appid = await pre_app(p, counter.url)
    await p.background.launch(appid, "u", LAUNCH)
    await until(lambda: len(counter.requests) == 1)
    with pytest.raises(NoData, match="getBackgroundFetchData:fail the fetch has not finished"):
        await p.background.get_data(appid, "u", "pre")
    waiting = asyncio.create_task(p.background.get_data(appid, "u", "pre", wait_ms=10_000))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    counter.release.set()
    assert (await waiting)["fetchedData"] == "data for ?"


async def test_a_read_before_a_later_pre_fetch_finishes_returns_the_previous_data(
    platforms: Make, loopback: StartServer,
) -> None:
    state = {"n": 0}
    gate = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        state["n"] += 1
        if state["n"] > 1:
            await asyncio.wait_for(gate.wait(), 30)
        return web.Response(text=f"version {state['n']}")

    url = await loopback(handle)
    p = await platforms()
    appid = await pre_app(p, url)
    await p.background.launch(appid, "u", Launch("pages/a", "", 1001))
    first = await p.background.get_data(appid, "u", "pre", wait_ms=5000)
    assert first["fetchedData"] == "version 1"

    await p.background.launch(appid, "u", Launch("pages/b", "", 1011))
    await until(lambda: state["n"] == 2)
    assert await p.background.get_data(appid, "u", "pre") == first  # old data, old launch
    waiting = asyncio.create_task(p.background.get_data(appid, "u", "pre", wait_ms=10_000))
    await asyncio.sleep(0.05)
    gate.set()
    second = await waiting
    assert second["fetchedData"] == "version 2"
    assert second["path"] == "pages/b" and second["scene"] == 1011


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_a_pre_fetch_for_the_previous_token_keeps_no_body(
    platforms: Make, loopback: StartServer, dialect: str, request: pytest.FixtureRequest,
) -> None:
    """The user signs in as another account (a new token) while the pre-fetch that sent the
    old token is in flight: its answer, the other account's data perhaps, is neither read as
    the new account's nor pushed to the device; its log row stays. The next launch's
    pre-fetch, for the new token, is read and stored as usual. A pre-fetch that sent a login
    code, answered after the app set its first token (it signed in at the first start), is
    the same user's data: read, pushed and stored."""
    gate = asyncio.Event()
    arrived: list[str] = []

    async def handle(req: web.Request) -> web.Response:
        who = req.query.get("token") or "code"
        arrived.append(who)
        if who != "bob":
            await asyncio.wait_for(gate.wait(), 30)
        return web.Response(text="data of " + who)

    extra = {"database_url": request.getfixturevalue("pg_url")} if dialect == "postgres" else {}
    p = await platforms(**extra)
    appid = await pre_app(p, await loopback(handle))
    pushed: list[str | None] = []
    sent = p.background.notify

    async def notify(records: list) -> None:  # type: ignore[type-arg]
        pushed.extend(r.body for r in records)
        await sent(records)

    p.background.notify = notify  # type: ignore[method-assign]
    await p.background.set_token(appid, "u", "alice")
    await p.background.launch(appid, "u", LAUNCH)
    # the request has reached the developer's server with alice's token (in flight alone is
    # too early: the pre-fetch reads the token after it starts, and could send bob's)
    await until(lambda: arrived == ["alice"])
    await p.background.set_token(appid, "u", "bob")
    gate.set()
    await p.background.prefetch.wait(appid, "u", 10)
    with pytest.raises(NoData):
        await p.background.get_data(appid, "u", "pre")
    gate.clear()
    await p.background.launch(appid, "u", LAUNCH)
    got = await p.background.get_data(appid, "u", "pre", wait_ms=5000)
    assert got["fetchedData"] == "data of bob"
    await p.background.pending.flush()
    stored = await p.db.read(p.fetches.get_data, appid, "u", "pre")
    assert stored is not None and stored.body == "data of bob"
    log = await p.db.read(p.fetches.list_log, appid, 10, "u")
    assert [row["verdict"] for row in log] == ["cached", "cached"]
    assert pushed == [None, "data of bob"]

    # the first start: a login code, and the first token set while its pre-fetch is out
    await p.background.launch(appid, "v", LAUNCH)
    await until(lambda: arrived[-1:] == ["code"])
    await p.background.set_token(appid, "v", "vera")
    gate.set()
    got = await p.background.get_data(appid, "v", "pre", wait_ms=5000)
    assert got["fetchedData"] == "data of code"
    await p.background.pending.flush()
    stored = await p.db.read(p.fetches.get_data, appid, "v", "pre")
    assert stored is not None and stored.body == "data of code"
    assert pushed[-1] == "data of code"


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_a_new_token_set_before_the_pre_fetch_body_is_stored_drops_it(
    platforms: Make, counter: Counter, dialect: str, request: pytest.FixtureRequest,
) -> None:
    """The pre-fetch for the old token finished and its body waits for the group commit when
    the user signs in as another account: it is no longer read, and its write stores no body
    (the store checks the token as it writes); its log row stays. Setting the same token again
    changes nothing."""
    extra = {"database_url": request.getfixturevalue("pg_url")} if dialect == "postgres" else {}
    p = await platforms(**extra)
    p.background.pending.interval_s = 3600  # the group commit waits for the test
    appid = await pre_app(p, counter.url)
    await p.background.set_token(appid, "u", "alice")
    await p.background.launch(appid, "u", LAUNCH)
    await p.background.prefetch.wait(appid, "u", 10)
    assert (await p.background.get_data(appid, "u", "pre"))["fetchedData"]
    await p.background.set_token(appid, "u", "alice")  # the same token again: still read
    assert (await p.background.get_data(appid, "u", "pre"))["fetchedData"]
    await p.background.set_token(appid, "u", "bob")
    with pytest.raises(NoData):
        await p.background.get_data(appid, "u", "pre")
    await p.background.pending.flush()
    assert await p.db.read(p.fetches.get_data, appid, "u", "pre") is None
    log = await p.db.read(p.fetches.list_log, appid, 10, "u")
    assert [row["verdict"] for row in log] == ["cached"]


async def test_a_wait_is_bounded_by_wait_ms(platforms: Make, counter: Counter) -> None:
    counter.hold = True
    p = await platforms()
    appid = await pre_app(p, counter.url)
    await p.background.launch(appid, "u", LAUNCH)
    with pytest.raises(NoData, match="has not finished"):
        await asyncio.wait_for(p.background.get_data(appid, "u", "pre", wait_ms=200), 10)
    counter.release.set()


async def test_the_pre_fetch_is_bounded_by_its_own_timeout(
    platforms: Make, counter: Counter,
) -> None:
    counter.hold = True
    p = await platforms(prefetch_timeout_s=0.3, fetch_timeout_s=30)
    appid = await pre_app(p, counter.url)
    await p.background.launch(appid, "u", LAUNCH)
    # the wait outlasts the pre-fetch: it ends with the pre-fetch's own timeout
    with pytest.raises(NoData, match="no data has been fetched yet"):
        await asyncio.wait_for(p.background.get_data(appid, "u", "pre", wait_ms=10_000), 10)
    (entry,) = await p.background.log(appid)
    assert entry["kind"] == "pre" and entry["trigger"] == "launch"
    assert entry["verdict"] == "timeout"
    assert p.background.prefetch.in_flight(appid, "u") is None


async def test_a_failed_pre_fetch_keeps_the_previous_data(
    platforms: Make, loopback: StartServer,
) -> None:
    state = {"n": 0}

    async def handle(request: web.Request) -> web.Response:
        state["n"] += 1
        return web.Response(text="good") if state["n"] == 1 else web.Response(status=502)

    url = await loopback(handle)
    p = await platforms()
    appid = await pre_app(p, url)
    await p.background.launch(appid, "u", LAUNCH)
    good = await p.background.get_data(appid, "u", "pre", wait_ms=5000)
    await p.background.launch(appid, "u", Launch("pages/other", "", 1001))
    assert await p.background.get_data(appid, "u", "pre", wait_ms=5000) == good
    assert (await p.background.log(appid, limit=1))[0]["verdict"] == "http_error"


async def test_no_pre_fetch_without_an_enabled_pre_fetch_url(
    platforms: Make, counter: Counter,
) -> None:
    p = await platforms()
    app = await p.apps.create("shop", "test")
    assert (await p.background.launch(app.appid, "u", LAUNCH))["prefetch"] is False
    await confirm_url(p, app.appid, "pre", counter.url)
    pending = await p.apps.request_change(app.appid, "pre", "disable", None, "dev")
    await p.apps.confirm(pending.code, "admin")
    assert (await p.background.launch(app.appid, "u", LAUNCH))["prefetch"] is False
    await asyncio.sleep(0.1)
    assert counter.requests == []


async def test_launch_of_an_unknown_app_is_not_found(platforms: Make) -> None:
    p = await platforms()
    with pytest.raises(NotFound, match="app 'nope' not found"):
        await p.background.launch("nope", "u", LAUNCH)


@pytest.mark.parametrize(("kind", "wait", "message"),
                         [("weekly", 0, "fetchType must be periodic or pre"),
                          ("pre", -1, "waitMs must be 0..10000"),
                          ("pre", 10_001, "waitMs must be 0..10000")])
async def test_bad_read_arguments(platforms: Make, kind: str, wait: int, message: str) -> None:
    p = await platforms()
    app = await p.apps.create("shop", "test")
    with pytest.raises(InvalidInput, match=message):
        await p.background.get_data(app.appid, "u", kind, wait)


async def test_devtools_fetch_now_shows_the_exact_request_and_verdict(
    platforms: Make, counter: Counter, fake_clock: FakeClock,
) -> None:
    p = await platforms(clock=fake_clock)
    appid = await pre_app(p, counter.url + "/pre")
    shown = await p.background.fetch_now(appid, "u", "pre", LAUNCH)
    assert shown["verdict"] == "cached" and shown["status"] == 200
    assert shown["bytes"] == len("data for ?")
    assert shown["error"] is None
    sent = counter.requests[0]
    assert shown["request"]["url"] == counter.url + sent.path_qs
    assert shown["request"]["headers"]["X-Miniport-Signature"] == \
        sent.headers["X-Miniport-Signature"]
    (entry,) = await p.background.log(appid)
    assert entry["trigger"] == "devtools" and entry["verdict"] == "cached"


async def test_time_stamp_is_when_the_data_arrived(platforms: Make, counter: Counter) -> None:
    """System clock, a developer server that takes a moment: timeStamp is the arrival, not the
    moment the request went out."""
    counter.delay_s = 0.5
    p = await platforms()
    appid = await pre_app(p, counter.url)
    sent_at = time.time()
    await p.background.launch(appid, "u", LAUNCH)
    got = await p.background.get_data(appid, "u", "pre", wait_ms=5000)
    assert got["timeStamp"] >= int((sent_at + 0.5) * 1000)
    assert got["timeStamp"] <= int(time.time() * 1000)


async def test_without_dev_mode_a_pre_fetch_to_loopback_is_refused(
    platforms: Make, counter: Counter,
) -> None:
    p = await platforms(dev=False)
    port = counter.url.rsplit(":", 1)[1]
    # set while the server ran in dev mode (now refused when set); the fetcher refuses it
    p.apps.dev, p.apps.address_policy = True, AddressPolicy.build(dev=True)
    appid = await pre_app(p, f"https://127.0.0.1:{port}/pre")
    await p.background.launch(appid, "u", LAUNCH)
    with pytest.raises(NoData):
        await p.background.get_data(appid, "u", "pre", wait_ms=5000)
    (entry,) = await p.background.log(appid)
    assert entry["verdict"] == "blocked_address"
    assert counter.requests == []


async def test_requests_are_signed_with_the_current_secret(
    platforms: Make, counter: Counter,
) -> None:
    p = await platforms()
    appid = await pre_app(p, counter.url)
    await p.background.launch(appid, "u", LAUNCH)  # the app's settings are now in use
    await p.background.get_data(appid, "u", "pre", wait_ms=5000)
    secret = await p.apps.rotate_secret(appid, "dev")
    await p.background.fetch_now(appid, "u", "pre", LAUNCH)
    sent = counter.requests[-1]
    header = sent.headers[SIGNATURE_HEADER]
    assert verify_request(secret, header, "GET", sent.path_qs)
