"""``miniport analytics saved|dashboard|user|forget`` as a user runs them: the real executable
with ``--json``, through a running server's admin API and on the data directory alone."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.acceptance.test_analytics_cli import data, failed, miniport, ok, serve, write
from tests.support.analytics_api import PURCHASE
from tests.support.cli import together

__all__ = ["data", "serve"]  # fixtures used here


async def define(data: Path, tmp_path: Path) -> str:
    appid: str = (await ok(data, "app", "create", "Shop"))["appid"]
    await ok(data, "analytics", "field", "add", appid, "price", "--type", "int")
    await ok(data, "analytics", "field", "add", appid, "color", "--type", "string")
    await ok(data, "analytics", "event", "save", appid, "--file",
             write(tmp_path, "p.json", PURCHASE))  # fmt: skip
    await ok(data, "analytics", "publish", appid)
    return appid


async def report(url: str, appid: str, token: str, events: list[dict[str, Any]]) -> None:
    async with aiohttp.ClientSession() as session, session.post(
        f"{url}/runtime/v1/apps/{appid}/analytics/events",
        json={"sent_at": int(time.time() * 1000), "events": events},
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:
        assert resp.status == 200 and (await resp.json())["accepted"] == len(events)


async def test_saved_reports_dashboards_and_users_through_a_server(
    data: Path, tmp_path: Path, serve: Any
) -> None:
    server = await serve()
    appid = await define(data, tmp_path)
    token = (await ok(data, "user", "token", "buyer", "--device", "phone"))["runtime_token"]
    now = int(time.time() * 1000)
    await report(server.url, appid, token, [
        {"id": f"p{i}", "event": "purchase", "data": {"price": 10 * i, "color": "red"},
         "ts": now - 1000 + i} for i in range(3)])  # fmt: skip

    params = {"event": "purchase", "metrics": ["count", "sum:price"], "granularity": "all"}
    saved = await ok(data, "analytics", "saved", "save", appid, "--name", "sales", "--kind",
                     "report", "--params", json.dumps(params))  # fmt: skip
    assert saved["name"] == "sales" and saved["params"]["metrics"] == ["count", "sum:price"]
    # read-only or refused: side by side
    direct, ran, listed, shown, human, duplicate, bad, invalid, kind, missing = await together(
        ok(data, "analytics", "report", appid, "--event", "purchase", "--metric", "count",
           "--metric", "sum:price", "--granularity", "all"),
        ok(data, "analytics", "saved", "run", appid, "sales"),
        ok(data, "analytics", "saved", "list", appid),
        ok(data, "analytics", "saved", "show", appid, "sales"),
        miniport(data, "analytics", "saved", "run", appid, "sales"),
        failed(data, "analytics", "saved", "save", appid, "--name", "sales", "--kind", "report",
               "--params", json.dumps(params)),
        failed(data, "analytics", "saved", "save", appid, "--name", "x", "--kind", "report",
               "--params", "{not json"),
        failed(data, "analytics", "saved", "save", appid, "--name", "x", "--kind", "funnel",
               "--params", "{}"),
        miniport(data, "analytics", "saved", "save", appid, "--name", "x", "--kind", "pie"),
        failed(data, "analytics", "saved", "run", appid, "nope"),
    )  # fmt: skip
    # the same answer (the default window ends at "now", a moment later)
    assert ran["rows"] == direct["rows"] and ran["rows"][0]["sum:price"] == 30
    assert ran.keys() == direct.keys()
    assert [r["name"] for r in listed["reports"]] == ["sales"]
    assert shown["kind"] == "report"
    assert human.code == 0 and "sum:price" in human.out
    assert duplicate["error"] == "conflict" and "already exists" in duplicate["message"]
    assert bad["error"] == "invalid_input" and "--params is not valid JSON" in bad["message"]
    assert "params.steps" in invalid["message"]
    assert kind.code == 2 and "pie" in kind.err
    assert missing["error"] == "not_found"

    await ok(data, "analytics", "saved", "save", appid, "--name", "funnel", "--kind", "funnel",
             "--params", json.dumps({"steps": ["purchase", "purchase"]}))  # fmt: skip
    await ok(data, "analytics", "dashboard", "create", appid, "Main", "--last-days", "7")
    await ok(data, "analytics", "dashboard", "add", appid, "Main", "sales", "--width", "2")
    await ok(data, "analytics", "dashboard", "add", appid, "Main", "funnel")
    moved = await ok(data, "analytics", "dashboard", "move", appid, "Main", "funnel", "--to", "0")
    assert [i["report"] for i in moved["items"]] == ["funnel", "sales"]
    board = await ok(data, "analytics", "dashboard", "show", appid, "Main", "--run")
    assert board["items"][1]["result"]["rows"][0]["count"] == 3
    human = await miniport(data, "analytics", "dashboard", "show", appid, "Main", "--run")
    assert human.code == 0 and "1. sales" in human.out
    removed = await ok(data, "analytics", "dashboard", "remove", appid, "Main", "funnel")
    assert [i["report"] for i in removed["items"]] == ["sales"]

    events = await ok(data, "analytics", "user", appid, "--user", "buyer", "--limit", "2")
    assert [e["data"]["price"] for e in events["events"]] == [10, 20] and events["more"]
    older = await ok(data, "analytics", "user", appid, "--user", "buyer", "--before",
                     events["before"])  # fmt: skip
    assert [e["data"]["price"] for e in older["events"]] == [0]
    assert await ok(data, "analytics", "forget", appid, "--user", "buyer") == {
        "deleted": 3, "tests": 0}
    assert (await ok(data, "analytics", "user", appid, "--user", "buyer"))["events"] == []


async def test_without_a_server_they_run_locally(data: Path, tmp_path: Path) -> None:
    appid = await define(data, tmp_path)
    await ok(data, "analytics", "saved", "save", appid, "--name", "n", "--kind", "report",
             "--params", '{"event": "purchase"}')  # fmt: skip
    assert (await ok(data, "analytics", "saved", "run", appid, "n"))["rows"] == []
    await ok(data, "analytics", "dashboard", "create", appid, "D", "--from", "2026-01-01",
             "--to", "2026-01-31", "--tz", "Asia/Shanghai")  # fmt: skip
    board = await ok(data, "analytics", "dashboard", "add", appid, "D", "n")
    assert (board["from"], board["to"], board["items"][0]["report"]) == (
        "2026-01-01", "2026-01-31", "n")
    assert (await ok(data, "analytics", "dashboard", "list", appid))["dashboards"] == [
        {"name": "D", "reports": 1}]
    assert await ok(data, "analytics", "forget", appid, "--user", "nobody") == {
        "deleted": 0, "tests": 0}
    assert await ok(data, "analytics", "saved", "delete", appid, "n") == {
        "name": "n", "status": "deleted"}
    assert (await ok(data, "analytics", "dashboard", "show", appid, "D"))["items"] == []
    gone = await failed(data, "analytics", "dashboard", "delete", appid, "E")
    assert gone["error"] == "not_found"
