"""Definition rules through the admin HTTP API: each refusal names the part at fault (a path
relative to the object sent) and says what is wrong."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.analytics_api import GOODS_CLICK, PURCHASE, Api


async def refused(api: Api, path: str, body: Any) -> list[dict[str, str]]:
    status, answer = await api.call("POST", path, body)
    assert status == 422, answer
    assert answer["error"] == "invalid_definition"
    assert answer["message"] == "; ".join(f"{e['path']}: {e['message']}" for e in answer["errors"])
    return answer["errors"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "name",
    ["Price", "1price", "_price", "price-1", "prìce", "p" * 33, ""],
)
async def test_field_names_follow_the_rule(api: Api, name: str) -> None:
    errors = await refused(api, "/fields", {"name": name, "type": "int"})
    assert [e["path"] for e in errors] == ["name"]


async def test_good_names_and_32_characters(api: Api) -> None:
    for name in ("p", "price_2", "a" * 32):
        answer = await api.ok("POST", "/fields", {"name": name, "type": "string"})
        assert answer["name"] == name


async def test_field_names_are_unique(api: Api) -> None:
    await api.ok("POST", "/fields", {"name": "price", "type": "int"})
    errors = await refused(api, "/fields", {"name": "price", "type": "int"})
    assert errors == [{"path": "name", "message": "field 'price' already exists"}]


async def test_event_names_and_display_names(api: Api) -> None:
    await api.define(PURCHASE)
    errors = await refused(api, "/events", {**PURCHASE, "name": "Buy-It"})
    assert [e["path"] for e in errors] == ["name"]
    assert "lowercase letters, digits and _" in errors[0]["message"]

    long_display = "购" * 33
    errors = await refused(
        api, "/events", {**PURCHASE, "name": "buy", "display_name": long_display}
    )
    assert errors[0]["path"] == "display_name"
    assert "too long: 33 characters (at most 32)" in errors[0]["message"]
    await api.ok("POST", "/events", {**PURCHASE, "name": "buy32", "display_name": "购" * 32})

    # display names are unique: the message names the event that has it
    errors = await refused(api, "/events", {**PURCHASE, "name": "buy_again"})
    assert errors == [
        {"path": "display_name", "message": "duplicate display name '购买' (also event 'purchase')"}
    ]
    # saving an event under its own name again is an update, not a duplicate
    saved = await api.ok("POST", "/events", {**PURCHASE, "fields": ["price"]})
    assert saved["name"] == "purchase"
    names = [e["name"] for e in (await api.ok("GET", "/definitions"))["events"]]
    assert names == ["purchase", "buy32"]


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        (
            {"fields": ["price", "color", "size"]},
            "fields[2]",
            "unknown field 'size' (define it first)",
        ),
        (
            {"actions": [{**GOODS_CLICK["actions"][0], "element": None}]},
            "actions[0].element",
            "trigger 'click' needs an element selector",
        ),
        (
            {"actions": [{**GOODS_CLICK["actions"][0], "element": "ul .buy"}]},
            "actions[0].element",
            "invalid element selector",
        ),
        (
            {"actions": [{**GOODS_CLICK["actions"][0], "page": "/pages/list/list"}]},
            "actions[0].page",
            "without a leading '/'",
        ),
        (
            {"actions": [{**GOODS_CLICK["actions"][0], "data": {"price": "$FOO"}}]},
            "actions[0].data.price",
            "unknown system value '$FOO'",
        ),
        (
            {"actions": [{**GOODS_CLICK["actions"][0], "data": {"size": "goods[].size"}}]},
            "actions[0].data",
            "size",
        ),
        (
            {
                "actions": [
                    {"trigger": "launch", "action": "report", "data": {}},
                    {"trigger": "background", "action": "start", "data": {}},
                ]
            },
            "actions[0].action",
            "report without start",
        ),
        ({"mode": "api"}, "actions", ""),
        ({"colour": 1}, "colour", "unknown key 'colour'"),
    ],
)
async def test_event_errors_name_the_part(
    api: Api, change: dict[str, Any], path: str, fragment: str
) -> None:
    await api.define()
    errors = await refused(api, "/events", {**GOODS_CLICK, **change})
    assert any(e["path"].startswith(path) and fragment in e["message"] for e in errors), errors


async def test_re_adding_changes_a_type_until_published_then_retype_does(api: Api) -> None:
    await api.ok("POST", "/fields", {"name": "size", "type": "int"})
    changed = await api.ok("POST", "/fields", {"name": "size", "type": "string"})
    assert changed["type"] == "string"
    fields = (await api.ok("GET", "/definitions"))["fields"]
    assert fields == [
        {
            "name": "size",
            "type": "string",
            "published": False,
            "pending_type": None,
            "history": [{"type": "string", "column": "s0", "since_ms": None, "version": None}],
        }
    ]

    await api.ok("POST", "/publish")
    errors = await refused(api, "/fields", {"name": "size", "type": "int"})
    assert errors == [
        {
            "path": "type",
            "message": "field 'size' is published as string; "
            "change its type with a retype (the old values stay readable)",
        }
    ]
    fields = (await api.ok("GET", "/definitions"))["fields"]
    assert [(f["type"], f["published"], f["pending_type"]) for f in fields] == [
        ("string", True, None)
    ]


async def test_bad_json_shapes_are_refused_too(api: Api) -> None:
    status, answer = await api.call("POST", "/fields", {"name": "x", "type": "double"})
    assert status == 422 and "type" in answer["message"]
    status, answer = await api.call("POST", "/events", ["not", "an", "object"])
    assert status == 422
    status, answer = await api.call("DELETE", "/events/nope")
    assert status == 404 and answer["message"] == "event 'nope' not found"


async def test_a_save_on_a_draft_changed_since_it_was_opened_is_refused(api: Api) -> None:
    await api.define(PURCHASE)
    shown = await api.ok("GET", "/definitions")
    opened = next(e["revision"] for e in shown["events"] if e["name"] == "purchase")
    saved = await api.ok("POST", "/events", {**PURCHASE, "fields": ["price"]}, base=opened)
    status, answer = await api.call("POST", "/events", {**PURCHASE, "fields": []}, base=opened)
    assert status == 409 and "changed since you opened it" in answer["message"]
    status, _ = await api.call("DELETE", "/events/purchase", base=opened)
    assert status == 409
    await api.ok("DELETE", "/events/purchase", base=saved["revision"])
