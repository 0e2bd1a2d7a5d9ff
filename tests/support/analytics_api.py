"""Analytics through the real HTTP server: an in-process uvicorn on 127.0.0.1 that a test can
stop and start again on the same data directory, and a small client for its admin and runtime
APIs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from miniport.config import Settings
from miniport.platform import Platform
from tests.conftest import LiveServer, running_server

PURCHASE = {"name": "purchase", "display_name": "购买", "mode": "api", "fields": ["price", "color"]}
GOODS_CLICK = {
    "name": "goods_click",
    "display_name": "商品点击",
    "mode": "configured",
    "fields": ["price", "color"],
    "actions": [
        {
            "trigger": "click",
            "action": "report",
            "page": "pages/list/list",
            "element": ".buy",
            "data": {"price": "goods[].price", "color": "$DATASET.color"},
        }
    ],
}


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Api:
    """The admin API of one app (``/admin/v1/apps/{appid}/analytics``) and its runtime API."""

    url: str
    platform: Platform
    admin_key: str
    appid: str
    session: aiohttp.ClientSession

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def runtime(self, user: str, device: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.platform.auth.runtime_token(user, device)}"}

    async def call(
        self, method: str, path: str, body: Any = None, **params: Any
    ) -> tuple[int, Any]:
        base = f"{self.url}/admin/v1/apps/{self.appid}/analytics"
        async with self.session.request(
            method, base + path, json=body, params=params or None, headers=self.admin
        ) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def ok(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        status, answer = await self.call(method, path, body, **params)
        assert status < 300, (method, path, status, answer)
        return answer

    async def define(self, *events: dict[str, Any], publish: bool = False) -> None:
        """Fields price (int) and color (string), the given events, optionally published."""
        for name, kind in (("price", "int"), ("color", "string")):
            await self.ok("POST", "/fields", {"name": name, "type": kind})
        for event in events:
            await self.ok("POST", "/events", event)
        if publish:
            await self.ok("POST", "/publish")

    async def report(self, user: str, batch: dict[str, Any], device: str | None = None) -> Any:
        async with self.session.post(
            f"{self.url}/runtime/v1/apps/{self.appid}/analytics/events",
            json=batch,
            headers=self.runtime(user, device),
        ) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def config(self, user: str, device: str | None = None) -> dict[str, Any]:
        async with self.session.get(
            f"{self.url}/runtime/v1/apps/{self.appid}/analytics/config",
            headers=self.runtime(user, device),
        ) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()  # type: ignore[no-any-return]

    async def count(self, event: str | None = None, include_tests: bool = False) -> int:
        params: dict[str, Any] = {"include_tests": str(include_tests).lower()}
        if event:
            params["event"] = event
        return int((await self.ok("GET", "/count", **params))["count"])


@dataclass
class LiveView:
    """The console's live test view (server-sent events), read in the background."""

    reports: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def read(self, resp: aiohttp.ClientResponse) -> None:
        event, data = "message", ""
        async for raw in resp.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(":")
                if name == "event":
                    event = value.strip()
                elif name == "data":
                    data += value.strip()
                continue
            if data:
                message = json.loads(data)
                async with self.arrived:
                    self.events.append((event, message))
                    if event == "connected":
                        self.connected.set()
                    if event == "testReport":
                        self.reports.append(message)
                    self.arrived.notify_all()
            event, data = "message", ""

    async def wait_for(self, check: Callable[[], Any], timeout_s: float = 10) -> Any:
        async def wait() -> Any:
            async with self.arrived:
                await self.arrived.wait_for(check)
                return check()

        return await asyncio.wait_for(wait(), timeout_s)

    def accepted(self) -> list[dict[str, Any]]:
        return [ev for report in self.reports for ev in report["accepted"]]

    def rejected(self) -> list[dict[str, Any]]:
        return [r for report in self.reports for r in report["rejected"]]


@contextlib.asynccontextmanager
async def watching(api: Api, test_id: str) -> AsyncIterator[LiveView]:
    view = LiveView()
    async with api.session.get(
        f"{api.url}/admin/v1/apps/{api.appid}/analytics/tests/{test_id}/events",
        headers=api.admin,
        timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
    ) as resp:
        assert resp.status == 200
        task = asyncio.create_task(view.read(resp))
        try:
            await asyncio.wait_for(view.connected.wait(), 10)
            yield view
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await task


Running = LiveServer
Serve = Callable[[], "contextlib.AbstractAsyncContextManager[Running]"]


@pytest.fixture
def serve(settings: Settings) -> Serve:
    """``async with serve() as server:`` the real app on the test's data directory; leaving the
    block stops it (closing the event store), so a second block is a restart on the same data."""
    return lambda: running_server(settings)


OpenApi = Callable[[Running, str | None], Awaitable[Api]]


@pytest.fixture
async def open_api() -> AsyncIterator[OpenApi]:
    """``api = await open_api(server, appid)``: an Api on a running server (a new app when
    ``appid`` is None)."""
    sessions: list[aiohttp.ClientSession] = []

    async def make(server: Running, appid: str | None = None) -> Api:
        if appid is None:
            appid = (await server.platform.apps.create("analytics", "test")).appid
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Api(server.url, server.platform, server.admin_key, appid, session)

    try:
        yield make
    finally:
        for session in sessions:
            await session.close()


@pytest.fixture
async def api(serve: Serve, open_api: OpenApi) -> AsyncIterator[Api]:
    """A running server and a new app on it."""
    async with serve() as server:
        yield await open_api(server, None)
