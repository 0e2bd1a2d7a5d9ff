"""``miniport analytics`` as a user runs it: the real executable, ``--json``, against a running
``miniport serve --dev`` (every command goes through its admin API), and on the data directory
alone when no server runs (the same service methods, in the CLI process)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from miniport.runtime import RuntimeClient
from tests.conftest import free_port
from tests.support.analytics_api import GOODS_CLICK, PURCHASE
from tests.support.cli import CLEAN_ENV, MINIPORT, Result, run_cli, together

ENV = CLEAN_ENV | {"COLUMNS": "200"}


async def miniport(data: Path, *args: str) -> Result:
    return await run_cli(*args, "--data-dir", str(data), env=ENV)


async def ok(data: Path, *args: str) -> Any:
    result = await miniport(data, *args, "--json")
    assert result.code == 0, (args, result)
    return result.json


async def failed(data: Path, *args: str) -> dict[str, Any]:
    result = await miniport(data, *args, "--json")
    assert result.code == 1, (args, result)
    assert "Traceback" not in result.err
    return result.json  # type: ignore[no-any-return]


@dataclass
class Served:
    url: str
    proc: asyncio.subprocess.Process


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def serve(data: Path) -> AsyncIterator[Any]:
    """``server = await serve()``: ``miniport serve --dev`` on a free port; ``await stop()``."""
    procs: list[asyncio.subprocess.Process] = []

    async def start() -> Served:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            MINIPORT, "serve", "--dev", "--port", str(port), "--data-dir", str(data), env=ENV,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            for _ in range(600):
                assert proc.returncode is None, "the server exited"
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(url + "/healthz") as resp:
                        if resp.status == 200 and (data / "server.json").exists():
                            return Served(url, proc)
                await asyncio.sleep(0.05)
        raise AssertionError("the server did not start")

    try:
        yield start
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 30)


async def stop(server: Served) -> None:
    server.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(server.proc.wait(), 30) == 0


def write(tmp: Path, name: str, value: Any) -> str:
    path = tmp / name
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return str(path)


async def test_flow_against_a_running_server(data: Path, tmp_path: Path, serve: Any) -> None:
    server = await serve()
    appid = (await ok(data, "app", "create", "Shop"))["appid"]
    token = (await ok(data, "user", "token", "dev1", "--device", "phone"))["runtime_token"]

    # 1. define
    assert await ok(data, "analytics", "field", "add", appid, "price", "--type", "int") == {
        "name": "price",
        "type": "int",
        "slot": 0,
    }
    await ok(data, "analytics", "field", "add", appid, "color", "--type", "string")
    bad_name = await failed(data, "analytics", "field", "add", appid, "Color", "--type", "string")
    assert bad_name["error"] == "invalid_definition"
    assert bad_name["errors"][0]["path"] == "name"
    for event in (PURCHASE, GOODS_CLICK):
        saved = await ok(data, "analytics", "event", "save", appid, "--file",
                         write(tmp_path, f"{event['name']}.json", event))  # fmt: skip
        assert saved["name"] == event["name"] and saved["status"] == "draft"
    broken = {
        **GOODS_CLICK,
        "name": "broken",
        "display_name": "坏",
        "actions": [
            {"trigger": "click", "action": "report", "page": "pages/a/a"},
            {"trigger": "launch", "action": "report", "page": "pages/a/a"},
        ],
    }
    refused = await failed(data, "analytics", "event", "save", appid, "--file",
                           write(tmp_path, "broken.json", broken))  # fmt: skip
    assert [e["path"] for e in refused["errors"]] == ["actions[0].element", "actions[1].page"]
    assert refused["message"].startswith("actions[0].element: trigger 'click' needs an element")
    human = await miniport(data, "analytics", "event", "save", appid, "--file",
                           str(tmp_path / "broken.json"))  # fmt: skip
    assert human.code == 1
    assert "actions[0].element: trigger 'click' needs an element selector" in human.err
    assert "actions[1].page: trigger 'launch' has no page" in human.err
    listed = await ok(data, "analytics", "event", "list", appid)
    assert [e["name"] for e in listed["events"]] == ["purchase", "goods_click"]

    # 2. save and test on the tester's device, watched live from the CLI
    async with RuntimeClient(server.url, appid, token, builtin_events=False) as device:
        await device.connect()
        test_id = (await ok(data, "analytics", "test", "start", appid, "--user", "dev1"))["test_id"]
        for _ in range(200):
            if device.analytics.test_id == test_id:
                break
            await asyncio.sleep(0.02)
        assert device.analytics.test_id == test_id  # pushed on the event stream
        watch = await asyncio.create_subprocess_exec(
            MINIPORT, "analytics", "test", "watch", appid, "--test", test_id, "--count", "3",
            "--json", "--data-dir", str(data), env=ENV,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        human = await asyncio.create_subprocess_exec(
            MINIPORT, "analytics", "test", "watch", appid, "--test", test_id, "--count", "3",
            "--data-dir", str(data), env=ENV,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        for proc in (watch, human):
            assert proc.stderr is not None
            ready = await asyncio.wait_for(proc.stderr.readline(), 30)
            assert b"watching test" in ready

        device.page_load("pages/list/list", {"goods": [{"price": 5}, {"price": 9}]})
        device.page_show("pages/list/list")
        device.click("pages/list/list", {"classes": ["buy"], "dataset": {"color": "red"},
                                         "indexes": [1]})  # fmt: skip
        await asyncio.sleep(0.01)  # the purchase comes after the click (funnel below)
        device.report_analytics("purchase", {"price": 12.7, "color": "red"})
        device.report_analytics("refund", {})
        sent = await device.flush_analytics()
        assert sent["accepted"] == 2 and len(sent["rejected"]) == 1
        out, _ = await asyncio.wait_for(watch.communicate(), 30)
        assert watch.returncode == 0
        lines = [json.loads(line) for line in out.decode().splitlines()]
        assert [(ln["status"], ln.get("event")) for ln in lines] == [
            ("accepted", "goods_click"),
            ("accepted", "purchase"),
            ("rejected", None),
        ]
        click, purchase, refund = lines
        assert (click["page"], click["trigger"], click["action"]) == (
            "pages/list/list", "click", "report",
        )  # fmt: skip
        assert click["values"] == {"price": 9, "color": "red"}
        assert purchase["values"] == {"price": 12, "color": "red"}
        assert purchase["coercions"] == [{"field": "price", "note": "truncated: 12.7 -> 12"}]
        assert refund["reason"] == "unknown event 'refund'"
        shown, _ = await asyncio.wait_for(human.communicate(), 30)
        text = shown.decode()
        assert human.returncode == 0
        assert "goods_click" in text and "price=9" in text and 'color="red"' in text
        assert "truncated: 12.7 -> 12" in text
        assert "rejected" in text and "unknown event 'refund'" in text

        assert await ok(data, "analytics", "sync", appid, "--test", test_id) == {
            "test_id": test_id,
            "synced": 2,
        }
        stopped = await ok(data, "analytics", "test", "stop", appid, "--test", test_id)
        assert stopped["status"] == "stopped"
        for _ in range(200):
            if device.analytics.test_id is None:
                break
            await asyncio.sleep(0.02)
        assert device.analytics.test_id is None  # taken back from the device

    # 3. publish (versioned), reset
    assert await ok(data, "analytics", "publish", appid) == {"version": 1}
    await ok(data, "analytics", "field", "add", appid, "size", "--type", "int")
    reset = await ok(data, "analytics", "reset", appid)
    assert [f["name"] for f in reset["fields"]] == ["price", "color"]
    versions = await ok(data, "analytics", "versions", appid)
    assert [v["version"] for v in versions["versions"]] == [1]
    changed = await failed(data, "analytics", "field", "add", appid, "price", "--type", "string")
    assert changed["errors"] == [
        {
            "path": "type",
            "message": "field 'price' is published as int; "
            "change its type with a retype (the old values stay readable)",
        }
    ]

    # 4. reports, funnel, CSV (read-only: side by side)
    out_file = tmp_path / "purchase.csv"
    rows, table, funnel, any_order, funnel_table, exported, counted = await together(
        ok(data, "analytics", "report", appid, "--event", "purchase", "--metric", "count",
           "--metric", "sum:price", "--group-by", "color", "--filter", "price>=10",
           "--granularity", "all", "--tz", "Asia/Shanghai"),
        miniport(data, "analytics", "report", appid, "--event", "purchase",
                 "--metric", "sum:price"),
        ok(data, "analytics", "funnel", appid, "--step", "goods_click:color=red",
           "--step", "purchase"),
        ok(data, "analytics", "funnel", appid, "--step", "goods_click", "--step", "purchase",
           "--window", "1s", "--order", "any"),
        miniport(data, "analytics", "funnel", appid, "--step", "goods_click",
                 "--step", "purchase", "--window", "1h"),
        ok(data, "analytics", "export", appid, "--event", "purchase", "--format", "csv",
           "--output", str(out_file)),
        ok(data, "analytics", "count", appid),
    )  # fmt: skip
    assert rows["rows"] == [{"bucket": "all", "color": "red", "count": 1, "sum:price": 12}]
    assert table.code == 0 and "sum:price" in table.out and "12" in table.out
    assert [(r["event"], r["users"]) for r in funnel["rows"]] == [
        ("goods_click", 1),
        ("purchase", 1),
    ]
    assert funnel["window_ms"] == 86_400_000 and funnel["rows"][0]["median_s"] is not None
    assert any_order["order"] == "any" and any_order["window_ms"] == 1000
    assert funnel_table.code == 0
    assert "median s" in funnel_table.out and "100%" in funnel_table.out
    assert exported["rows"] == 1
    lines = out_file.read_text().splitlines()
    assert lines[0] == "time,user,page,trigger,action,price,color"
    assert lines[1].endswith(",dev1,pages/list/list,,,12,red")  # reported on that page
    assert counted == {"count": 2}
    # system properties and built-in events (issue 12): grouped and filtered on from the CLI
    system = {"$platform": "ios", "$model": "iPhone 15"}
    async with RuntimeClient(server.url, appid, token, system=system) as phone:
        await phone.launch(path="pages/index/index", scene=1001)
        phone.report_analytics("purchase", {"price": 1})
        assert (await phone.flush_analytics())["pending"] == 0
    by_platform, launches, by_model, unknown = await together(
        ok(data, "analytics", "report", appid, "--event", "purchase", "--group-by", "$platform",
           "--filter", "$scene=1001", "--granularity", "all"),
        ok(data, "analytics", "report", appid, "--event", "$launch", "--group-by", "$cold",
           "--group-by", "$new_user", "--granularity", "all"),
        ok(data, "analytics", "funnel", appid, "--step", "$launch", "--step", "purchase",
           "--group-by", "$model"),
        failed(data, "analytics", "report", appid, "--event", "purchase",
               "--group-by", "$colour"),
    )  # fmt: skip
    assert by_platform["rows"] == [{"bucket": "all", "$platform": "ios", "count": 1}]
    assert launches["rows"] == [{"bucket": "all", "$cold": True, "$new_user": True, "count": 1}]
    assert [(r["$model"], r["users"]) for r in by_model["rows"]] == [("iPhone 15", 1)] * 2
    assert "unknown system property '$colour'" in unknown["message"]

    # without the server, the same commands run on the data directory
    await stop(server)
    assert not (data / "server.json").exists()
    again = await ok(data, "analytics", "report", appid, "--event", "purchase", "--metric",
                     "count", "--metric", "sum:price", "--group-by", "color", "--filter",
                     "price>=10", "--granularity", "all", "--tz", "Asia/Shanghai")  # fmt: skip
    assert again["rows"] == rows["rows"]
    no_server = await failed(data, "analytics", "test", "watch", appid, "--test", test_id)
    assert no_server["error"] == "server_not_running"
    assert "miniport serve" in no_server["message"]


async def test_without_a_server_everything_but_watch_runs_locally(
    data: Path, tmp_path: Path
) -> None:
    appid = (await ok(data, "app", "create", "Shop"))["appid"]
    await ok(data, "analytics", "field", "add", appid, "price", "--type", "int")
    await ok(data, "analytics", "field", "add", appid, "color", "--type", "string")
    await ok(data, "analytics", "event", "save", appid, "--file",
             write(tmp_path, "p.json", PURCHASE))  # fmt: skip
    started = await ok(data, "analytics", "test", "start", appid, "--user", "dev1")
    assert started["devices"] == []
    tests = await ok(data, "analytics", "test", "list", appid)
    assert [t["status"] for t in tests["tests"]] == ["running"]
    await ok(data, "analytics", "test", "stop", appid, "--test", started["test_id"])
    assert await ok(data, "analytics", "publish", appid) == {"version": 1}
    assert await ok(data, "analytics", "publish", appid) == {"version": 2}
    deleted = await ok(data, "analytics", "event", "delete", appid, "purchase")
    assert deleted["status"] == "deleted in draft"
    reset = await ok(data, "analytics", "reset", appid)
    assert [e["name"] for e in reset["events"]] == ["purchase"]
    assert (await ok(data, "analytics", "report", appid, "--event", "purchase"))["rows"] == []
    csv_out = await ok(data, "analytics", "export", appid, "--event", "purchase")
    assert csv_out["csv"].startswith("time,user,page,trigger,action,price,color")

    # a server.json left by a server that is gone does not get in the way
    (data / "server.json").write_text(
        json.dumps({"url": f"http://127.0.0.1:{free_port()}", "pid": 2**22 + 7, "admin_key": "x"})
    )
    assert (await ok(data, "analytics", "count", appid)) == {"count": 0}


@pytest.mark.parametrize(
    ("args", "error", "fragment"),
    [
        (("field", "add", "mp_nope", "price", "--type", "int"), "not_found", "app 'mp_nope'"),
        (("report", "mp_nope", "--event", "x"), "not_found", "app 'mp_nope'"),
        (("event", "save", "mp_nope", "--file", "/nonexistent.json"), "invalid_input",
         "cannot read"),
        (("test", "stop", "mp_nope", "--test", "t_1"), "not_found", "'t_1'"),
    ],
)  # fmt: skip
async def test_errors_exit_1_with_a_clear_message(
    data: Path, args: tuple[str, ...], error: str, fragment: str
) -> None:
    answer = await failed(data, "analytics", *args)
    assert answer["error"] == error and fragment in answer["message"]


async def test_report_errors_from_the_server(data: Path, serve: Any) -> None:
    await serve()
    appid = (await ok(data, "app", "create", "Shop"))["appid"]
    answer = await failed(data, "analytics", "report", appid, "--event", "x", "--metric",
                          "avg:nothing")  # fmt: skip
    assert answer["error"] == "invalid_input" and "nothing" in answer["message"]
    answer = await failed(data, "analytics", "funnel", appid, "--step", "a")
    assert answer["error"] == "invalid_input"
    for option, value, fragment in (
        ("--window", "0m", "too short"),
        ("--window", "-1h", "not a duration"),
        ("--window", "abc", "not a duration"),
        ("--window", "100d", "at most 90d"),
        ("--order", "sideways", "strict or any"),
    ):
        answer = await failed(data, "analytics", "funnel", appid, "--step", "a", "--step", "b",
                              option, value)  # fmt: skip
        assert answer["error"] == "invalid_input" and fragment in answer["message"], answer
    human = await miniport(data, "analytics", "report", appid, "--event", "x", "--tz", "Nowhere")
    assert human.code == 1 and "Nowhere" in human.err and "Traceback" not in human.err
