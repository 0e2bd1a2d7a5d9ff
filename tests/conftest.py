"""Shared fixtures. Every network test talks only to 127.0.0.1.

PostgreSQL and Redis: tests marked ``postgres`` / ``redis`` use the servers at
MINIPORT_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/postgres) and
MINIPORT_TEST_REDIS_URL (default redis://127.0.0.1:6379/15). ClickHouse: tests using
``clickhouse_url`` use the server at MINIPORT_TEST_CLICKHOUSE_URL (default: the one
scripts/clickhouse/start.sh runs, clickhouse://default:@127.0.0.1:18123/miniport_test), each in
a database of its own that is dropped afterwards. In CI (CI=true) an unreachable server FAILS
the run; on a developer machine without them the tests are skipped, saying why."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from aiohttp import web

from miniport.clock import FakeClock
from miniport.config import Settings
from miniport.platform import Platform, create_platform

# fixtures shared by the whole suite live in tests/support/
pytest_plugins = [
    "tests.support.platforms",
    "tests.support.analytics_api",
    "tests.support.cli",
]

PG_URL = os.environ.get("MINIPORT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("MINIPORT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CLICKHOUSE_URL = os.environ.get(
    "MINIPORT_TEST_CLICKHOUSE_URL", "clickhouse://default:@127.0.0.1:18123/miniport_test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_unavailable(what: str, why: str) -> None:
    message = f"{what} is not reachable ({why})"
    if IN_CI:
        pytest.fail(f"{message}: CI must run these tests against the real server")
    pytest.skip(f"{message}: skipped on this machine; CI runs them")


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "dev": True, "retry_base_s": 1.0}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    import time

    return FakeClock(time.time())


@pytest.fixture
async def platform(settings: Settings, clock: FakeClock) -> AsyncIterator[Platform]:
    p = create_platform(settings, clock)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


@dataclass
class DevServer:
    """A developer server on loopback whose answer each test sets."""

    url: str
    requests: list[web.Request] = field(default_factory=list)
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None

    def respond(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        self.handler = handler


@pytest.fixture
async def dev_server() -> AsyncIterator[DevServer]:
    server = DevServer(url="")

    async def dispatch(request: web.Request) -> web.StreamResponse:
        server.requests.append(request)
        if server.handler is None:
            return web.Response(text="hello")
        return await server.handler(request)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", dispatch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        await runner.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    platform: Platform
    admin_key: str


@contextlib.asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[LiveServer]:
    """The real ASGI app under uvicorn on 127.0.0.1 (scheduler on, system clock), with an admin
    API key; leaving the block stops it, so a second block is a restart on the same data."""
    from miniport.web.app import create_app
    from miniport.web.lean_http import LeanHttpToolsProtocol

    p = create_platform(settings)
    port = free_port()
    p.public_url = f"http://127.0.0.1:{port}"
    config = uvicorn.Config(create_app(p), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", timeout_graceful_shutdown=3,
                            http=LeanHttpToolsProtocol)  # as `miniport serve` runs it
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                await task
            await asyncio.sleep(0.02)
        key = (await p.auth.create_key("api", "test-admin", "admin"))["key"]
        yield LiveServer(p.public_url, p, str(key))
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def live_server(settings: Settings) -> AsyncIterator[LiveServer]:
    async with running_server(settings) as server:
        yield server


async def confirm_url(p: Platform, appid: str, kind: str, url: str) -> None:
    pending = await p.apps.request_change(appid, kind, "set", url, "test")
    await p.apps.confirm(pending.code, "test-admin")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    try:
        import psycopg

        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:
        service_unavailable("PostgreSQL at " + PG_URL, str(exc).strip().splitlines()[0])
        raise
    name = "miniport_test_" + secrets.token_hex(4)
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
async def pg_platform(tmp_path: Path, clock: FakeClock, pg_url: str) -> AsyncIterator[Platform]:
    """A started platform whose state is on a PostgreSQL database of the test's own."""
    p = create_platform(make_settings(tmp_path, database_url=pg_url), clock)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
def redis_url() -> str:
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        client.ping()
        client.close()
    except Exception as exc:
        service_unavailable("Redis at " + REDIS_URL, str(exc))
    return REDIS_URL


def clickhouse_database_url(name: str) -> str:
    """MINIPORT_TEST_CLICKHOUSE_URL with database ``name``; fails/skips when unreachable."""
    from miniport.analytics.clickhouse_transport import HttpTransport, parse_clickhouse_url

    base = CLICKHOUSE_URL.split("?", 1)[0].rsplit("/", 1)[0]
    transport = HttpTransport(parse_clickhouse_url(CLICKHOUSE_URL), connect_timeout_s=2)
    try:
        transport.execute("SELECT 1", in_database=False)
    except Exception as exc:
        service_unavailable("ClickHouse at " + CLICKHOUSE_URL, str(exc))
    finally:
        transport.close()
    return f"{base}/{name}"


def drop_clickhouse_database(url: str) -> None:
    from miniport.analytics.clickhouse_transport import HttpTransport, parse_clickhouse_url

    parsed = parse_clickhouse_url(url)
    transport = HttpTransport(parsed)
    try:
        transport.execute(f"DROP DATABASE IF EXISTS {parsed.database}", in_database=False)
    finally:
        transport.close()


def event_keys_at(path: Path) -> Any:
    """An index of stored event ids (for ClickHouse stores) in a new SQLite file at ``path``:
    stores meant to act as nodes of one deployment share one."""
    from miniport.storage.event_keys import EventKeyIndex

    return EventKeyIndex.open(f"sqlite:///{path}")


@pytest.fixture
def clickhouse_url() -> Iterator[str]:
    """A fresh ClickHouse database (created by the store on first use), dropped afterwards."""
    url = clickhouse_database_url("miniport_test_" + secrets.token_hex(4))
    try:
        yield url
    finally:
        drop_clickhouse_database(url)
