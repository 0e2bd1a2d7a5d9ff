"""Grey release end to end: a second URL serves the testers and a stable share of users, each
change waits for an admin like any URL change, promote makes it the main URL, and the fetch log,
health and devtools say which URL served (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import and_, update

from miniport.clock import FakeClock
from miniport.domain.grey import grey_bucket
from miniport.domain.requests import Launch
from miniport.errors import Conflict, InvalidInput
from miniport.platform import Platform
from miniport.services import apps as apps_service
from miniport.storage import schema as t
from miniport.storage.health import health_series
from miniport.storage.registry import App
from tests.conftest import confirm_url
from tests.fetch.test_engine import _true, engine_running
from tests.support.platforms import Counter, StartServer, eventually, run, settle

Make = Callable[..., Awaitable[Platform]]
USERS = [f"user{i}" for i in range(40)]


async def grey(p: Platform, appid: str, op: str, url: str | None = None, **kw: int) -> None:
    pending = await p.apps.request_change(appid, "periodic", op, url, "dev", kw.get("ratio"))
    assert (await p.apps.settings(appid))["pending"][0]["op"] == op  # waits for an admin
    await p.apps.confirm(pending.code, "admin")


async def platform_on(
    backend: str, request: pytest.FixtureRequest, platforms: Make, clock: FakeClock
) -> Platform:
    """A platform on the backend under test (SQLite, or the PostgreSQL of the suite)."""
    extra = {"database_url": request.getfixturevalue("pg_url")} if backend == "postgres" else {}
    return await platforms(clock=clock, **extra)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def on_both(
    request: pytest.FixtureRequest, platforms: Make, fake_clock: FakeClock
) -> Platform:
    """A platform on each state database in turn (``platform_on``), on ``fake_clock``."""
    return await platform_on(request.param, request, platforms, fake_clock)


def _in_transaction(p: Platform, write: Callable[[Any], None]) -> None:
    with p.db.writing() as conn:
        write(conn)


async def launch_all(p: Platform, appid: str, users: list[str]) -> None:
    """Each user launches the app and sets a token: their own id."""
    for user in users:
        await p.background.launch(appid, user, Launch())
        await p.background.set_token(appid, user, user)


def conditional(
    record: Callable[[web.Request], object],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A developer server that records each request, answers 304 to ``If-None-Match: "v1"``
    and otherwise its path's data with that ETag."""

    async def handle(req: web.Request) -> web.Response:
        record(req)
        if req.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304)
        return web.Response(text="data of " + req.path, headers={"ETag": '"v1"'})

    return handle


def served(counter: Counter) -> dict[str, str]:
    """user token -> the path that served it (the last request of each)."""
    return {r.query["token"]: r.path for r in counter.requests}


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_testers_then_a_share_then_promote(
    backend: str,
    request: pytest.FixtureRequest,
    platforms: Make,
    fake_clock: FakeClock,
    counter: Counter,
) -> None:
    p = await platform_on(backend, request, platforms, fake_clock)
    counter.headers = lambda r: {"ETag": '"v1"'}
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "periodic", counter.url + "/main")
    await launch_all(p, app.appid, USERS)
    await p.apps.set_tester(app.appid, "user7", True, "dev")

    await grey(p, app.appid, "grey_set", counter.url + "/grey", ratio=0)
    assert await run(p) == len(USERS)
    assert {u for u, path in served(counter).items() if path == "/grey"} == {"user7"}
    log = await p.background.log(app.appid, limit=100)
    assert {(e["user_id"], e["route"]) for e in log if e["route"] == "grey"} == {("user7", "grey")}
    health = await p.background.health(app.appid, 0)
    assert health["periodic"]["routes"]["grey"]["total"] == 1
    assert health["periodic"]["routes"]["main"]["total"] == len(USERS) - 1
    series = await p.db.read(health_series, p.db, app.appid, 0.0, 3600.0)
    assert sum(r["grey_total"] for r in series) == sum(r["grey_ok"] for r in series) == 1

    # 30 %: the users whose bucket is under 3000, plus the tester; only they move, fetched in
    # full from the grey URL (the ETag is the same data version on both URLs: the main URL's
    # must not reach the grey one)
    counter.requests.clear()
    await grey(p, app.appid, "grey_ratio", ratio=30)
    bucket = {u: grey_bucket(app.appid, p.auth.openid(app.appid, u)) for u in USERS}
    at_30 = {u for u in USERS if bucket[u] < 3000} | {"user7"}
    assert 1 < len(at_30) < len(USERS)
    assert await run(p) == len(at_30 - {"user7"})
    assert served(counter) == {u: "/grey" for u in at_30 - {"user7"}}
    assert not [r for r in counter.requests if "If-None-Match" in r.headers]
    # 60 %: raising it keeps them all and adds the buckets in [3000, 6000), fetched alone
    counter.requests.clear()
    await grey(p, app.appid, "grey_ratio", ratio=60)
    at_60 = {u for u in USERS if bucket[u] < 6000} | {"user7"}
    assert at_30 < at_60 and len(at_60 - at_30) > 1
    assert await run(p) == len(at_60 - at_30)
    assert served(counter) == {u: "/grey" for u in at_60 - at_30}
    assert not [r for r in counter.requests if "If-None-Match" in r.headers]

    shown = await p.background.fetch_now(app.appid, "user7", "periodic")
    assert shown["route"] == "grey" and "/grey?" in shown["request"]["url"]

    # promote: the main users move to the grey URL, the grey users stay where they are
    counter.requests.clear()
    await grey(p, app.appid, "grey_promote")
    urls = (await p.apps.settings(app.appid))["urls"]["periodic"]
    assert (urls["url"], urls["grey_url"], urls["grey_ratio"]) == (counter.url + "/grey", None, 0)
    assert await run(p) == len(USERS) - len(at_60)
    assert served(counter) == {u: "/grey" for u in set(USERS) - at_60}
    assert not [r for r in counter.requests if "If-None-Match" in r.headers]
    counter.requests.clear()
    fake_clock.advance(12 * 3600)
    assert await run(p) == len(USERS)
    assert set(served(counter).values()) == {"/grey"}
    assert {e["route"] for e in (await p.background.log(app.appid, limit=40))} == {"main"}
    # the users just moved send their new validators; the former grey users send none: their
    # validators were labelled grey, and the main URL changed after them (safe, not spared)
    conditional = {r.query["token"] for r in counter.requests if "If-None-Match" in r.headers}
    assert conditional == set(USERS) - at_60


async def test_pre_fetch_follows_the_grey_url(
    platforms: Make, fake_clock: FakeClock, counter: Counter
) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "pre", counter.url + "/pre")
    pending = await p.apps.request_change(
        app.appid, "pre", "grey_set", counter.url + "/pre-grey", "dev", 0
    )
    await p.apps.confirm(pending.code, "admin")
    await p.apps.set_tester(app.appid, "tess", True, "dev")
    shown = await p.background.fetch_now(app.appid, "tess", "pre", Launch("pages/a"))
    assert shown["route"] == "grey" and counter.requests[-1].path == "/pre-grey"
    await p.background.launch(app.appid, "other", Launch("pages/a"))
    await p.background.get_data(app.appid, "other", "pre", wait_ms=5000)
    assert counter.requests[-1].path == "/pre"
    await settle(p)
    routes = {e["user_id"]: e["route"] for e in await p.background.log(app.appid)}
    assert routes == {"tess": "grey", "other": "main"}

    removed = await p.apps.set_tester(app.appid, "tess", False, "dev")
    assert removed["testers"] == [] and removed["changed"] is True
    assert (await p.apps.set_tester(app.appid, "tess", False, "dev"))["changed"] is False
    shown = await p.background.fetch_now(app.appid, "tess", "pre", Launch("pages/a"))
    assert shown["route"] == "main"
    audit = [e.action for e in await p.db.read(p.registry.list_audit, app.appid)]
    assert audit.count("tester.add") == 1 and audit.count("tester.remove") == 1


async def test_bad_grey_changes_are_refused(platforms: Make, fake_clock: FakeClock) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "dev")
    for op, url, ratio in [
        ("grey_set", "https://dev.example/g", 101),
        ("grey_set", "https://dev.example/g", -1),
        ("grey_ratio", None, None),
        ("set", "https://dev.example/m", 10),
        ("grey_set", "ftp://dev.example/g", 10),
    ]:
        with pytest.raises(InvalidInput):
            await p.apps.request_change(app.appid, "periodic", op, url, "dev", ratio)
    for op, ratio in [("grey_ratio", 10), ("grey_promote", None)]:
        pending = await p.apps.request_change(app.appid, "periodic", op, None, "dev", ratio)
        with pytest.raises(Conflict, match="no periodic grey URL"):
            await p.apps.confirm(pending.code, "admin")
    with pytest.raises(InvalidInput):
        await p.apps.set_tester(app.appid, "", True, "dev")
    urls = (await p.apps.settings(app.appid))["urls"]["periodic"]
    assert (urls["grey_url"], urls["grey_ratio"]) == (None, 0)


async def user_on_main_beside_a_grey_url(p: Platform, base: str, ratio: int = 0) -> App:
    """An app whose periodic URL is ``base``/main, with a grey URL ``base``/grey at ``ratio``
    %, and its user ``u`` fetched once (from the main URL at 0 %)."""
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "periodic", base + "/main")
    await grey(p, app.appid, "grey_set", base + "/grey", ratio=ratio)
    await p.background.launch(app.appid, "u", Launch())
    await p.background.set_token(app.appid, "u", "t")
    assert await run(p) == 1
    return app



@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_a_user_moved_to_the_other_url_is_not_sent_the_first_urls_validators(
    backend: str,
    request: pytest.FixtureRequest,
    platforms: Make,
    fake_clock: FakeClock,
    loopback: StartServer,
) -> None:
    """Both URLs use the user's data version as ETag. A tester added (or removed) moves the user
    to the other URL, fetched from it at once; sent the first URL's ETag, the other server
    answers 304 and the user keeps the first URL's data for another interval."""
    seen: list[tuple[str, str | None]] = []

    handle = conditional(lambda req: seen.append((req.path, req.headers.get("If-None-Match"))))
    p = await platform_on(backend, request, platforms, fake_clock)
    base = await loopback(handle)
    app = await user_on_main_beside_a_grey_url(p, base)
    fake_clock.advance(12 * 3600)
    assert await run(p) == 1  # conditional on its own URL: 304
    assert seen == [("/main", None), ("/main", '"v1"')]

    await p.apps.set_tester(app.appid, "u", True, "dev")
    assert await run(p) == 1  # moved to the grey URL: fetched from it at once, in full
    assert seen[-1] == ("/grey", None)
    assert (await p.background.get_data(app.appid, "u", "periodic"))["fetchedData"] == (
        "data of /grey"
    )
    fake_clock.advance(12 * 3600)
    assert await run(p) == 1
    assert seen[-1] == ("/grey", '"v1"')  # its own URL's validators are still used

    await p.apps.set_tester(app.appid, "u", False, "dev")
    assert await run(p) == 1
    assert seen[-1] == ("/main", None)
    assert (await p.background.get_data(app.appid, "u", "periodic"))["fetchedData"] == (
        "data of /main"
    )


async def test_a_tester_whose_wake_failed_is_woken_when_the_call_is_made_again(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tester row was written, its wake (a separate write) met the database away: the
    call said so, but made again it changed nothing, so woke no one, and the tester kept the
    main URL's data for an interval."""
    from miniport.errors import StateUnavailable

    p = await platforms(clock=fake_clock)
    base = await loopback(conditional(lambda req: None))
    app = await user_on_main_beside_a_grey_url(p, base)
    real = p.fetches.wake_tester

    def away(*args: Any, **kwargs: Any) -> int:
        raise StateUnavailable("the state database cannot be reached right now; try again")

    monkeypatch.setattr(p.fetches, "wake_tester", away)
    with pytest.raises(StateUnavailable):
        await p.apps.set_tester(app.appid, "u", True, "dev")
    monkeypatch.setattr(p.fetches, "wake_tester", real)
    assert (await p.apps.set_tester(app.appid, "u", True, "dev"))["changed"] is False
    assert await run(p) == 1
    assert (await p.background.get_data(app.appid, "u", "periodic"))["fetchedData"] == (
        "data of /grey"
    )


async def test_the_audit_of_a_grey_promote_or_clear_names_the_urls_it_applied(
    platforms: Make, fake_clock: FakeClock
) -> None:
    """A promote replaces the main URL for every user, but its request carries no URL: the
    audit entry of its confirmation said op=grey_promote, url=None, so the log never named
    the URL that became the main one (nor, for a clear, the grey URL dropped)."""
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "periodic", "https://dev.example/main")
    await grey(p, app.appid, "grey_set", "https://dev.example/grey", ratio=20)
    await grey(p, app.appid, "grey_promote")
    await grey(p, app.appid, "grey_set", "https://dev.example/next", ratio=5)
    await grey(p, app.appid, "grey_clear")
    confirmed = [
        e.detail
        for e in reversed(await p.db.read(p.registry.list_audit, app.appid))
        if e.action == "change.confirm"
    ]
    promote, clear = confirmed[2], confirmed[4]
    assert promote["op"] == "grey_promote" and promote["applied"] == {
        "url": "https://dev.example/grey", "enabled": True, "grey_url": None, "grey_ratio": None
    }
    assert promote["previous"] == {
        "url": "https://dev.example/main", "enabled": True,
        "grey_url": "https://dev.example/grey", "grey_ratio": 20,
    }
    assert clear["op"] == "grey_clear" and clear["previous"]["grey_url"] == "https://dev.example/next"
    assert clear["applied"] == {"grey_url": None, "grey_ratio": None}


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_a_user_in_flight_on_the_grey_url_when_the_ratio_is_lowered_moves_at_once(
    backend: str,
    request: pytest.FixtureRequest,
    platforms: Make,
    fake_clock: FakeClock,
    loopback: StartServer,
) -> None:
    """A broken grey release is rolled back by lowering its ratio to 0. The confirmation makes
    every user due at once, but a user whose fetch from the grey URL was in flight is left to
    its record, which checked only that the URL was still one of the app's: the grey URL still
    was, so the grey data was kept (with its validators) for a whole interval."""
    gate = asyncio.Event()
    seen: list[str] = []

    async def handle(req: web.Request) -> web.Response:
        seen.append(req.path)
        if len(seen) == 2:
            await gate.wait()  # the regular fetch from the grey URL hangs across the change
        return web.Response(text="data of " + req.path, headers={"ETag": '"v1"'})

    p = await platform_on(backend, request, platforms, fake_clock)
    base = await loopback(handle)
    app = await user_on_main_beside_a_grey_url(p, base, ratio=100)
    fake_clock.advance(12 * 3600)
    async with engine_running(p, gate) as engine:
        await eventually(lambda: _true(len(seen) == 2))
        await grey(p, app.appid, "grey_ratio", ratio=0)
        gate.set()
        await eventually(lambda: _true(engine.completed >= 1))
    await run(p)  # what the engine left due when it stopped
    assert seen == ["/grey", "/grey", "/main"]
    assert (await p.background.get_data(app.appid, "u", "periodic"))["fetchedData"] == (
        "data of /main"
    )
    assert await run(p) == 0  # and then scheduled as usual


SCHEDULE = ("next_due_at", "failures", "etag", "last_modified", "validators_route")


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_a_ratio_step_fetches_only_the_users_it_moves(
    backend: str,
    request: pytest.FixtureRequest,
    platforms: Make,
    fake_clock: FakeClock,
    loopback: StartServer,
) -> None:
    """Each confirmed grey change made every user of the app due at once, validators dropped:
    a ramp 10 -> 30 -> 60 % re-fetched the whole user base in full at each step, the unchanged
    main URL included. Only the users whose URL changes are fetched, in full, from their new
    URL; the others keep their schedule and validators, and use them at their regular time."""
    seen: list[tuple[str, str, str | None]] = []

    handle = conditional(
        lambda req: seen.append((req.query["token"], req.path, req.headers.get("If-None-Match")))
    )
    p = await platform_on(backend, request, platforms, fake_clock)
    base = await loopback(handle)
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "periodic", base + "/main")
    await grey(p, app.appid, "grey_set", base + "/grey", ratio=30)
    await launch_all(p, app.appid, USERS)
    assert await run(p) == len(USERS)
    bucket = {u: grey_bucket(app.appid, p.auth.openid(app.appid, u)) for u in USERS}
    moved = {u for u in USERS if 3000 <= bucket[u] < 6000}
    # some move, some stay (about 12 of the 40 move; the appid is random, so fewer than half
    # is not certain: 20 or more moved in 0.6 % of runs)
    assert 0 < len(moved) < len(USERS)

    fake_clock.advance(3600)
    before = {u: await p.db.read(p.fetches.get_user, app.appid, u) for u in USERS}
    await grey(p, app.appid, "grey_ratio", ratio=60)
    after = {u: await p.db.read(p.fetches.get_user, app.appid, u) for u in USERS}
    for u in USERS:
        kept, now = before[u], after[u]
        assert kept is not None and now is not None
        if u in moved:
            assert (now["next_due_at"], now["etag"], now["validators_route"]) == (
                fake_clock.now(), None, None
            )
        else:
            assert {k: now[k] for k in SCHEDULE} == {k: kept[k] for k in SCHEDULE}
            assert kept["etag"] == '"v1"' and kept["next_due_at"] > fake_clock.now()
    seen.clear()
    assert await run(p) == len(moved)
    assert sorted(seen) == sorted((u, "/grey", None) for u in moved)

    # at their regular time, everyone is fetched conditionally from the URL that serves them
    seen.clear()
    fake_clock.advance(12 * 3600)
    assert await run(p) == len(USERS)
    assert sorted(seen) == sorted(
        (u, "/grey" if bucket[u] < 6000 else "/main", '"v1"') for u in USERS
    )


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_a_grey_change_reads_its_users_in_chunks_and_leaves_fetches_in_flight(
    backend: str,
    request: pytest.FixtureRequest,
    platforms: Make,
    fake_clock: FakeClock,
    counter: Counter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The users of a grey change are read in keyset chunks (here 7 at a time, 5,000 in
    production): every moved user of every chunk is woken, once; one being fetched at that
    moment keeps its lease (not fetched twice at once) but loses its validators; a pair with no
    token or no launch is not touched."""
    monkeypatch.setattr(apps_service, "WAKE_CHUNK", 7)
    p = await platform_on(backend, request, platforms, fake_clock)
    counter.headers = lambda r: {"ETag": '"v1"'}
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "periodic", counter.url + "/main")
    await grey(p, app.appid, "grey_set", counter.url + "/grey", ratio=0)
    await launch_all(p, app.appid, USERS)
    await p.background.set_token(app.appid, "no-launch", "t")
    assert await run(p) == len(USERS)
    bucket = {u: grey_bucket(app.appid, p.auth.openid(app.appid, u)) for u in USERS}
    moved = sorted(u for u in USERS if bucket[u] < 5000)
    in_flight, lease_end = moved[0], fake_clock.now() + 60

    def lease(user: str) -> None:  # as a claim leaves it
        c = t.app_users.c
        with p.db.writing() as conn:
            conn.execute(
                update(t.app_users)
                .where(and_(c.appid == app.appid, c.user_id == user))
                .values(lease_until=lease_end, next_due_at=lease_end)
            )

    await p.db.write(lease, in_flight)
    chunks: list[str] = []
    read = p.fetches.moved_users

    def spy(*args: Any) -> tuple[list[str], str | None]:
        chunks.append(str(args[3]))
        found: tuple[list[str], str | None] = read(*args)
        return found

    monkeypatch.setattr(p.fetches, "moved_users", spy)
    counter.requests.clear()
    await grey(p, app.appid, "grey_ratio", ratio=50)
    assert chunks == ["", *sorted(USERS)[6 : len(USERS) : 7]]  # 40 users: 6 chunks
    flying = await p.db.read(p.fetches.get_user, app.appid, in_flight)
    assert flying is not None
    assert (flying["next_due_at"], flying["lease_until"], flying["etag"]) == (
        lease_end, lease_end, None
    )
    assert await run(p) == len(moved) - 1
    assert served(counter) == {u: "/grey" for u in moved if u != in_flight}
    assert not [r for r in counter.requests if "If-None-Match" in r.headers]
    ghost = await p.db.read(p.fetches.get_user, app.appid, "no-launch")
    assert ghost is not None and ghost["next_due_at"] is None


async def test_a_grey_wake_cut_short_is_resumed_from_where_it_stopped(
    on_both: Platform,
    fake_clock: FakeClock,
    counter: Counter,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database went away after two chunks of a ramp step's wake (a restart does the
    same): the change was applied, and the rest of the users it moved waited for their
    regular fetch, up to 12 hours, on their old URL's body. The change records how far its
    wake got; once nothing has moved it on for a minute, the scheduler finishes it."""
    monkeypatch.setattr(apps_service, "WAKE_CHUNK", 7)
    p = on_both
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "periodic", counter.url + "/main")
    await grey(p, app.appid, "grey_set", counter.url + "/grey", ratio=0)
    await launch_all(p, app.appid, USERS)
    assert await run(p) == len(USERS)
    bucket = {u: grey_bucket(app.appid, p.auth.openid(app.appid, u)) for u in USERS}
    moved = sorted(u for u in USERS if bucket[u] < 5000)
    fake_clock.advance(3600)

    woken = p.fetches.wake_users
    chunks: list[Sequence[str]] = []

    def dies_at_the_third_chunk(appid: str, users: Sequence[str], now: float, also: Any) -> int:
        if len(chunks) == 2:
            raise ConnectionError("the database went away")
        chunks.append(users)
        return woken(appid, users, now, also)

    monkeypatch.setattr(p.fetches, "wake_users", dies_at_the_third_chunk)
    await grey(p, app.appid, "grey_ratio", ratio=50)  # confirmed: the change is applied
    assert (await p.apps.settings(app.appid))["urls"]["periodic"]["grey_ratio"] == 50
    assert "the scheduler resumes it" in caplog.text

    async def due_now() -> list[str]:
        rows = [await p.db.read(p.fetches.get_user, app.appid, u) for u in USERS]
        return sorted(r["user_id"] for r in rows if r and r["next_due_at"] <= fake_clock.now())

    first_two = sorted(USERS)[:14]
    assert await due_now() == [u for u in moved if u in first_two]
    (owed,) = await p.db.read(p.registry.owed_wakes, fake_clock.now() + 1)
    assert owed.wake_from == first_two[-1]
    monkeypatch.setattr(p.fetches, "wake_users", woken)  # the database is back

    assert await p.apps.resume_wakes() == 0  # it may still be moving on (another node's)
    # the operator sees it (console, CLI, admin API): in progress for a minute, then stalled
    (waking,) = (await p.apps.settings(app.appid))["waking"]
    assert waking == {
        "change_id": owed.change_id, "kind": "periodic", "op": "grey_ratio", "ratio": 50,
        "confirmed_at": fake_clock.now(), "moved_on_at": fake_clock.now(),
        "after_user": first_two[-1], "stalled": False,
    }  # fmt: skip
    fake_clock.advance(apps_service.WAKE_IDLE_S)
    assert (await p.apps.settings(app.appid))["waking"][0]["stalled"] is True
    stopping = asyncio.Event()
    stopping.set()  # the server stopping: no chunk is begun, the wake stays owed
    assert await p.apps.resume_wakes(stopping) == 1
    assert await due_now() == [u for u in moved if u in first_two]
    assert await p.apps.resume_wakes() == 1
    assert await due_now() == moved
    assert await p.db.read(p.registry.owed_wakes, fake_clock.now() + 1) == []
    assert (await p.apps.settings(app.appid))["waking"] == []
    assert await p.apps.resume_wakes() == 0
    # another node resuming it at the same time records its progress after the end: the wake
    # stays done (its settings were cleared: a revived row broke every later round)
    late = functools.partial(p.registry.wake_moved_on, change_id=owed.change_id,
                             wake_from=USERS[3], now=fake_clock.now())  # fmt: skip
    await p.db.write(lambda: _in_transaction(p, late))
    assert await p.db.read(p.registry.owed_wakes, fake_clock.now() + 1000) == []
    counter.requests.clear()
    assert await run(p) == len(moved)
    assert served(counter) == {u: "/grey" for u in moved}


async def test_a_url_change_whose_wake_failed_wakes_every_user_later(
    platforms: Make, fake_clock: FakeClock, counter: Counter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A main URL change wakes the whole app in one write: cut short, it is owed too."""
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "periodic", counter.url + "/old")
    await launch_all(p, app.appid, USERS[:5])
    assert await run(p) == 5
    fake_clock.advance(3600)
    wake_app = p.fetches.wake_app

    def down(appid: str, now: float, also: Any) -> int:
        raise ConnectionError("the database went away")

    monkeypatch.setattr(p.fetches, "wake_app", down)
    await confirm_url(p, app.appid, "periodic", counter.url + "/new")  # applied; wake owed
    monkeypatch.setattr(p.fetches, "wake_app", wake_app)
    counter.requests.clear()
    assert await run(p) == 0  # nobody due: their next fetch is 11 hours away
    fake_clock.advance(apps_service.WAKE_IDLE_S)
    assert await p.apps.resume_wakes() == 1
    assert await run(p) == 5
    assert served(counter) == {u: "/new" for u in USERS[:5]}


async def test_the_scheduler_resumes_owed_wakes_and_outlives_a_failed_round(
    platforms: Make, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = await platforms(clock=fake_clock)
    rounds: list[str] = []

    async def resume(stop: asyncio.Event | None = None) -> int:
        rounds.append("round")
        if len(rounds) == 1:
            raise ConnectionError("the database went away")
        return 0

    monkeypatch.setattr(p.apps, "resume_wakes", resume)
    stop = asyncio.Event()
    loop = asyncio.create_task(p.apps.wake_loop(stop, every_s=0.01))

    async def three_rounds() -> bool:
        return len(rounds) >= 3

    await eventually(three_rounds)  # the first failed; the loop went on
    stop.set()
    await asyncio.wait_for(loop, 5)
