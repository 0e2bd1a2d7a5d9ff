"""A pair is due only when it can be fetched: pairs of pre-fetch-only apps, of disabled periodic
URLs and token-less pairs (after their one logged attempt) stay out of the due index, so claims
and the engine's idle poll never wade through them. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from miniport.clock import FakeClock
from miniport.platform import Platform
from tests.conftest import confirm_url
from tests.support.platforms import Counter, periodic_app, run, user

Make = Callable[..., Awaitable[Platform]]
async def due_at(p: Platform, appid: str, user_id: str) -> float | None:
    row = await p.db.read(p.fetches.get_user, appid, user_id)
    assert row is not None
    return row["next_due_at"]  # type: ignore[no-any-return]


async def idle_poll(p: Platform) -> float | None:
    return await p.db.read(p.fetches.next_due_at, p.rules.active_since(p.clock.now()))


async def test_launches_of_a_pre_fetch_only_app_are_never_due(
    platforms: Make, fake_clock: FakeClock, counter: Counter, db: dict[str, Any]
) -> None:
    p = await platforms(clock=fake_clock, **db)
    app = await p.apps.create("pre-only", "dev")
    await confirm_url(p, app.appid, "pre", counter.url + "/pre")
    await user(p, app.appid, "u1", "tok1")
    await user(p, app.appid, "u2")
    await user(p, app.appid, "u1")  # launching again changes nothing
    assert await due_at(p, app.appid, "u1") is None and await due_at(p, app.appid, "u2") is None
    assert await idle_poll(p) is None

    # the periodic URL arrives: the user with a token is due at once, the other is not
    await confirm_url(p, app.appid, "periodic", counter.url + "/periodic")
    assert await due_at(p, app.appid, "u1") == fake_clock.now()
    assert await due_at(p, app.appid, "u2") is None
    assert await idle_poll(p) == fake_clock.now()
    assert await run(p) == 1
    periodic = [r for r in counter.requests if r.path == "/periodic"]
    assert [r.query["token"] for r in periodic] == ["tok1"]


async def test_a_token_less_pair_is_logged_once_then_waits_for_its_token(
    platforms: Make, fake_clock: FakeClock, counter: Counter, db: dict[str, Any]
) -> None:
    p = await platforms(clock=fake_clock, **db)
    appid = await periodic_app(p, counter.url)
    await user(p, appid, "u")
    assert await run(p) == 1  # the first launch: one attempt that logs the missing token
    assert await due_at(p, appid, "u") is None
    for _ in range(3):
        fake_clock.advance(13 * 3600)
        await user(p, appid, "u")
        assert await run(p) == 0  # launches without a token do not make it due again
    assert [e["verdict"] for e in await p.background.log(appid)] == ["token_not_set"]

    await p.background.set_token(appid, "u", "tok")
    assert await due_at(p, appid, "u") == fake_clock.now()
    assert await run(p) == 1
    assert counter.by_token() == {"tok": 1}


async def test_a_token_set_before_the_first_launch_waits_for_the_launch(
    platforms: Make, fake_clock: FakeClock, counter: Counter, db: dict[str, Any]
) -> None:
    p = await platforms(clock=fake_clock, **db)
    appid = await periodic_app(p, counter.url)
    await p.background.set_token(appid, "u", "tok")
    assert await due_at(p, appid, "u") is None  # never launched: not active, not due
    await user(p, appid, "u")
    assert await due_at(p, appid, "u") == fake_clock.now()
    assert await run(p) == 1


async def test_disabling_the_periodic_url_empties_the_due_index(
    platforms: Make, fake_clock: FakeClock, counter: Counter, db: dict[str, Any]
) -> None:
    p = await platforms(clock=fake_clock, **db)
    appid = await periodic_app(p, counter.url)
    await user(p, appid, "u", "tok")
    pending = await p.apps.request_change(appid, "periodic", "disable", None, "dev")
    await p.apps.confirm(pending.code, "admin")
    assert await due_at(p, appid, "u") is None
    assert await idle_poll(p) is None

    pending = await p.apps.request_change(appid, "periodic", "enable", None, "dev")
    await p.apps.confirm(pending.code, "admin")
    assert await run(p) == 1


async def test_a_claim_parks_the_due_pairs_that_can_no_longer_be_fetched(
    platforms: Make, fake_clock: FakeClock, counter: Counter, db: dict[str, Any]
) -> None:
    """A due pair whose user stopped launching, or whose app cannot be fetched (as an older
    version left them), leaves the index when a claim meets it; the claim goes on to the pairs
    it can use, so no separate round has to scan the whole index for them."""
    p = await platforms(clock=fake_clock, **db)
    app = await p.apps.create("pre-only", "dev")
    fetchable = await periodic_app(p, counter.url)
    await user(p, fetchable, "gone", "tok-gone")
    fake_clock.advance(8 * 86400)  # "gone" has not launched for 8 days
    now = fake_clock.now()
    await user(p, fetchable, "ok", "tok")
    await p.db.write(p.fetches.record_launch, app.appid, "stale", now)
    with p.db.writing() as conn:
        for user_id, due in (("stale", now - 2), ("gone", now - 1), ("ok", now)):
            conn.exec_driver_sql(
                p.db.sql("UPDATE app_users SET next_due_at = ? WHERE user_id = ?"), (due, user_id)
            )
    claimed = await p.db.write(
        p.fetches.claim_due, now, p.rules.active_since(now), p.rules.lease_until(now), 2
    )
    assert [c.user_id for c in claimed] == ["ok"]
    assert await due_at(p, app.appid, "stale") is None
    assert await due_at(p, fetchable, "gone") is None
    await user(p, fetchable, "gone")  # launching again brings it back
    assert await due_at(p, fetchable, "gone") == now


async def test_a_claim_never_returns_a_pair_whose_app_cannot_be_fetched(
    platforms: Make, fake_clock: FakeClock, counter: Counter, db: dict[str, Any]
) -> None:
    """The claim reads the due index alone; a pair that should not be there (its periodic URL
    was disabled while it was being fetched) is parked by the claim instead of fetched."""
    p = await platforms(clock=fake_clock, **db)
    appid = await periodic_app(p, counter.url)
    await user(p, appid, "u", "tok")
    pending = await p.apps.request_change(appid, "periodic", "disable", None, "dev")
    await p.apps.confirm(pending.code, "admin")
    now = fake_clock.now()
    with p.db.writing() as conn:  # a result stored after the disable set a due time
        conn.exec_driver_sql(p.db.sql("UPDATE app_users SET next_due_at = ?"), (now,))
    assert await idle_poll(p) == now
    claimed = await p.db.write(
        p.fetches.claim_due, now, p.rules.active_since(now), p.rules.lease_until(now), 10
    )
    assert claimed == []
    assert await due_at(p, appid, "u") is None and await idle_poll(p) is None
    assert counter.requests == []
