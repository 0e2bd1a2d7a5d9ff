"""Several API nodes: two `miniport serve` processes on one PostgreSQL database and one Redis
share the console's sign-in throttle and show each other's pending-change QR codes."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from miniport.config import Settings
from miniport.platform import create_platform
from tests.conftest import free_port
from tests.support.cli import CLEAN_ENV, MINIPORT
from tests.support.platforms import eventually
from tests.web.console.test_console_http import PASSWORD, client, csrf_of, sign_in

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
StartNode = Callable[[Path], Awaitable[str]]


@pytest.fixture
async def nodes(pg_url: str, redis_url: str) -> AsyncIterator[StartNode]:
    procs: list[asyncio.subprocess.Process] = []
    logs: list[BinaryIO] = []

    async def start(data_dir: Path) -> str:
        port = free_port()
        env = {**CLEAN_ENV, "MINIPORT_DATABASE_URL": pg_url, "MINIPORT_REDIS_URL": redis_url,
               "MINIPORT_DEV": "1"}
        logs.append(log := data_dir.with_suffix(".log").open("wb"))  # stderr, shown if it fails
        proc = await asyncio.create_subprocess_exec(
            MINIPORT, "serve", "--port", str(port), "--data-dir", str(data_dir), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=log)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"

        async def healthy() -> bool:
            assert proc.returncode is None, data_dir.with_suffix(".log").read_text()[-3000:]
            try:
                async with aiohttp.ClientSession() as s, s.get(url + "/healthz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(healthy, timeout_s=30)
        return url

    try:
        yield start
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 30)
        for log in logs:
            log.close()


async def test_two_nodes_share_the_sign_in_throttle_and_qr_codes(
    tmp_path: Path, pg_url: str, redis_url: str, nodes: StartNode,
) -> None:
    p = create_platform(Settings(data_dir=tmp_path / "setup", database_url=pg_url,
                                 redis_url=redis_url, dev=True))
    await p.start()
    try:
        await p.console_users.create_user("ops", "admin", PASSWORD)
        await p.console_users.create_user("dana", "developer", PASSWORD)
        app = await p.apps.create("shop", "test")
        await p.members.add(app.appid, "dana", "developer", "test")  # per-app access
    finally:
        await p.close()
    a, b = await nodes(tmp_path / "a"), await nodes(tmp_path / "b")

    # ten wrong passwords, half on each node: the account is throttled on both
    for i in range(10):
        async with client() as s:
            r = await sign_in(s, (a, b)[i % 2], "ops", "wrong-password")
            r.release()
            assert r.status == 401
    for node in (a, b):
        async with client() as s:
            r = await sign_in(s, node, "ops")
            text = (await r.text()).lower()
            assert r.status == 403 and "too many" in text, (r.status, text[:300])

    # a change requested on node a shows its QR code on node b (same session cookie)
    async with client() as s:
        r = await sign_in(s, a, "dana")
        r.release()
        assert r.status == 303
        async with s.get(f"{a}/console/apps/{app.appid}/urls") as r:
            token = csrf_of(await r.text())
        async with s.post(f"{a}/console/apps/{app.appid}/changes", allow_redirects=False, data={
                "kind": "pre", "op": "set", "url": "https://dev.example/pre",
                "csrf_token": token}) as r:
            assert r.status == 303, await r.text()
            change_id = parse_qs(urlsplit(r.headers["location"]).query)["change"][0]
        async with s.get(f"{b}/console/apps/{app.appid}/changes/{change_id}/qr.png") as r:
            assert r.status == 200 and r.headers["content-type"] == "image/png"
            assert (await r.read()).startswith(b"\x89PNG")
        async with s.get(f"{b}/console/apps/{app.appid}/urls") as r:
            assert f"changes/{change_id}/qr.png" in await r.text()


async def test_nodes_started_together_keep_each_their_own_cli_key(
    tmp_path: Path, pg_url: str, redis_url: str, nodes: StartNode,
) -> None:
    """Each node makes the CLI key of its data directory at start; two nodes starting at once
    on one PostgreSQL used to race on one key id (the second start crashed on the unique key)
    and, started one after the other, the second replaced (so revoked) the first's key."""
    from tests.support.cli import run_cli

    await asyncio.gather(nodes(tmp_path / "a"), nodes(tmp_path / "b"))
    env = {"MINIPORT_DATABASE_URL": pg_url, "MINIPORT_REDIS_URL": redis_url}
    for name in ("a", "b"):
        made = await run_cli("app", "create", f"shop-{name}", "--json",
                             "--data-dir", str(tmp_path / name), env=env)  # fmt: skip
        assert made.code == 0, made.err
    listed = await run_cli("app", "list", "--json", "--data-dir", str(tmp_path / "a"), env=env)
    assert listed.code == 0, listed.err
    assert {"shop-a", "shop-b"} <= {app["name"] for app in listed.json["apps"]}
