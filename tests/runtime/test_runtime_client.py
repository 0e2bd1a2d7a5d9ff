"""The Python runtime client against the real server (loopback)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from miniport.runtime import RuntimeAPIError, RuntimeClient
from tests.conftest import DevServer, LiveServer, confirm_url


@contextlib.asynccontextmanager
async def ann_on_an_app(
    live_server: LiveServer, dev_server: DevServer, cache: Path, *kinds: str
) -> AsyncIterator[tuple[RuntimeClient, list[dict[str, Any]], str]]:
    """A new app with the developer server's URL for each of ``kinds``, and the runtime of its
    user ann (connected, keeping its data in ``cache``), with the pushes it hears."""
    p = live_server.platform
    app = await p.apps.create("rt", "test")
    for kind in kinds:
        await confirm_url(p, app.appid, kind, f"{dev_server.url}/{kind}")
    token = p.auth.runtime_token("ann", "phone")
    async with RuntimeClient(live_server.url, app.appid, token, cache_path=cache) as client:
        arrived: list[dict[str, Any]] = []
        client.on_background_fetch_data(arrived.append)
        await client.connect()
        yield client, arrived, app.appid


async def test_wx_api_end_to_end(
    live_server: LiveServer, dev_server: DevServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache.json"
    async with ann_on_an_app(live_server, dev_server, cache, "pre", "periodic") as (
        client, arrived, appid
    ):
        with pytest.raises(RuntimeAPIError) as missing:
            await client.get_background_fetch_token()
        assert missing.value.err_msg.startswith("getBackgroundFetchToken:fail token not set")

        await client.launch(path="pages/a/a", query={"id": "7"}, scene=1011)
        pre = await client.get_background_fetch_data("pre", wait_ms=3000)
        assert pre["errMsg"] == "getBackgroundFetchData:ok"
        assert (pre["path"], pre["query"], pre["scene"]) == ("pages/a/a", "id=7", 1011)

        assert (await client.set_background_fetch_token("tok-ann"))["errMsg"] == (
            "setBackgroundFetchToken:ok"
        )
        assert (await client.get_background_fetch_token())["token"] == "tok-ann"
        for _ in range(100):  # the scheduler fetches the periodic URL as soon as a token is set
            if any(m["fetchType"] == "periodic" for m in arrived):
                break
            await asyncio.sleep(0.05)
        periodic = [m for m in arrived if m["fetchType"] == "periodic"]
        assert periodic and periodic[0]["fetchedData"] == "hello"
        code = (await client.login())["code"]
        assert code

    # a new client (a relaunch) answers from the local cache without a round trip
    offline = RuntimeClient("http://127.0.0.1:9", appid, "unused", cache_path=cache)
    cached = await offline.get_background_fetch_data("periodic", cached=True)
    assert cached["fetchedData"] == "hello"
    await offline.close()


async def test_bad_token_is_an_errmsg(live_server: LiveServer) -> None:
    app = await live_server.platform.apps.create("rt", "test")
    async with RuntimeClient(live_server.url, app.appid, "not-a-token") as client:
        with pytest.raises(RuntimeAPIError) as err:
            await client.get_background_fetch_data("periodic")
    assert err.value.status == 401
    assert err.value.err_msg == "getBackgroundFetchData:fail invalid runtime token"


async def test_a_refused_token_tells_the_host_once_and_a_new_token_reconnects(
    live_server: LiveServer,
) -> None:
    """A stream that cannot open because the token is refused (revoked while the device was
    offline, expired) told the host nothing and retried for good; the host now hears
    ``unauthorized`` once, from the refusal or from the stream's last message when its token is
    revoked while open, not at every retry, and a new token set on the client opens it again."""
    p = live_server.platform
    app = await p.apps.create("rt", "test")
    old = p.auth.runtime_token("ann")
    await p.auth.revoke_runtime("ann", None, "admin")
    async with RuntimeClient(live_server.url, app.appid, old) as client:
        heard: list[dict[str, Any]] = []
        client.on("unauthorized", heard.append)
        with pytest.raises(TimeoutError):
            await client.connect(timeout_s=2)  # refused at 0, 0.5 and 1.5 s
        assert [m.get("message") for m in heard] == ["runtime token revoked"]
        await asyncio.sleep(1.1)  # a token issued after the revocation's second
        client.token = p.auth.runtime_token("ann")
        await asyncio.wait_for(client._connected.wait(), 20)
        await p.auth.revoke_runtime("ann", None, "admin")
        for _ in range(100):
            if len(heard) == 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.6)  # refused reconnects meanwhile (backoff 0.5 s, 1 s)
        assert [m.get("message") for m in heard] == ["runtime token revoked"] * 2


async def test_a_cache_file_that_cannot_be_written_loses_no_read_and_no_push(
    live_server: LiveServer, dev_server: DevServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The local copy is for offline starts: a directory that is gone (or a full disk) made
    a read the server had answered raise FileNotFoundError, and a pushed body end the stream
    before its listeners heard it."""
    cache = tmp_path / "gone" / "cache.json"
    async with ann_on_an_app(live_server, dev_server, cache, "pre") as (client, arrived, _):
        await client.launch(path="pages/a/a")
        pre = await client.get_background_fetch_data("pre", wait_ms=3000)
        assert pre["errMsg"] == "getBackgroundFetchData:ok"
        for _ in range(100):
            if arrived:
                break
            await asyncio.sleep(0.05)
        assert arrived and arrived[0]["fetchType"] == "pre"
    assert "cannot keep background data in" in caplog.text


async def test_a_launch_goes_out_without_waiting_for_the_analytics_configuration() -> None:
    """The pre-fetch starts when the platform hears the launch: sent after the configuration's
    request, every pre-fetch started one round trip late, or never behind a request that hung.
    Here the configuration is answered only once the launch has arrived."""
    from aiohttp import web

    seen: list[str] = []
    launched = asyncio.Event()

    async def config(request: web.Request) -> web.Response:
        seen.append("config asked")
        try:
            await asyncio.wait_for(launched.wait(), 2)
        except TimeoutError:
            seen.append("config gave up waiting for the launch")
        return web.json_response({"version": 0, "events": []})

    async def launch(request: web.Request) -> web.Response:
        seen.append("launch")
        launched.set()
        return web.json_response({"errMsg": "launch:ok", "prefetch": True})

    app = web.Application()
    app.router.add_get("/runtime/v1/apps/mp1/analytics/config", config)
    app.router.add_post("/runtime/v1/apps/mp1/launch", launch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with RuntimeClient(url, "mp1", "tok", builtin_events=False) as client:
            assert (await client.launch("pages/a"))["errMsg"] == "launch:ok"
            await client.analytics.close(flush=False)
    finally:
        await runner.cleanup()
    assert "launch" in seen and "config gave up waiting for the launch" not in seen, seen
