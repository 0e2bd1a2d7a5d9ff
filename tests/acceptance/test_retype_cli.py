"""``miniport analytics field retype`` as a user runs it: the real executable against a running
server (through its admin API), and on the data directory alone; reports across the change
in ``--json`` and as text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from miniport.runtime import RuntimeClient
from tests.acceptance.test_analytics_cli import data, failed, miniport, ok, serve, stop, write
from tests.support.analytics_api import PURCHASE

__all__ = ["data", "serve"]  # the fixtures


async def send(url: str, appid: str, token: str, *prices: object) -> None:
    async with RuntimeClient(url, appid, token, builtin_events=False) as device:
        for price in prices:
            device.report_analytics("purchase", {"price": price, "color": "red"})
        sent = await device.flush_analytics()
        assert sent["pending"] == 0


async def test_string_field_becomes_int_across_a_publish(
    data: Path, tmp_path: Path, serve: Any
) -> None:
    server = await serve()
    appid = (await ok(data, "app", "create", "Shop"))["appid"]
    token = (await ok(data, "user", "token", "dev1", "--device", "phone"))["runtime_token"]
    await ok(data, "analytics", "field", "add", appid, "price", "--type", "string")
    await ok(data, "analytics", "field", "add", appid, "color", "--type", "string")
    await ok(
        data, "analytics", "event", "save", appid, "--file", write(tmp_path, "p.json", PURCHASE)
    )
    await ok(data, "analytics", "publish", appid)
    await send(server.url, appid, token, "cheap", "12")

    changed = await ok(data, "analytics", "field", "retype", appid, "price", "--type", "int")
    assert (changed["type"], changed["pending_type"], changed["status"]) == (
        "string", "int", "pending publish",
    )  # fmt: skip
    listed = await miniport(data, "analytics", "field", "list", appid)
    assert "string -> int at publish" in listed.out
    published = await ok(data, "analytics", "publish", appid)
    assert [(r["name"], r["from"], r["to"]) for r in published["retyped"]] == [
        ("price", "string", "int")
    ]
    await send(server.url, appid, token, 30, 12)

    args = ("analytics", "report", appid, "--event", "purchase", "--group-by", "price",
            "--metric", "count", "--metric", "sum:price", "--granularity", "all")  # fmt: skip
    found = await ok(data, *args)
    assert [(r["price"], r["price@type"], r["count"], r["sum:price"]) for r in found["rows"]] == [
        ("12", "string", 1, 0), ("cheap", "string", 1, 0), (12, "int", 1, 12), (30, "int", 1, 30),
    ]  # fmt: skip
    parts = found["field_types"]["price"]["parts"]
    assert [(p["type"], p["read"]) for p in parts] == [("string", "apart"), ("int", "current")]
    text = await miniport(data, *args)
    assert text.code == 0
    assert "price is int now; parts: string (s0" in text.out and ": apart)" in text.out
    assert "sum:price counts only the int values; the string part is left out" in text.out
    history = await ok(data, "analytics", "field", "list", appid)
    assert [h["column"] for h in history["fields"][0]["history"]] == ["s0", "i0"]

    # the bad ones, each with its reason
    same = await failed(data, "analytics", "field", "retype", appid, "price", "--type", "int")
    assert same["errors"] == [{"path": "type", "message": "field 'price' is already int"}]
    unknown = await failed(data, "analytics", "field", "retype", appid, "size", "--type", "int")
    assert unknown["error"] == "not_found" and unknown["message"] == "field 'size' is not defined"
    system = await failed(data, "analytics", "field", "retype", appid, "$platform", "--type", "int")
    assert "system property" in system["message"]
    bad_type = await miniport(
        data, "analytics", "field", "retype", appid, "price", "--type", "date"
    )
    assert bad_type.code == 2 and "'date' is not one of" in bad_type.err

    # without the server the same command runs on the data directory
    await stop(server)
    back = await ok(data, "analytics", "field", "retype", appid, "price", "--type", "string")
    assert (back["slot"], back["reused_slot"]) == (0, True)  # its old string slot
    cancelled = await ok(data, "analytics", "field", "retype", appid, "price", "--type", "int")
    assert cancelled["status"] == "cancelled"
    human = await miniport(data, "analytics", "field", "retype", appid, "price", "--type", "float")
    assert human.code == 0 and "int -> float at the next publish" in human.out
