"""``miniport analytics retention`` and ``paths`` as a user runs them: the real executable
against a running server (its admin API), then on the data directory alone; ``--json``
prints one object, the text tables fit 80 columns, bad input exits 1 with a clear message."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.acceptance.test_analytics_cli import data, failed, ok, serve, stop, write
from tests.support.analytics_api import GOODS_CLICK, PURCHASE
from tests.support.cli import run_cli

__all__ = ["data", "serve"]  # fixtures
DAY = 86_400_000
NARROW = {"COLUMNS": "80"}


async def text(data: Path, *args: str) -> str:
    result = await run_cli(*args, "--data-dir", str(data), env=NARROW)
    assert result.code == 0, result
    return result.out


async def test_retention_and_paths_commands(data: Path, tmp_path: Path, serve: Any) -> None:
    server = await serve()
    appid = (await ok(data, "app", "create", "Shop"))["appid"]
    await ok(data, "analytics", "field", "add", appid, "price", "--type", "int")
    await ok(data, "analytics", "field", "add", appid, "color", "--type", "string")
    for event in (PURCHASE, GOODS_CLICK):
        await ok(data, "analytics", "event", "save", appid, "--file",
                 write(tmp_path, f"{event['name']}.json", event))  # fmt: skip
    await ok(data, "analytics", "publish", appid)
    now = int(time.time() * 1000)
    start = now - 3 * DAY
    async with aiohttp.ClientSession() as session:
        for n, user in enumerate(["u1", "u2", "u3"]):
            token = (await ok(data, "user", "token", user, "--device", "d"))["runtime_token"]
            events = [
                {"id": f"{user}a", "event": "goods_click", "ts": start, "page": "pages/list",
                 "data": {"price": 1}},
                {"id": f"{user}b", "event": "purchase", "ts": start + 60_000 + n * DAY,
                 "page": "pages/pay/" + "x" * 60, "data": {"price": 2}},
            ]  # fmt: skip
            async with session.post(
                f"{server.url}/runtime/v1/apps/{appid}/analytics/events",
                json={"sent_at": now, "events": events},
                headers={"Authorization": f"Bearer {token}"},
            ) as resp:
                assert resp.status == 200, await resp.text()

    args = ("analytics", "retention", appid, "--start", "goods_click", "--return", "purchase",
            "--periods", "30")  # fmt: skip
    found = await ok(data, *args)
    assert [c["size"] for c in found["cohorts"]] == [3]
    assert found["cohorts"][0]["retained"][:3] == [1, 1, 1]
    table = await text(data, *args)
    assert all(len(line) <= 80 for line in table.splitlines()), table
    # periods after today have not happened: the table stops at day 3
    assert "D3" in table and "D4" not in table and "1 33%" in table
    paths = await ok(data, "analytics", "paths", appid, "--start", "goods_click", "--by",
                     "event", "--depth", "5")  # fmt: skip
    assert paths["users"] == 3
    assert paths["links"] == [{"depth": 1, "from": "goods_click", "to": "purchase", "users": 1}]
    table = await text(data, "analytics", "paths", appid, "--start", "pages/list")
    assert all(len(line) <= 80 for line in table.splitlines()), table
    assert "pages/list" in table and "…" in table  # the long page name is cut

    # without the server: the same service on the data directory
    await stop(server)
    assert (await ok(data, *args))["cohorts"] == found["cohorts"]


@pytest.mark.parametrize(
    ("args", "error", "fragment"),
    [
        (("retention", "{appid}", "--start", "nope", "--return", "$any"), "not_found",
         "'nope' is not defined"),
        (("retention", "{appid}", "--start", "$any", "--return", "$any", "--periods", "0"),
         "invalid_input", "periods is 1 to 30"),
        (("retention", "{appid}", "--start", "$any", "--return", "$any", "--periods", "31"),
         "invalid_input", "periods is 1 to 30"),
        (("retention", "{appid}", "--start", "$any", "--return", "$any", "--tz", "Mars/Base"),
         "invalid_input", "Mars/Base"),
        (("retention", "{appid}", "--start", "$any", "--return", "$any", "--from",
          "2026-11-20", "--to", "2026-11-01"), "invalid_input", "before"),
        (("paths", "{appid}", "--start", "home", "--depth", "6"), "invalid_input",
         "depth is 1 to 5"),
        (("paths", "{appid}", "--start", "nope", "--by", "event"), "not_found",
         "'nope' is not defined"),
    ],
)  # fmt: skip
async def test_bad_input_exits_1(
    data: Path, args: tuple[str, ...], error: str, fragment: str
) -> None:
    appid = (await ok(data, "app", "create", "Shop"))["appid"]
    answer = await failed(data, "analytics", *(a.format(appid=appid) for a in args))
    assert answer["error"] == error and fragment in answer["message"], answer


async def test_bad_unit_is_refused_by_the_command_line(data: Path) -> None:
    result = await run_cli("analytics", "retention", "mp_x", "--start", "$any", "--return",
                           "$any", "--unit", "month", "--data-dir", str(data))  # fmt: skip
    assert result.code == 2 and "month" in result.err and "Traceback" not in result.err
