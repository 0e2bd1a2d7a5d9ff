"""Browser tests: Playwright (sync API) driving Debian's Chromium at /usr/bin/chromium against a
real Miniport server (uvicorn, scheduler running) on 127.0.0.1, with a sample developer server on
loopback. The server runs in its own thread and event loop; the tests are plain functions, so
Playwright's sync API never meets a running event loop.

Chromium missing: skipped on a developer machine, a failure in CI (install it with
``apt-get install -y chromium``; never ``playwright install``)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from aiohttp import web

from miniport.config import Settings
from miniport.platform import Platform, create_platform
from miniport.services.console_users import ConsoleUsers
from miniport.services.members import MemberService
from miniport.storage.registry import App
from tests.conftest import free_port

CHROMIUM = os.environ.get("MINIPORT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PASSWORD = "correct-horse-9"
T = TypeVar("T")


@dataclass
class DevBackend:
    """The developer's server: /data/{kind} answers JSON (counting answers), /status/{code}
    answers that status."""

    url: str = ""
    served: dict[str, int] = field(default_factory=dict)

    def app(self) -> web.Application:
        async def data(request: web.Request) -> web.Response:
            kind = request.match_info["kind"]
            self.served[kind] = self.served.get(kind, 0) + 1
            q = request.query
            body = {
                "kind": kind, "served": self.served[kind], "appid": q.get("appid"),
                "greeting": f"hello from the developer server ({kind} #{self.served[kind]})",
                "goods": [{"id": "t1", "name": "Oolong", "price": 21},
                          {"id": "t2", "name": "Mooncake", "price": 42}],
                "path": q.get("path"), "query": q.get("query"), "scene": q.get("scene"),
                "token": q.get("token"), "has_code": "code" in q,
            }
            return web.Response(text=json.dumps(body), content_type="application/json")

        async def status(request: web.Request) -> web.Response:
            return web.Response(status=int(request.match_info["code"]), text="no")

        app = web.Application()
        app.router.add_get("/data/{kind}", data)
        app.router.add_get("/status/{code}", status)
        return app


class LiveConsole:
    """The server in a background thread; ``run`` executes a coroutine on its loop."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.data_dir = data_dir
        self.settings = settings  # more Settings values (cors_origins=..., say)
        self.users: list[tuple[str, str]] = []  # developers and viewers made by user()
        self.appids: list[str] = []  # apps made by app()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dev = DevBackend()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.platform: Platform
        self.auth: ConsoleUsers
        self._server: uvicorn.Server | None = None
        self.thread = threading.Thread(target=self._main, name="miniport-live", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the fixture
            self.error = exc
            self.ready.set()
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        from miniport.web.app import create_app

        runner = web.AppRunner(self.dev.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.dev.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        settings = Settings(data_dir=self.data_dir, dev=True, retry_base_s=1.0,
                            public_url=self.url, **self.settings)
        self.platform = create_platform(settings)
        app = create_app(self.platform)
        self.auth = app.state.console.auth.users
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", ws="none")
        self._server = uvicorn.Server(config)
        task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if task.done():
                await task
            await asyncio.sleep(0.02)
        self.ready.set()
        try:
            await task
        finally:
            await runner.cleanup()

    def start(self) -> None:
        self.thread.start()
        self.ready.wait(30)
        if self.error is not None:
            raise RuntimeError("the live server did not start") from self.error

    def stop(self) -> None:
        if self._server is not None:
            self.loop.call_soon_threadsafe(setattr, self._server, "should_exit", True)
        self.thread.join(15)

    def run(self, coro: Awaitable[T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    # --- set-up helpers ---
    def user(self, role: str, prefix: str | None = None) -> str:
        """A console user; a developer or viewer is made a member of every app these helpers
        made (before or after), with its role."""
        name = f"{prefix or role}-{secrets.token_hex(3)}"
        self.run(self.auth.create_user(name, role, PASSWORD, actor="test"))
        if role != "admin":
            self.users.append((name, role))
            for appid in self.appids:
                self.run(self._members().add(appid, name, role, "test"))
        return name

    def _members(self) -> MemberService:
        return MemberService(self.platform.db, self.platform.registry, self.platform.clock)

    def app(self, name: str = "Shop", **urls: str) -> App:
        """A new app; ``periodic=`` / ``pre=`` set and confirm those URLs (paths on the dev
        server, or full URLs)."""
        async def make() -> App:
            app = await self.platform.apps.create(name, "test")
            for kind, url in urls.items():
                full = url if url.startswith("http") else self.dev.url + url
                pending = await self.platform.apps.request_change(app.appid, kind, "set", full,
                                                                  "test")
                await self.platform.apps.confirm(pending.code, "test-admin")
            for user, role in self.users:
                await self._members().add(app.appid, user, role, "test")
            self.appids.append(app.appid)
            return app

        return self.run(make())

    def call(self, name: str, *args: Any) -> Any:
        """A platform service call, e.g. call("background.set_token", appid, user, token)."""
        target: Any = self.platform
        for part in name.split("."):
            target = getattr(target, part)
        return self.run(target(*args))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveConsole]:
    server = LiveConsole(tmp_path_factory.mktemp("browser") / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped on purpose: while Playwright's sync API is open it keeps its event loop
    current on the main thread, which would break the async tests of other modules."""
    if not Path(CHROMIUM).exists():
        message = f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def shot(page: Any, name: str, *, full_page: bool = True) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def sign_in(page: Any, base: str, name: str, password: str = PASSWORD,
            path: str = "/console/apps") -> None:
    page.goto(base + path)
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("form button[type=submit]")
    page.wait_for_load_state("load")


def watch_errors(page: Any, errors: list[str]) -> None:
    """Collect the page's uncaught errors and what its Content-Security-Policy refused (a
    console error, not a page error: a chart that needed an inline style would draw nothing
    and fail no other check)."""
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda msg: errors.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text else None)
