"""One value the database refuses must not block everything queued behind it."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from aiohttp import web

from miniport.clock import FakeClock
from miniport.domain.acceptance import decode_body
from miniport.domain.requests import Launch
from miniport.errors import NoData, StateUnavailable
from miniport.platform import Platform
from miniport.storage.fetches import FetchRecord
from tests.support.platforms import StartServer, periodic_app, run, settle, user

Make = Callable[..., Awaitable[Platform]]


def refuse_user(p: Platform, name: str, method: str) -> list[int]:
    """Make the store refuse any write that carries ``name`` (as PostgreSQL refuses a NUL)."""
    calls: list[int] = []
    original = getattr(p.fetches, method)

    def guarded(*args: Any) -> Any:
        calls.append(1)
        if name in repr(args):
            raise ValueError("refused by the database")
        return original(*args)

    setattr(p.fetches, method, guarded)
    return calls


def test_a_body_with_a_nul_character_is_bad_encoding() -> None:
    decoded = decode_body(b"ok\x00no", "text/plain")
    assert decoded.text is None and "NUL" in (decoded.error or "")


async def test_the_engine_stores_the_others_when_one_result_is_refused(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer
) -> None:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(text="body for " + request.query["token"])

    p = await platforms(clock=fake_clock)
    appid = await periodic_app(p, await loopback(handle))
    for name in ("ann", "bad", "cy"):
        await user(p, appid, name, f"t-{name}")
    refuse_user(p, "'bad'", "record")
    await run(p)
    assert (await p.background.get_data(appid, "ann", "periodic"))[
        "fetchedData"
    ] == "body for t-ann"
    assert (await p.background.get_data(appid, "cy", "periodic"))["fetchedData"] == "body for t-cy"
    row = await p.db.read(p.fetches.get_user, appid, "bad")
    assert row is not None and row["lease_until"] is not None  # left leased: retried later


async def test_write_behind_drops_only_the_refused_item(
    platforms: Make, fake_clock: FakeClock
) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "test")
    refuse_user(p, "'bad'", "write_batch")
    for name in ("ann", "bad", "cy"):
        p.background.pending.launch(app.appid, name, fake_clock.now())
    await settle(p)
    assert await p.db.read(p.fetches.get_user, app.appid, "ann") is not None
    assert await p.db.read(p.fetches.get_user, app.appid, "cy") is not None
    assert await p.db.read(p.fetches.get_user, app.appid, "bad") is None


async def test_a_pre_fetch_result_the_database_refused_is_not_served_from_memory(
    platforms: Make, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Readers see a pre-fetched body from memory until it is flushed; once the database has
    refused it (and stored its neighbours), it must not stay readable as if it were stored."""
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "test")
    refuse_user(p, "'bad'", "write_batch")
    for name in ("ann", "bad"):
        p.background.pending.record(
            FetchRecord(app.appid, name, "pre", "launch", fake_clock.now(), None, "cached",
                        body=f"data of {name}", fetched_at_ms=int(fake_clock.now() * 1000))
        )
    await settle(p)
    assert (await p.background.get_data(app.appid, "ann", "pre"))["fetchedData"] == "data of ann"
    assert (app.appid, "bad", "pre") not in p.background.pending.fresh
    with pytest.raises(NoData):
        await p.background.get_data(app.appid, "bad", "pre")
    # the drop is logged by name, without the user's data
    assert f"pre fetch result of {app.appid}/bad" in caplog.text
    assert "data of bad" not in caplog.text


async def test_write_behind_keeps_everything_while_the_database_is_away(
    platforms: Make, fake_clock: FakeClock
) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "test")
    original = p.fetches.write_batch

    def away(launches: Sequence[Any], records: Sequence[FetchRecord]) -> None:
        raise ConnectionError("database unreachable")

    p.fetches.write_batch = away  # type: ignore[method-assign]
    p.background.pending.launch(app.appid, "ann", fake_clock.now())
    with pytest.raises(RuntimeError):
        await p.background.pending.flush()
    p.fetches.write_batch = original  # type: ignore[method-assign]
    await p.background.pending.flush()
    assert await p.db.read(p.fetches.get_user, app.appid, "ann") is not None


async def test_a_launch_with_control_characters_is_refused(platforms: Make) -> None:
    from miniport.errors import InvalidInput
    from miniport.web.runtime_api import LaunchIn

    with pytest.raises(InvalidInput, match="path contains control characters"):
        LaunchIn(path="pages/a\x00").to_launch()
    with pytest.raises(InvalidInput, match="query contains control characters"):
        LaunchIn(query="a=x\ny").to_launch()
    assert LaunchIn(path="/pages/a", query="x=1").to_launch() == Launch("pages/a", "x=1", 1001)


def locked() -> sqlite3.OperationalError:
    """What SQLite raises for a file another process holds past the busy timeout."""
    return sqlite3.OperationalError("database is locked")


async def test_the_database_away_costs_one_write_per_try_not_one_per_item(
    platforms: Make, fake_clock: FakeClock
) -> None:
    """Each try wrote every queued item alone once the group write had failed: with the
    database away, thousands of failing writes per second for as long as it stayed away."""
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "test")
    original, calls = p.fetches.write_batch, []

    def away(launches: Sequence[Any], records: Sequence[FetchRecord]) -> None:
        calls.append(len(launches))
        raise locked()

    p.fetches.write_batch = away  # type: ignore[method-assign]
    for i in range(50):
        p.background.pending.launch(app.appid, f"u{i}", fake_clock.now())
    with pytest.raises(StateUnavailable):
        await p.background.pending.flush()
    assert calls == [50]
    p.fetches.write_batch = original  # type: ignore[method-assign]
    await p.background.pending.flush()
    assert await p.db.read(p.fetches.get_user, app.appid, "u49") is not None


async def test_an_item_written_alone_while_the_database_came_back_is_kept(
    platforms: Make, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A group write failed on one bad item; while the rest were written one by one, the
    database was away for the first of them and back for the next. The first was dropped as
    if the database refused it ("the database works: what still fails is bad data"): a
    launch lost for good. It is kept, and written at the next try."""
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "test")
    original, alone = p.fetches.write_batch, []

    def flaky(launches: Sequence[Any], records: Sequence[FetchRecord]) -> None:
        if any(user == "bad" for _, user, _ in launches):
            raise ValueError("refused by the database")
        if len(launches) == 1:
            alone.append(launches[0][1])
            if len(alone) == 1:
                raise locked()  # away for the first item alone, back for the next
        original(launches, records)

    p.fetches.write_batch = flaky  # type: ignore[method-assign]
    for name in ("ann", "bad", "cy"):
        p.background.pending.launch(app.appid, name, fake_clock.now())
    await settle(p)
    assert alone[:2] == ["ann", "cy"]  # ann while it was away, cy once it was back
    await p.background.pending.flush()  # the next try (the queue's own comes 20 ms later)
    for name in ("ann", "cy"):
        assert await p.db.read(p.fetches.get_user, app.appid, name) is not None, name
    assert await p.db.read(p.fetches.get_user, app.appid, "bad") is None
    assert "dropped a launch of" in caplog.text and f"{app.appid}/ann" not in caplog.text
