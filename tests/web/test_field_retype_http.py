"""Changing a published field's type over the real HTTP APIs, on SQLite and on PostgreSQL:
the change waits for the publish, old values stay where they are and readable, new ones arrive
in the new type, reports say which part used which, every refusal is clear, and it is audited.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from miniport.storage.members import MemberStore
from tests.conftest import make_settings, running_server
from tests.support.analytics_api import PURCHASE, Api, OpenApi, now_ms

_ids = itertools.count()


@pytest.fixture
async def api(tmp_path: Path, db: dict[str, Any], open_api: OpenApi) -> AsyncIterator[Api]:
    async with running_server(make_settings(tmp_path, **db)) as server:
        a = await open_api(server, None)
        await a.define(PURCHASE, publish=True)  # price int (i0), color string (s0)
        yield a


async def buy(api: Api, *prices: object, user: str = "u1") -> dict[str, Any]:
    now = now_ms()
    events = [
        {
            "id": f"b{next(_ids)}",
            "event": "purchase",
            "data": {"price": p, "color": "red"},
            "ts": now,
        }
        for p in prices
    ]
    return await api.report(user, {"sent_at": now, "events": events})  # type: ignore[no-any-return]


async def send(api: Api, event: str, name: str, value: object, user: str) -> dict[str, Any]:
    now = now_ms()
    one = {"id": f"s{next(_ids)}", "event": event, "data": {name: value}, "ts": now}
    return await api.report(user, {"sent_at": now, "events": [one]})  # type: ignore[no-any-return]


async def report(api: Api, **body: Any) -> dict[str, Any]:
    return await api.ok("POST", "/report", {"event": "purchase", "granularity": "all", **body})  # type: ignore[no-any-return]


async def retype(api: Api, name: str, to: str) -> dict[str, Any]:
    return await api.ok("POST", f"/fields/{name}/retype", {"type": to})  # type: ignore[no-any-return]


@pytest.fixture
async def ch_api(tmp_path: Path, clickhouse_url: str, open_api: OpenApi) -> AsyncIterator[Api]:
    """The same, with the events in ClickHouse (the 18.16 test server)."""
    async with running_server(make_settings(tmp_path, analytics_url=clickhouse_url)) as server:
        a = await open_api(server, None)
        await a.define(PURCHASE, publish=True)
        yield a


async def test_retype_round_trip_keeps_every_value(api: Api) -> None:
    await round_trip(api)


async def test_retype_round_trip_on_clickhouse(ch_api: Api) -> None:
    await round_trip(ch_api)
    await live_test_of_the_draft(ch_api, "price2")


async def round_trip(api: Api) -> None:
    await buy(api, 5, 7)
    # 1. int -> string: a draft until published; ingest still takes ints meanwhile
    pending = await retype(api, "price", "string")
    assert pending == {"name": "price", "type": "int", "pending_type": "string", "slot": 1,
                       "reused_slot": False, "status": "pending publish"}  # fmt: skip
    price = (await api.ok("GET", "/definitions"))["fields"][0]
    assert (price["type"], price["pending_type"]) == ("int", "string")
    assert (await api.config("u1"))["fields"][0] == {"name": "price", "type": "int"}
    assert (await buy(api, 9))["rejected"] == []
    published = await api.ok("POST", "/publish")
    assert published["version"] == 2
    [change] = published["retyped"]
    assert (change["name"], change["from"], change["to"], change["slot"]) == (
        "price",
        "int",
        "string",
        1,
    )
    assert (await api.config("u1"))["fields"][0] == {"name": "price", "type": "string"}
    assert (await buy(api, "abc", "7", 3))["rejected"] == []  # 3 arrives as "3"

    found = await report(api, group_by=["price"], metrics=["count", "distinct:price"])
    # the int part converts exactly to string: one column of strings
    assert [(r["price"], r["count"]) for r in found["rows"]] == [
        ("3", 1), ("5", 1), ("7", 2), ("9", 1), ("abc", 1),
    ]  # fmt: skip
    assert "price@type" not in found["rows"][0]
    info = found["field_types"]["price"]
    assert info["type"] == "string"
    assert [(p["type"], p["column"], p["read"], p["version"]) for p in info["parts"]] == [
        ("int", "i0", "converted", None),
        ("string", "s1", "current", 2),
    ]
    assert info["parts"][0]["to_ms"] == info["parts"][1]["from_ms"] == change["since_ms"]
    assert "int values read as string" in info["notes"][0]

    # 2. back to int: its old slot i0 again, no new slot spent
    back = await retype(api, "price", "int")
    assert (back["slot"], back["reused_slot"], back["pending_type"]) == (0, True, "int")
    assert len((await api.ok("POST", "/publish"))["retyped"]) == 1
    await buy(api, 100)
    found = await report(api, group_by=["price"], metrics=["count", "sum:price"])
    assert [(r["price"], r["price@type"], r["count"]) for r in found["rows"]] == [
        ("3", "string", 1), ("7", "string", 1), ("abc", "string", 1),  # kept apart
        (5, "int", 1), (7, "int", 1), (9, "int", 1), (100, "int", 1),
    ]  # fmt: skip
    assert sum(r["sum:price"] for r in found["rows"]) == 121  # the strings are not summed
    info = found["field_types"]["price"]
    assert [(p["type"], p["column"], p["read"]) for p in info["parts"]] == [
        ("int", "i0", "current"), ("string", "s1", "apart"), ("int", "i0", "current"),
    ]  # fmt: skip
    assert "sum:price counts only the int values; the string part is left out" in info["notes"]
    filtered = await report(api, filters=["price=7"], metrics=["count"])
    assert filtered["rows"][0]["count"] == 1  # the string "7" is not an int 7
    defs = (await api.ok("GET", "/definitions"))["fields"][0]
    assert [h["column"] for h in defs["history"]] == ["i0", "s1", "i0"]
    cohorts = await api.ok(
        "POST", "/retention", {"start": "purchase", "return": "purchase", "group_by": "price"}
    )
    assert [p["read"] for p in cohorts["field_types"]["price"]["parts"]] == [
        "current", "apart", "current",
    ]  # fmt: skip
    funnel = await api.ok("POST", "/funnel", {"steps": ["purchase:price>=9", "purchase"]})
    assert funnel["rows"][0]["users"] == 1 and "price" in funnel["field_types"]
    csv_text = await api.ok("GET", "/export", event="purchase")
    assert "price@string" in csv_text.splitlines()[0]

    p = api.platform
    asked = await p.db.read(p.registry.list_audit, api.appid, action="analytics.field.retype")
    done = await p.db.read(p.registry.list_audit, api.appid, action="analytics.retype.published")
    assert len(asked) == 2 and len(done) == 2
    assert {r.detail["to_type"] for r in asked} == {"string", "int"}
    assert {(r.detail["from"], r.detail["to"]) for r in done} == {
        ("int", "string"),
        ("string", "int"),
    }


async def test_a_live_test_of_the_draft_writes_the_new_type(api: Api) -> None:
    await live_test_of_the_draft(api, "price")


async def live_test_of_the_draft(api: Api, name: str) -> None:
    """A field ``name`` (int, published) becomes a string under a live test of the draft."""
    if name != "price":
        await api.ok("POST", "/fields", {"name": name, "type": "int"})
        await api.ok("POST", "/events", {**PURCHASE, "name": "order", "display_name": "订单",
                                         "fields": [name]})  # fmt: skip
        await api.ok("POST", "/publish")
    await retype(api, name, "string")
    test_id = (await api.ok("POST", "/tests", {"user_id": "dev1"}))["test_id"]
    event = "purchase" if name == "price" else "order"
    tested = {f["name"]: f["type"] for f in (await api.config("dev1"))["fields"]}
    assert tested[name] == "string"
    assert (await send(api, event, name, "cheap", user="dev1"))["rejected"] == []
    await send(api, event, name, 4, user="u2")  # everyone else: still int
    await api.ok("POST", f"/tests/{test_id}/sync")
    await api.ok("POST", "/publish")
    found = await report(api, event=event, group_by=[name])
    assert [(r[name], r["count"]) for r in found["rows"]] == [("4", 1), ("cheap", 1)]


async def refused(api: Api, name: str, to: object, status: int = 422) -> dict[str, Any]:
    code, answer = await api.call("POST", f"/fields/{name}/retype", {"type": to})
    assert code == status, answer
    return answer  # type: ignore[no-any-return]


async def test_bad_retypes_are_refused_with_a_reason(api: Api) -> None:
    unknown = await refused(api, "size", "int", 404)
    assert unknown["message"] == "field 'size' is not defined"
    same = await refused(api, "price", "int")
    assert same["errors"] == [{"path": "type", "message": "field 'price' is already int"}]
    bad_type = await refused(api, "price", "date")
    assert bad_type["errors"] == [
        {"path": "type", "message": "unknown type 'date': use int, string, float, bool"}
    ]
    system = await refused(api, "$platform", "int")
    assert system["errors"][0]["path"] == "name" and "system property" in system["message"]
    not_text = await refused(api, "price", 3)
    assert not_text["error"] == "invalid_input"

    # twice before publish: the second replaces the first; back to int cancels
    assert (await retype(api, "price", "string"))["pending_type"] == "string"
    again = await refused(api, "price", "string")
    assert "already being changed to string" in again["message"]
    assert (await retype(api, "price", "float"))["pending_type"] == "float"
    assert (await retype(api, "price", "int"))["status"] == "cancelled"
    assert (await api.ok("GET", "/definitions"))["fields"][0]["pending_type"] is None
    assert "retyped" not in await api.ok("POST", "/publish")

    # every bool slot held: one of them by an earlier part of a retyped field
    for i in range(31):
        await api.ok("POST", "/fields", {"name": f"flag{i}", "type": "bool"})
    await api.ok("POST", "/fields", {"name": "last", "type": "bool"})
    await api.ok("POST", "/publish")
    await retype(api, "last", "int")
    await api.ok("POST", "/publish")  # b31 stays last's: its old values are there
    full = await refused(api, "color", "bool")
    assert full["errors"] == [
        {
            "path": "type",
            "message": "no free bool slot for field 'color': all 32 bool slots are held "
            "(by fields, and by the earlier types of retyped fields)",
        }
    ]
    added = await api.call("POST", "/fields", {"name": "more", "type": "bool"})
    assert added[0] == 422 and "no free bool slot" in added[1]["message"]
    assert (await retype(api, "last", "bool"))["slot"] == 31  # its own old slot


async def test_reset_drops_a_pending_change_and_viewers_cannot_retype(api: Api) -> None:
    await retype(api, "color", "int")
    reset = await api.ok("POST", "/reset")
    assert [f["pending_type"] for f in reset["fields"]] == [None, None]
    p = api.platform
    key = (await p.auth.create_key("api", "k-viewer", "viewer"))["key"]
    await p.db.write(MemberStore(p.db).put, api.appid, "key:k-viewer", "viewer", 0.0, "test")
    url = f"{api.url}/admin/v1/apps/{api.appid}/analytics/fields/color/retype"
    async with api.session.post(
        url, json={"type": "int"}, headers={"Authorization": f"Bearer {key}"}
    ) as resp:
        assert resp.status == 403


async def test_a_live_test_goes_on_when_its_pending_retype_is_cancelled(api: Api) -> None:
    """The tester's batches keep being accepted (against the draft as it is now) after the
    pending change the test was started with is cancelled, and the slot given back never
    carries the test's values into the field that gets it next."""
    await cancelled_under_a_live_test(api)


async def test_a_live_test_goes_on_when_its_pending_retype_is_cancelled_on_clickhouse(
    ch_api: Api,
) -> None:
    await cancelled_under_a_live_test(ch_api)


async def cancelled_under_a_live_test(api: Api) -> None:
    assert (await retype(api, "price", "string"))["slot"] == 1  # s1, pending
    test_id = (await api.ok("POST", "/tests", {"user_id": "dev1"}))["test_id"]
    assert (await send(api, "purchase", "price", "cheap", user="dev1"))["rejected"] == []
    assert (await retype(api, "price", "int"))["status"] == "cancelled"  # s1 free again
    # the device still has the string configuration: 12 arrives as "12", which has no slot now
    answer = await send(api, "purchase", "price", 12, user="dev1")
    assert (answer["accepted"], answer["rejected"]) == (1, [])
    tested = await api.config("dev1")
    assert tested["test_id"] == test_id  # the same test, with the draft as it is now
    assert {f["name"]: f["type"] for f in tested["fields"]}["price"] == "int"
    assert (await send(api, "purchase", "price", 13, user="dev1"))["rejected"] == []

    # the slot given back goes to a new string field: the test's "cheap" is not its value
    assert (await api.ok("POST", "/fields", {"name": "size", "type": "string"}))["slot"] == 1
    await api.ok("POST", "/events", {**PURCHASE, "fields": ["price", "color", "size"]})
    await api.ok("POST", f"/tests/{test_id}/sync")
    await api.ok("POST", "/publish")
    await buy(api, 1)
    found = await report(api, group_by=["size"])
    assert [(r["size"], r["count"]) for r in found["rows"]] == [(None, 4)]
    prices = await report(api, group_by=["price"])
    # "cheap" was a value of the change that never came: stored, read by no field
    assert [(r["price"], r["count"]) for r in prices["rows"]] == [
        (None, 1), (1, 1), (12, 1), (13, 1),
    ]  # fmt: skip


async def test_a_live_test_goes_on_when_its_pending_retype_is_replaced(api: Api) -> None:
    await retype(api, "price", "string")
    test_id = (await api.ok("POST", "/tests", {"user_id": "dev1"}))["test_id"]
    assert (await retype(api, "price", "float"))["pending_type"] == "float"  # replaces it
    answer = await send(api, "purchase", "price", 2, user="dev1")  # "2" under the old draft
    assert (answer["accepted"], answer["rejected"]) == (1, [])
    tested = await api.config("dev1")
    assert (tested["test_id"], tested["fields"][0]) == (test_id, {"name": "price", "type": "float"})
    await api.ok("POST", f"/tests/{test_id}/sync")
    await api.ok("POST", "/publish")
    found = await report(api, group_by=["price"])
    assert [(r["price"], r["count"]) for r in found["rows"]] == [(2.0, 1)]
