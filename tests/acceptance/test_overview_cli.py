"""``miniport analytics overview`` and ``realtime`` as a user runs them: the real executable
against a running ``miniport serve --dev`` (admin API) fed by the Python runtime (system
properties, built-in events), then on the data directory alone; readable at 80 columns;
bad input exits 1 with a clear message."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from miniport.runtime import RuntimeClient
from tests.acceptance.test_analytics_cli import ENV, data, failed, ok, serve, stop
from tests.support.cli import run_cli

__all__ = ["data", "serve"]  # fixtures


async def human(data: Path, *args: str) -> str:
    result = await run_cli(*args, "--data-dir", str(data), env=ENV | {"COLUMNS": "80"})
    assert result.code == 0, result
    for line in result.out.splitlines():
        assert len(line) <= 80, line
    return result.out


async def test_overview_and_realtime_from_a_runtime(data: Path, serve: Any) -> None:
    server = await serve()
    appid = (await ok(data, "app", "create", "Shop"))["appid"]
    token = (await ok(data, "user", "token", "dev1", "--device", "phone"))["runtime_token"]
    system = {"$platform": "ios", "$model": "iPhone 15"}
    async with RuntimeClient(server.url, appid, token, system=system) as phone:
        await phone.launch(path="pages/index/index", scene=1001)
        phone.page_load("pages/index/index")
        phone.page_show("pages/index/index")
        await asyncio.sleep(0.02)  # events of one millisecond have no order but their ids
        phone.page_unload("pages/index/index")
        phone.page_load("pages/goods/goods")
        phone.page_show("pages/goods/goods")
        assert (await phone.flush_analytics())["pending"] == 0

    # the events just accepted are in the real-time view at once
    live = await ok(data, "analytics", "realtime", appid)
    assert len(live["minutes"]) == 30
    assert sum(m["events"] for m in live["minutes"]) >= 4
    assert live["minutes"][-1]["active_users"] + live["minutes"][-2]["active_users"] >= 1
    events = [e["event"] for e in live["latest"]]
    assert "$launch" in events and "$pageview" in events
    assert {e["user"] for e in live["latest"]} == {"dev1"}

    found = await ok(data, "analytics", "overview", appid, "--granularity", "all")
    [row] = found["rows"]
    assert row["active_users"] == 1 and row["new_users"] == 1 and row["launches"] == 1
    assert row["sessions"] == 1 and row["page_views"] == 2 and row["pages_per_session"] == 2.0
    pages = {p["path"]: p for p in found["top_pages"]}
    assert set(pages) == {"pages/index/index", "pages/goods/goods"}
    assert pages["pages/goods/goods"]["exit_rate"] == 1.0
    assert pages["pages/index/index"]["exit_rate"] == 0.0
    assert pages["pages/index/index"]["avg_time_s"] is not None
    assert found["scenes"] == [{"scene": 1001, "users": 1}]
    split = await ok(data, "analytics", "overview", appid, "--group-by", "$model")
    assert {r["$model"] for r in split["rows"]} == {"iPhone 15"}
    assert all("$model" in p for p in split["top_pages"] + split["scenes"])

    text = await human(data, "analytics", "overview", appid, "--group-by", "$platform")
    assert "pg/sess" in text and "pages/goods/goods" in text and "1001" in text
    text = await human(data, "analytics", "realtime", appid)
    assert "$launch" in text and "dev1" in text

    # without the server, the same answers from the data directory
    await stop(server)
    again = await ok(data, "analytics", "overview", appid, "--granularity", "all")
    assert again["rows"] == found["rows"] and again["top_pages"] == found["top_pages"]
    assert (await ok(data, "analytics", "realtime", appid, "--latest", "1"))["latest"][0][
        "event"
    ] in events


async def test_empty_app_says_what_to_do(data: Path) -> None:
    appid = (await ok(data, "app", "create", "Shop"))["appid"]
    assert (await ok(data, "analytics", "overview", appid))["rows"] == []
    assert "simulator" in await human(data, "analytics", "overview", appid)
    assert "simulator" in await human(data, "analytics", "realtime", appid)


async def test_bad_input_is_a_clear_error(data: Path, serve: Any) -> None:
    appid = (await ok(data, "app", "create", "Shop"))["appid"]
    for served in (False, True):
        if served:
            await serve()
        answer = await failed(data, "analytics", "overview", appid, "--group-by", "color")
        assert answer["error"] == "invalid_input"
        assert "'color' is not a system property" in answer["message"]
        answer = await failed(data, "analytics", "overview", appid, "--tz", "Nowhere")
        assert "unknown time zone 'Nowhere'" in answer["message"]
        answer = await failed(data, "analytics", "overview", appid, "--from", "2026-12-01",
                              "--to", "2026-11-01")  # fmt: skip
        assert "from_ms must be before to_ms" in answer["message"]
        answer = await failed(data, "analytics", "realtime", "mp_nope")
        assert answer["error"] == "not_found"
        answer = await failed(data, "analytics", "realtime", appid, "--tz", "Nowhere")
        assert "unknown time zone" in answer["message"]
    usage = await run_cli("analytics", "overview", appid, "--granularity", "week",
                          "--data-dir", str(data), env=ENV)  # fmt: skip
    assert usage.code == 2 and "week" in usage.err
