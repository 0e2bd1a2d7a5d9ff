"""When the Python runtime tries again: the analytics' backoff with jitter and ``Retry-After``,
and the event stream's reconnects. 10,000 devices that failed at the same moment (the event
store down, a node restarted) retried at the same instants, every one of them, doubling in step:
a thundering herd each time the platform came back. The shared cases against a real server are
in ``test_runtime_analytics.py`` (``vectors/report_status.json``); the JavaScript runtime's in
``js/test/``."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from miniport.runtime import RuntimeClient
from miniport.runtime.analytics import backoff
from miniport.runtime.transport import retry_after_seconds


def test_the_wait_is_spread_between_half_and_all_of_a_doubling_delay() -> None:
    """Equal jitter: devices that failed together draw different waits in [delay/2, delay]."""
    assert backoff(0, 1, 60, None, lambda: 0.0) == (1, 0.5)
    assert backoff(0, 1, 60, None, lambda: 0.5) == (1, 0.75)
    assert backoff(0, 1, 60, None, lambda: 1.0) == (1, 1.0)
    delays = []
    previous = 0.0
    for _ in range(8):
        previous, wait = backoff(previous, 1, 60, None, lambda: 0.25)
        assert previous / 2 <= wait <= previous
        delays.append(previous)
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]  # doubling, capped
    herd = {backoff(8, 1, 60, None, lambda v=v / 100: v)[1] for v in range(100)}  # type: ignore[misc]
    assert len(herd) == 100 and min(herd) == 8 and max(herd) < 16


def test_retry_after_is_the_least_wait_capped_and_the_doubling_goes_on_from_it() -> None:
    assert backoff(0, 1, 60, 5, lambda: 0.0) == (10, 5)  # at least 5 s, spread up to 10
    assert backoff(0, 1, 60, 5, lambda: 1.0) == (10, 10)
    assert backoff(10, 1, 60, None, lambda: 0.0) == (20, 10)  # then doubling from there
    assert backoff(32, 1, 60, 5, lambda: 0.0) == (60, 30)  # a longer backoff stays
    assert backoff(0, 1, 60, 86_400, lambda: 0.0) == (60, 60)  # not a day: the longest delay
    assert backoff(0, 1, 60, float("inf"), lambda: 0.9) == (60, 60)
    assert backoff(0, 1, 60, 45, lambda: 0.0) == (60, 45)  # at least 45, within 60
    assert backoff(0, 1, 60, 0, lambda: 0.0) == (1, 0.5)
    assert backoff(0, 1, 60, -3, lambda: 0.0) == (1, 0.5)


def test_retry_after_in_either_form() -> None:
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert retry_after_seconds("5", None, 0) == 5
    assert retry_after_seconds(" 120 ", date, 0) == 120
    assert retry_after_seconds("9" * 5000, None, 0) == float("inf")  # capped by the caller
    # an HTTP-date counts from the answer's Date (a phone's clock may be hours off) ...
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:08 GMT", date, 0) == 8
    assert retry_after_seconds("Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:30 1994", 0) == 7
    # ... else from the device's clock; a date gone by is no wait
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:08 GMT", None, 1445412480) == 8
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:08 GMT", "garbage", 1445412480) == 8
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:08 GMT", None, 1445412490) == 0
    for unreadable in (None, "", "soon", "1.5", "-3", "²", "Wed, 99 Oct 2015 07:28:08 GMT"):
        assert retry_after_seconds(unreadable, None, 0) is None, unreadable


Answer = Callable[[int], web.StreamResponse]
Loopback = Callable[[str, str, Answer], Awaitable[str]]


@pytest.fixture
async def loopback() -> AsyncIterator[Loopback]:
    """A server on 127.0.0.1 with one route answering ``answer(n)`` to its n-th request (from
    1). Returns its URL."""
    runners: list[web.AppRunner] = []

    async def start(method: str, path: str, answer: Answer) -> str:
        calls = itertools.count(1)

        async def handle(request: web.Request) -> web.StreamResponse:
            await request.read()
            return answer(next(calls))

        app = web.Application()
        app.router.add_route(method, path, handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_the_timer_waits_at_least_retry_after_before_sending_again(
    loopback: Loopback,
) -> None:
    """A first retry delay of 0.05 s: without Retry-After the batch went again at once, into a
    platform that had asked for 30 s of quiet."""
    asked: list[int] = []

    def answer(n: int) -> web.StreamResponse:
        asked.append(n)
        body = {"error": "analytics_unavailable", "message": "ClickHouse cannot be reached"}
        return web.json_response(body, status=503, headers={"Retry-After": "30"})

    url = await loopback("POST", "/runtime/v1/apps/mp1/analytics/events", answer)
    async with RuntimeClient(
        url, "mp1", "tok", analytics_retry_base_s=0.05, analytics_flush_interval_s=0.05,
        builtin_events=False, rand=lambda: 0.0,
    ) as rt:  # fmt: skip
        rt.report_analytics("purchase", {})
        assert (await rt.flush_analytics())["pending"] == 1
        assert rt.analytics.retry_wait_s == 30 and rt.analytics.retry_delay_s == 60
        rt.report_analytics("purchase", {})
        rt.analytics.flush_soon()  # the flush interval and a new report do not cut it short
        await asyncio.sleep(0.5)
        assert asked == [1]


async def test_each_device_draws_its_own_wait_from_its_random_source(
    loopback: Loopback,
) -> None:
    def answer(n: int) -> web.StreamResponse:
        return web.Response(status=502, text="<html>bad gateway</html>", content_type="text/html")

    url = await loopback("POST", "/runtime/v1/apps/mp1/analytics/events", answer)
    waits = []
    for share in (0.0, 0.5, 0.999):
        async with RuntimeClient(
            url, "mp1", "tok", analytics_retry_base_s=30, rand=lambda s=share: s,  # type: ignore[misc]
        ) as rt:  # fmt: skip
            rt.report_analytics("purchase", {})
            await rt.flush_analytics()
            assert rt.analytics.retry_delay_s == 30
            waits.append(rt.analytics.retry_wait_s)
    assert waits == [15, 22.5, pytest.approx(29.985)]


async def _first_reconnect_wait(rt: RuntimeClient) -> float:
    """The wait before the stream's first reconnect, once the client has computed it."""
    task = asyncio.create_task(rt.connect(timeout_s=30))
    try:
        for _ in range(500):
            if rt.reconnect_wait_s:
                return rt.reconnect_wait_s
            await asyncio.sleep(0.01)
        raise AssertionError("the stream did not try to reconnect")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize(
    ("status", "headers", "share", "wait"),
    [
        (500, {}, 0.0, 0.25),  # 0.5 s with jitter: between 0.25 and 0.5 s
        (500, {}, 0.5, 0.375),
        (500, {"Retry-After": "4"}, 0.0, 0.25),  # read on a 429 or 503 only
        (503, {"Retry-After": "4"}, 0.0, 4),  # at least Retry-After ...
        (503, {"Retry-After": "4"}, 0.5, 6),  # ... and up to twice it, capped at 15 s
        (429, {"Retry-After": "6"}, 0.5, 9),
        (503, {"Retry-After": "3600"}, 0.0, 15),
    ],
)
async def test_the_event_stream_reconnects_after_a_jittered_wait_and_retry_after(
    loopback: Loopback,
    status: int,
    headers: dict[str, str],
    share: float,
    wait: float,
) -> None:
    """After a node restart its 10,000 devices reconnected at 0.5, 1.5, 3.5 s... all at once,
    and a 503's Retry-After was not read."""

    def answer(n: int) -> web.StreamResponse:
        return web.json_response({"error": "busy", "message": "busy"}, status=status,
                                 headers=headers)  # fmt: skip

    url = await loopback("GET", "/runtime/v1/events", answer)
    async with RuntimeClient(url, "mp1", "tok", rand=lambda: share) as rt:
        assert await _first_reconnect_wait(rt) == wait
