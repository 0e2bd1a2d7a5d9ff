"""Fixtures and helpers shared by the platform tests (registered for the whole suite by
``tests/conftest.py``): loopback developer servers, extra platforms, the live server, the event
stream reader, and running the periodic engine until idle. Every server listens on loopback only."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from miniport.clock import FakeClock
from miniport.config import Settings
from miniport.domain.requests import Launch
from miniport.platform import Platform, create_platform
from tests.conftest import LiveServer, confirm_url, make_settings, running_server

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
StartServer = Callable[..., Awaitable[str]]


@pytest.fixture
async def loopback() -> AsyncIterator[StartServer]:
    """``url = await loopback(app_or_handler, host="127.0.0.1")`` starts an aiohttp server on a
    loopback address and a free port; everything is stopped at the end of the test. Handlers
    that wait should wait on ``release`` (set before shutdown) so teardown is prompt."""
    runners: list[web.AppRunner] = []

    async def start(target: web.Application | Handler, host: str = "127.0.0.1") -> str:
        if isinstance(target, web.Application):
            app = target
        else:
            app = web.Application()
            app.router.add_route("GET", "/{tail:.*}", target)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
        await runner.setup()
        await web.TCPSite(runner, host, 0).start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    try:
        yield start
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


@dataclass
class Counter:
    """Counts requests (and the most seen at once) at a loopback developer server."""

    url: str = ""
    requests: list[web.Request] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    delay_s: float = 0.0
    status: int = 200
    body: Callable[[web.Request], str] = lambda r: "data for " + r.query.get("token", "?")
    headers: Callable[[web.Request], dict[str, str]] = lambda r: {}  # e.g. an ETag
    release: asyncio.Event = field(default_factory=asyncio.Event)
    hold: bool = False

    def by_token(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.requests:
            key = r.query.get("token", "")
            counts[key] = counts.get(key, 0) + 1
        return counts

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.hold:
                await asyncio.wait_for(self.release.wait(), 30)
            elif self.delay_s:
                await asyncio.sleep(self.delay_s)
            return web.Response(
                text=self.body(request), status=self.status, headers=self.headers(request)
            )
        finally:
            self.in_flight -= 1


@pytest.fixture
async def counter(loopback: StartServer) -> AsyncIterator[Counter]:
    c = Counter()
    c.url = await loopback(c.handle)
    try:
        yield c
    finally:
        c.release.set()


@pytest.fixture
async def platforms(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Platform]]]:
    """``p = await platforms(clock=..., **settings)``: extra started platforms, closed at the end.
    Settings default to the suite's (dev mode, data in tmp_path/data)."""
    stack = AsyncExitStack()

    async def make(
        clock: FakeClock | None = None, broker: Any = None, **overrides: Any
    ) -> Platform:
        settings: Settings = make_settings(tmp_path, **overrides)
        p = create_platform(settings, clock, broker=broker)
        await p.start()
        stack.push_async_callback(p.close)
        return p

    async with stack:
        yield make


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock at a fixed, literal instant: 2026-01-01T00:00:00Z."""
    return FakeClock(1_767_225_600.0)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[LiveServer]]]:
    """``server = await live(**settings)``: the real app under uvicorn on 127.0.0.1 with the
    scheduler and the system clock, like ``live_server`` but with chosen settings."""
    async with AsyncExitStack() as stack:
        started = 0

        async def start(**overrides: Any) -> LiveServer:
            nonlocal started
            started += 1
            settings = make_settings(tmp_path / f"live{started}", **overrides)
            return await stack.enter_async_context(running_server(settings))

        yield start


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 15) -> Any:
    """Retry an async check until it returns a truthy value (generous timeout: no hang)."""
    async def poll() -> Any:
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), timeout_s)


class SSE:
    """Reads server-sent events from an open aiohttp response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout_s: float = 15) -> tuple[str, dict[str, Any]]:
        async def read() -> tuple[str, dict[str, Any]]:
            event, data = "message", ""
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the event stream ended")
                line = raw.decode().rstrip("\r\n")
                if line.startswith(":"):
                    continue
                if not line:
                    if data:
                        return event, json.loads(data)
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    data += value

        return await asyncio.wait_for(read(), timeout_s)

    async def until(self, event: str, timeout_s: float = 15) -> dict[str, Any]:
        async def scan() -> dict[str, Any]:
            while True:
                name, data = await self.next(timeout_s)
                if name == event:
                    return data

        return await asyncio.wait_for(scan(), timeout_s)


async def settle(p: Platform) -> None:
    """Wait until what the platform queued to write behind (launches, pre-fetch results) is
    stored, as it is within milliseconds in a running server."""
    pending = getattr(p.background, "pending", None)
    if pending is not None:
        await pending.flush()
    # and the launches' own writes (the version a launch reported, its pre-fetch outcome): on
    # PostgreSQL one still holding the pair's row makes the engine's claim (SKIP LOCKED) pass
    # it over, and a run until idle then fetched nothing (seen once under a loaded suite)
    writes = getattr(p.background, "_writes", None)
    if writes:
        await asyncio.gather(*list(writes), return_exceptions=True)


async def periodic_app(p: Platform, url: str) -> str:
    app = await p.apps.create("shop", "test")
    await confirm_url(p, app.appid, "periodic", url)
    return app.appid


async def user(p: Platform, appid: str, user_id: str, token: str | None = None) -> None:
    await p.background.launch(appid, user_id, Launch())
    if token is not None:
        await p.background.set_token(appid, user_id, token)
    await settle(p)


async def run(p: Platform) -> int:
    """Run the engine until nothing is due; the number of attempts it made."""
    await settle(p)
    engine = p.engine or p.make_engine()
    before = engine.completed
    await asyncio.wait_for(engine.run(asyncio.Event(), until_idle=True), 60)
    return engine.completed - before


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Platform settings for each state database: SQLite, then a fresh PostgreSQL database."""
    if request.param == "postgres":
        return {"database_url": request.getfixturevalue("pg_url")}
    return {}
