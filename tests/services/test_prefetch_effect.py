"""Pre-fetch effectiveness: each launch is judged at its first 'pre' read (ready or not, how
long after the launch the data came, how long the device waited) and reported by scene, path
and platform."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from miniport.clock import FakeClock
from miniport.domain.requests import Launch
from miniport.errors import InvalidInput, NoData
from miniport.platform import Platform
from tests.conftest import confirm_url
from tests.support.platforms import Counter, StartServer, eventually

Make = Callable[..., Awaitable[Platform]]


async def test_launches_are_judged_and_reported(
    platforms: Make, fake_clock: FakeClock, counter: Counter
) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "pre", counter.url + "/pre")

    # ready before the device asked
    await p.background.launch(app.appid, "bob", Launch("pages/a", "", 1001, platform="ios"))
    await p.background.prefetch.wait(app.appid, "bob", 5)
    fake_clock.advance(0.2)
    await p.background.get_data(app.appid, "bob", "pre")
    await p.background.get_data(app.appid, "bob", "pre")  # a second read is not a launch

    # not ready when asked: the device waits and the data comes 300 ms after the launch
    counter.hold = True
    await p.background.launch(app.appid, "ann", Launch("pages/a", "", 1001, platform="android"))
    read = asyncio.create_task(p.background.get_data(app.appid, "ann", "pre", wait_ms=5000))
    await asyncio.sleep(0.05)
    fake_clock.advance(0.3)
    counter.release.set()
    assert (await read)["fetchedData"]

    # a launch whose data never arrived within the wait
    counter.status = 503
    counter.hold = False
    await p.background.launch(app.appid, "cy", Launch("pages/b", "", 1007, platform="ios"))
    await p.background.prefetch.wait(app.appid, "cy", 5)
    with pytest.raises(NoData):
        await p.background.get_data(app.appid, "cy", "pre", wait_ms=100)

    shown = await p.background.prefetch_report(app.appid)
    assert shown["rows"] == [
        {"scene": 1001, "path": "pages/a", "platform": "android", "launches": 1,
         "ready_share": 0.0, "p50_ms": pytest.approx(300), "p90_ms": pytest.approx(300)},
        {"scene": 1001, "path": "pages/a", "platform": "ios", "launches": 1,
         "ready_share": 1.0, "p50_ms": 0.0, "p90_ms": 0.0},
        {"scene": 1007, "path": "pages/b", "platform": "ios", "launches": 1,
         "ready_share": 0.0, "p50_ms": None, "p90_ms": None},
    ]  # fmt: skip
    assert (await p.background.prefetch_report(app.appid, "2020-01-01", "2020-01-02"))["rows"] == []
    with pytest.raises(InvalidInput):
        await p.background.prefetch_report(app.appid, "yesterday")


async def test_an_earlier_launchs_answer_does_not_make_a_later_launch_ready(
    platforms: Make, fake_clock: FakeClock, loopback: StartServer
) -> None:
    """The user reopened the app elsewhere (launch B) while launch A's pre-fetch was in
    flight: A's answer arriving set B's trace ready, and B was reported 100 % ready although
    its own data never came before its read."""
    gates = {"pages/a": asyncio.Event(), "pages/b": asyncio.Event()}
    asked: list[str] = []

    async def developer(request: web.Request) -> web.Response:
        asked.append(request.query["path"])
        await asyncio.wait_for(gates[request.query["path"]].wait(), 10)
        return web.Response(text="data for " + request.query["path"])

    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "pre", await loopback(developer) + "/pre")
    await p.background.launch(app.appid, "u1", Launch("pages/a", "", 1001))
    await p.background.launch(app.appid, "u1", Launch("pages/b", "", 1047))
    gates["pages/a"].set()  # A's answer arrives; B's request goes out after it, and hangs
    await eventually(lambda: asyncio.sleep(0, asked == ["pages/a", "pages/b"]))
    fake_clock.advance(0.5)
    assert (await p.background.get_data(app.appid, "u1", "pre"))["path"] == "pages/a"
    gates["pages/b"].set()
    await p.background.prefetch.drain()
    (row,) = (await p.background.prefetch_report(app.appid))["rows"]
    assert (row["path"], row["scene"], row["ready_share"]) == ("pages/b", 1047, 0.0)
