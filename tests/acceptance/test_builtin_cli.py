"""``miniport analytics builtin APPID on|off`` as a user runs it: the real executable, through a
running server's admin API (the server then refuses built-in events and says so in the
runtime's configuration) and on the data directory alone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.acceptance.test_analytics_cli import data, failed, miniport, ok, serve, stop
from tests.acceptance.test_saved_cli import define

__all__ = ["data", "serve"]  # fixtures used here


async def runtime(url: str, appid: str, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The runtime's configuration, and the answer to a batch of $launch + purchase."""
    now = int(time.time() * 1000)
    events = [
        {"id": f"l{now}", "event": "$launch", "data": {"cold": True}, "ts": now},
        {"id": f"p{now}", "event": "purchase", "data": {"price": 1}, "ts": now},
    ]
    headers = {"Authorization": f"Bearer {token}"}
    base = f"{url}/runtime/v1/apps/{appid}/analytics"
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(base + "/config") as resp:
            config = await resp.json()
        async with session.post(base + "/events", json={"sent_at": now, "events": events}) as r:
            return config, await r.json()


async def test_switch_through_a_server_and_on_the_data_directory(
    data: Path, tmp_path: Path, serve: Any
) -> None:
    server = await serve()
    appid = await define(data, tmp_path)
    token = (await ok(data, "user", "token", "u1", "--device", "phone"))["runtime_token"]
    config, answer = await runtime(server.url, appid, token)
    assert config["builtin_events"] is True and answer["accepted"] == 2

    done = await ok(data, "analytics", "builtin", appid, "off")
    assert done == {"appid": appid, "builtin_events": False, "changed": True}
    config, answer = await runtime(server.url, appid, token)
    assert config["builtin_events"] is False
    assert answer["accepted"] == 1
    assert [(r["index"], r["code"]) for r in answer["rejected"]] == [(0, "builtin_off")]
    human = await miniport(data, "analytics", "builtin", appid, "off")
    assert human.code == 0 and f"built-in events off (already) for {appid}" in human.out

    # bad input: a clear error, nothing changed
    wrong = await miniport(data, "analytics", "builtin", appid, "maybe")
    assert wrong.code == 2 and "'maybe' is not one of 'on', 'off'" in wrong.err
    missing = await failed(data, "analytics", "builtin", "wxnope", "on")
    assert missing["error"] == "not_found"
    entries = (await ok(data, "change", "audit", appid))["entries"]
    switched = [e for e in entries if e["action"] == "analytics.builtin_events"]
    assert [e["detail"] for e in switched] == [{"builtin_events": False}]  # once: a change

    await stop(server)
    # no server: the same service in the CLI process
    assert (await ok(data, "analytics", "builtin", appid, "on"))["changed"] is True
    human = await miniport(data, "analytics", "builtin", appid, "on")
    assert human.code == 0 and f"built-in events on (already) for {appid}" in human.out
