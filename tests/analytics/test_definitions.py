"""Rules of analytics field and event definitions (miniport.analytics.definitions)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from miniport.analytics.definitions import (
    ANY_PAGE,
    PAGE_TRIGGERS,
    PAGELESS_TRIGGERS,
    Action,
    AnalyticsConfig,
    DefinitionError,
    DefinitionsInvalid,
    EventDef,
    FieldDef,
    assign_slots,
    config_for_runtime,
    errors_from_validation,
    parse_config,
    parse_event,
    parse_field,
    parse_source,
    slot_column,
    validate_config,
)
from tests.support.analytics_api import GOODS_CLICK

DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics-definitions.md"


def click_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(GOODS_CLICK)
    event.update(overrides)
    return event


def action(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"trigger": "enterPage", "action": "report", "page": "pages/a/a"}
    base.update(fields)
    return {key: value for key, value in base.items() if value is not None}


def configured(*actions: object, fields: list[str] | None = None) -> dict[str, Any]:
    return {
        "name": "ev",
        "display_name": "Ev",
        "mode": "configured",
        "fields": fields if fields is not None else ["price", "color"],
        "actions": list(actions),
    }


def errors_of(obj: object) -> list[DefinitionError]:
    with pytest.raises(DefinitionsInvalid) as caught:
        parse_event(obj)
    return caught.value.errors


def messages_at(obj: object) -> dict[str, str]:
    return {error.path: error.message for error in errors_of(obj)}


# --------------------------------------------------------------------------- public JSON shape


def test_spec_examples_parse() -> None:
    api = parse_event(
        {"name": "purchase", "display_name": "购买", "mode": "api", "fields": ["price", "color"]}
    )
    assert api.mode == "api" and api.actions == [] and api.fields == ["price", "color"]
    event = parse_event(click_event())
    assert event.actions[0].element == ".buy"
    assert event.actions[0].data == {"price": "goods[].price", "color": "$DATASET.color"}
    assert json.loads(event.model_dump_json()) == click_event()


def test_parse_field() -> None:
    assert parse_field({"name": "price", "type": "int"}) == FieldDef(name="price", type="int")
    for kind in ("float", "bool"):
        assert parse_field({"name": "x", "type": kind}).type == kind
    with pytest.raises(DefinitionsInvalid) as caught:
        parse_field({"name": "Price", "type": "double"})
    assert {e.path: e.message for e in caught.value.errors} == {
        "name": "invalid name 'Price': use lowercase letters, digits and _, starting with a "
        "letter, at most 32 characters",
        "type": "invalid type 'double': expected 'int', 'string', 'float' or 'bool'",
    }


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["a", "price", "a_1", "x" * 32, "a" + "0" * 31])
def test_valid_names(name: str) -> None:
    assert parse_field({"name": name, "type": "string"}).name == name


@pytest.mark.parametrize("name", ["", "Price", "1a", "_a", "a-b", "a b", "x" * 33, "é", "a\n"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(DefinitionsInvalid) as caught:
        parse_field({"name": name, "type": "int"})
    [error] = caught.value.errors
    assert error.path == "name"
    assert error.message.startswith(f"invalid name {name!r}")


@given(st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True))
def test_name_rule_accepts_its_language(name: str) -> None:
    assert parse_field({"name": name, "type": "int"}).name == name


@given(st.text(max_size=40))
def test_name_rule_matches_regex(name: str) -> None:
    valid = re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name) is not None
    try:
        parse_field({"name": name, "type": "int"})
    except DefinitionsInvalid:
        assert not valid
    else:
        assert valid


@pytest.mark.parametrize("name", ["$platform", "$launch", "$pageview", "$x"])
def test_dollar_names_are_reserved(name: str) -> None:
    with pytest.raises(DefinitionsInvalid) as caught:
        parse_field({"name": name, "type": "string"})
    [error] = caught.value.errors
    assert "reserved for the built-in events and system properties" in error.message
    assert messages_at(click_event(name=name))["name"].startswith(f"invalid name {name!r}")
    assert "reserved" in messages_at(click_event(name=name))["name"]


def test_event_name_rule() -> None:
    assert messages_at(click_event(name="GoodsClick"))["name"].startswith(
        "invalid name 'GoodsClick'"
    )


# --------------------------------------------------------------------------- display name


def test_display_name_is_stripped_and_bounded() -> None:
    assert parse_event(click_event(display_name="  商品点击  ")).display_name == "商品点击"
    assert parse_event(click_event(display_name="字" * 32)).display_name == "字" * 32
    assert messages_at(click_event(display_name="   "))["display_name"] == "display name is empty"
    assert (
        "too long: 33 characters (at most 32)"
        in messages_at(click_event(display_name="字" * 33))["display_name"]
    )
    assert "control characters" in messages_at(click_event(display_name="a\tb"))["display_name"]


# --------------------------------------------------------------------------- shape errors


def test_shape_errors_have_paths() -> None:
    got = messages_at(
        {"name": "ev", "display_name": 3, "mode": "sometimes", "fields": ["a", 1], "extra": 1}
    )
    assert got == {
        "display_name": "expected a string, got a number",
        "mode": "invalid mode 'sometimes': expected 'api' or 'configured'",
        "fields[1]": "expected a string, got a number",
        "extra": "unknown key 'extra'",
    }


def test_missing_keys() -> None:
    got = messages_at({"fields": []})
    assert got == {
        "name": "name is required",
        "display_name": "display_name is required",
        "mode": "mode is required",
    }
    assert messages_at(configured({"action": "report"}))["actions[0].trigger"] == (
        "trigger is required"
    )


def test_not_an_object() -> None:
    [error] = errors_of([1, 2])
    assert error.path == "" and "expected an object" in error.message
    assert messages_at(configured(action(), 5))["actions[1]"] == "expected an object, got a number"


def test_unknown_trigger_and_action() -> None:
    got = messages_at(configured(action(trigger="tap", action="send")))
    assert got["actions[0].trigger"].startswith("invalid trigger 'tap': expected 'click'")
    assert got["actions[0].action"] == "invalid action 'send': expected 'report' or 'start'"


def test_validation_error_converts_to_same_paths() -> None:
    obj = configured(action(trigger="click", element=None))
    with pytest.raises(ValidationError) as caught:
        EventDef.model_validate(obj)
    assert errors_from_validation(caught.value) == errors_of(obj)
    assert errors_from_validation(caught.value, "events[2]") == [
        DefinitionError("events[2].actions[0].element", "trigger 'click' needs an element selector")
    ]


def test_definitions_invalid_message_lists_errors() -> None:
    with pytest.raises(DefinitionsInvalid) as caught:
        parse_event(click_event(name="Bad", display_name=""))
    text = str(caught.value)
    assert "name: invalid name 'Bad'" in text and "display_name: display name is empty" in text


# --------------------------------------------------------------------------- actions


@pytest.mark.parametrize("trigger", sorted(PAGE_TRIGGERS - {"click"}))
def test_page_triggers_need_a_page(trigger: str) -> None:
    assert parse_event(configured(action(trigger=trigger, page=ANY_PAGE))).actions[0].page == (
        ANY_PAGE
    )
    got = messages_at(configured(action(trigger=trigger, page=None)))
    assert got == {"actions[0].page": f"trigger '{trigger}' needs a page (a page path or ANY_PAGE)"}


@pytest.mark.parametrize("trigger", sorted(PAGELESS_TRIGGERS))
def test_pageless_triggers_have_no_page(trigger: str) -> None:
    assert parse_event(configured(action(trigger=trigger, page=None))).actions[0].page is None
    got = messages_at(configured(action(trigger=trigger, page="pages/a/a")))
    assert got == {"actions[0].page": f"trigger '{trigger}' has no page; remove 'page'"}
    # an explicit null is the same as absent
    assert parse_event(configured({"trigger": trigger, "action": "report", "page": None}))


def test_click_needs_element() -> None:
    got = messages_at(configured(action(trigger="click")))
    assert got == {"actions[0].element": "trigger 'click' needs an element selector"}


@pytest.mark.parametrize("trigger", ["enterPage", "launch"])
def test_element_only_for_click(trigger: str) -> None:
    page = None if trigger == "launch" else "pages/a/a"
    got = messages_at(configured(action(trigger=trigger, page=page, element=".buy")))
    assert got == {
        "actions[0].element": f"only trigger 'click' takes an element; remove it from '{trigger}'"
    }


@pytest.mark.parametrize("element", [".buy", "#buy", ".goods-item", "#_x1", ".a_b-c9"])
def test_valid_elements(element: str) -> None:
    event = parse_event(configured(action(trigger="click", element=element)))
    assert event.actions[0].element == element


@pytest.mark.parametrize(
    "element", ["buy", ".", "#", ".1a", ".-a", ".a .b", ".a.b", "view", ".a>b", " .a", ".é", "#a:b"]
)
def test_invalid_elements(element: str) -> None:
    got = messages_at(configured(action(trigger="click", element=element)))
    assert got["actions[0].element"].startswith(f"invalid element selector {element!r}")


@pytest.mark.parametrize("page", ["pages/list/list", "index", "sub-pkg/pages/a_b/a1", ANY_PAGE])
def test_valid_pages(page: str) -> None:
    assert parse_event(configured(action(page=page))).actions[0].page == page


@pytest.mark.parametrize(
    ("page", "hint"),
    [
        ("/pages/a/a", "without a leading '/'"),
        ("pages/a/a?x=1", "no query string"),
        ("pages//a", "page path like"),
        ("", "page path like"),
        ("pages/a/", "page path like"),
        ("pages/a a", "page path like"),
        ("pages/a.js", "page path like"),
        ("p" * 257, "page path like"),
    ],
)
def test_invalid_pages(page: str, hint: str) -> None:
    message = messages_at(configured(action(page=page)))["actions[0].page"]
    assert message.startswith("invalid page") and hint in message


# --------------------------------------------------------------------------- value sources


VALID_SOURCES = {
    "goods.price": ("path", False),
    "a.b.0.c": ("path", False),
    "price": ("path", False),
    "list[].name": ("list", True),
    "list[][].name": ("list", True),
    "shop.goods[].price": ("list", True),
    "tags[]": ("list", True),
    "list[][]": ("list", True),
    "list[].a.0.b": ("list", True),
    "list[].$INDEX": ("list", True),
    "list[][].$INDEX": ("list", True),
    "$DATASET.color": ("dataset", True),
    "$DATASET.goodsId": ("dataset", True),
    "$APP.version": ("app", False),
    "$PAGE_TIME": ("system", False),
    "$APP_TIME": ("system", False),
    "$CURRENT_PAGE": ("system", False),
    "$LAST_PAGE": ("system", False),
}


@pytest.mark.parametrize(("source", "expected"), VALID_SOURCES.items())
def test_valid_sources(source: str, expected: tuple[str, bool]) -> None:
    parsed = parse_source(source)
    assert (parsed.kind, parsed.reads_element) == expected
    event = parse_event(
        configured(action(trigger="click", element=".x", data={"price": source}), fields=["price"])
    )
    assert event.actions[0].data == {"price": source}


def test_parsed_source_parts() -> None:
    src = parse_source("shop.goods[][].a.b")
    assert (src.base, src.levels, src.rest, src.index) == (("shop", "goods"), 2, ("a", "b"), False)
    src = parse_source("list[].$INDEX")
    assert (src.base, src.levels, src.rest, src.index) == (("list",), 1, (), True)
    assert parse_source("$APP.user").key == "user"


@pytest.mark.parametrize(
    ("source", "hint"),
    [
        ("", "empty value source"),
        ("goods..price", "invalid value source"),
        ("goods.", "invalid value source"),
        (".goods", "invalid value source"),
        ("0.a", "invalid value source"),
        ("a.01", "invalid value source"),
        ("a[0].b", "invalid value source"),
        ("a[][][].b", "invalid value source"),
        ("a[].b[].c", "invalid value source"),
        ("[].a", "invalid value source"),
        ("a[].$INDEX.b", "invalid value source"),
        ("a.$INDEX", "invalid value source"),
        ("a b", "invalid value source"),
        ("$FOO", "unknown system value '$FOO'"),
        ("$page_time", "unknown system value"),
        ("$DATASET", "$DATASET.key or $APP.key"),
        ("$DATASET.", "$DATASET.key or $APP.key"),
        ("$DATASET.a.b", "$DATASET.key or $APP.key"),
        ("$APP.a-b", "$DATASET.key or $APP.key"),
        ("$APP", "$DATASET.key or $APP.key"),
        ("a" * 257, "too long"),
    ],
)
def test_invalid_sources(source: str, hint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(hint)):
        parse_source(source)
    got = messages_at(
        configured(action(trigger="click", element=".x", data={"price": source}), fields=["price"])
    )
    assert hint in got["actions[0].data.price"]


@pytest.mark.parametrize("source", ["goods[].price", "tags[]", "list[].$INDEX", "$DATASET.color"])
@pytest.mark.parametrize("trigger", ["enterPage", "launch", "share"])
def test_element_sources_need_click(source: str, trigger: str) -> None:
    page = "pages/a/a" if trigger in PAGE_TRIGGERS else None
    got = messages_at(
        configured(action(trigger=trigger, page=page, data={"price": source}), fields=["price"])
    )
    assert got == {
        "actions[0].data.price": f"value source '{source}' reads the clicked element: "
        f"it needs trigger 'click', not '{trigger}'"
    }


@pytest.mark.parametrize("source", ["goods.price", "$APP.v", "$PAGE_TIME", "$CURRENT_PAGE"])
def test_page_sources_fine_without_click(source: str) -> None:
    assert parse_event(configured(action(data={"price": source}), fields=["price"]))


def test_data_key_is_a_name() -> None:
    got = messages_at(configured(action(data={"Price": "a.b"}), fields=["price"]))
    assert got["actions[0].data.Price"].startswith("invalid name 'Price'")


def test_data_value_type() -> None:
    got = messages_at(configured(action(data={"price": 3}), fields=["price"]))
    assert got == {"actions[0].data.price": "expected a string, got a number"}


# --------------------------------------------------------------------------- events


def test_api_event_has_no_actions() -> None:
    got = messages_at(
        {"name": "ev", "display_name": "E", "mode": "api", "fields": [], "actions": [action()]}
    )
    assert got == {
        "actions": "an api event has no actions (it is reported from code); remove the actions "
        "or use mode 'configured'"
    }
    assert parse_event({"name": "ev", "display_name": "E", "mode": "api"}).fields == []


def test_configured_event_needs_an_action() -> None:
    assert messages_at(configured()) == {"actions": "a configured event needs at least one action"}
    obj = configured()
    del obj["actions"]
    assert messages_at(obj) == {"actions": "a configured event needs at least one action"}


def test_data_keys_must_be_event_fields() -> None:
    got = messages_at(
        configured(action(), action(data={"price": "a", "size": "b"}), fields=["price"])
    )
    assert got == {
        "actions[1].data.size": "field 'size' is not one of this event's fields (add it to fields)"
    }


def test_event_field_listed_twice() -> None:
    got = messages_at(configured(action(), fields=["price", "color", "price"]))
    assert got == {"fields[2]": "field 'price' is listed twice"}


def test_multi_step_ok() -> None:
    event = parse_event(
        configured(
            action(action="start", data={"price": "goods.price"}),
            action(trigger="leavePage", action="report", data={"color": "$PAGE_TIME"}),
            action(trigger="pageUnload", action="report"),
        )
    )
    assert event.is_multi_step
    assert not parse_event(configured(action())).is_multi_step


def test_report_without_start() -> None:
    got = messages_at(configured(action(), action(action="start"), action()))
    assert got == {"actions[0].action": "report without start (action 0)"}
    got = messages_at(configured(action(), action(), action(action="start"), action()))
    assert got == {
        "actions[0].action": "report without start (action 0)",
        "actions[1].action": "report without start (action 1)",
    }


def test_multi_step_needs_a_report() -> None:
    got = messages_at(configured(action(action="start"), action(action="start")))
    assert got == {"actions": "multi-step event has no report: add a report action after the start"}


def test_models_refuse_invalid_direct_construction() -> None:
    with pytest.raises(ValidationError):
        Action(trigger="click", action="report", page="pages/a/a")
    with pytest.raises(ValidationError):
        EventDef(name="ev", display_name="E", mode="configured", fields=[])
    assert Action(trigger="launch", action="report").page is None


# --------------------------------------------------------------------------- config


def field_defs(*spec: str) -> list[dict[str, str]]:
    return [{"name": s.split(":")[0], "type": s.split(":")[1]} for s in spec]


def config(fields: list[dict[str, str]], events: list[dict[str, Any]]) -> AnalyticsConfig:
    return AnalyticsConfig.model_validate({"fields": fields, "events": events})


def api_event(name: str, display: str, fields: list[str]) -> dict[str, Any]:
    return {"name": name, "display_name": display, "mode": "api", "fields": fields}


def test_valid_config() -> None:
    cfg = config(
        field_defs("price:int", "color:string"), [click_event(), api_event("buy", "B", [])]
    )
    assert validate_config(cfg, None) == []
    assert parse_config(cfg.model_dump()) == cfg


def test_duplicate_names() -> None:
    cfg = config(
        field_defs("price:int", "color:string", "price:string"),
        [
            api_event("a", "A", []),
            api_event("b", "B", []),
            api_event("a", "C", []),
            api_event("d", "B", []),
        ],
    )
    assert {(e.path, e.message) for e in validate_config(cfg, None)} == {
        ("fields[2].name", "duplicate field name 'price' (also fields[0])"),
        ("events[2].name", "duplicate event name 'a' (also events[0])"),
        ("events[3].display_name", "duplicate display name 'B' (also events[1])"),
    }


def test_display_names_compared_after_strip() -> None:
    cfg = config([], [api_event("a", "A", []), api_event("b", " A ", [])])
    assert [e.path for e in validate_config(cfg, None)] == ["events[1].display_name"]


def test_event_fields_must_be_defined() -> None:
    cfg = config(field_defs("price:int"), [api_event("a", "A", ["price", "size"])])
    assert validate_config(cfg, None) == [
        DefinitionError("events[0].fields[1]", "unknown field 'size' (define it first)")
    ]


def test_at_most_32_fields_per_type() -> None:
    ints = [f"i{n}:int" for n in range(32)]
    strings = [f"s{n}:string" for n in range(32)]
    assert validate_config(config(field_defs(*ints, *strings), []), None) == []
    errors = validate_config(config(field_defs(*ints, *strings, "extra:int"), []), None)
    assert errors == [DefinitionError("fields", "too many int fields: 33 (at most 32 per app)")]
    errors = validate_config(config(field_defs(*strings, "more:string"), []), None)
    assert errors == [DefinitionError("fields", "too many string fields: 33 (at most 32 per app)")]


def test_published_field_type_cannot_change() -> None:
    published = config(field_defs("price:int", "color:string"), [])
    current = config(field_defs("color:string", "price:string"), [])
    assert validate_config(current, published) == [
        DefinitionError(
            "fields[1].type", "field 'price' is published as int; its type cannot change"
        )
    ]


def test_published_field_cannot_be_removed_or_renamed() -> None:
    published = config(field_defs("price:int", "color:string"), [])
    renamed = config(field_defs("cost:int", "color:string"), [])
    assert validate_config(renamed, published) == [
        DefinitionError("fields", "field 'price' is published; it cannot be removed or renamed")
    ]
    added = config(field_defs("price:int", "color:string", "size:string"), [])
    assert validate_config(added, published) == []


def test_parse_config_paths() -> None:
    obj = {
        "fields": field_defs("price:int"),
        "events": [api_event("a", "A", []), click_event(actions=[action(trigger="click")])],
    }
    with pytest.raises(DefinitionsInvalid) as caught:
        parse_config(obj)
    assert caught.value.errors == [
        DefinitionError("events[1].actions[0].element", "trigger 'click' needs an element selector")
    ]
    obj["events"] = [api_event("a", "A", ["size"])]
    with pytest.raises(DefinitionsInvalid) as caught:
        parse_config(obj)
    assert caught.value.errors == [
        DefinitionError("events[0].fields[0]", "unknown field 'size' (define it first)")
    ]
    published = config(field_defs("price:int"), [])
    obj = {"fields": field_defs("price:string"), "events": []}
    with pytest.raises(DefinitionsInvalid) as caught:
        parse_config(obj, published)
    assert caught.value.errors[0].path == "fields[0].type"


# --------------------------------------------------------------------------- slots


def fdefs(*spec: str) -> list[FieldDef]:
    return [FieldDef.model_validate(f) for f in field_defs(*spec)]


def test_assign_slots_lowest_free_per_type() -> None:
    fields = fdefs("a:int", "b:string", "c:int", "d:string")
    assert assign_slots(fields, {}) == {"a": 0, "b": 0, "c": 1, "d": 1}


def test_assign_slots_keeps_existing() -> None:
    fields = fdefs("a:int", "new1:int", "b:int", "new2:int", "s:string")
    slots = assign_slots(fields, {"a": 1, "b": 3, "gone": 0})
    assert slots == {"a": 1, "b": 3, "new1": 0, "new2": 2, "s": 0}


def test_assign_slots_full_and_corrupt() -> None:
    ints = fdefs(*[f"i{n}:int" for n in range(32)])
    slots = assign_slots(ints, {})
    assert sorted(slots.values()) == list(range(32))
    with pytest.raises(ValueError, match="no free int slot"):
        assign_slots([*ints, *fdefs("extra:int")], {})
    with pytest.raises(ValueError, match="share i2"):
        assign_slots(fdefs("a:int", "b:int"), {"a": 2, "b": 2})
    assert assign_slots(fdefs("a:int", "b:string"), {"a": 2, "b": 2}) == {"a": 2, "b": 2}
    with pytest.raises(ValueError, match="outside"):
        assign_slots(fdefs("a:int"), {"a": 32})


@given(
    st.lists(
        st.tuples(st.from_regex(r"[a-z]{1,6}", fullmatch=True), st.sampled_from(["int", "string"])),
        max_size=40,
        unique_by=lambda t: t[0],
    ),
    st.data(),
)
def test_assign_slots_properties(spec: list[tuple[str, str]], data: st.DataObject) -> None:
    fields = [FieldDef.model_validate({"name": n, "type": t}) for n, t in spec]
    if max(sum(f.type == t for f in fields) for t in ("int", "string")) > 32:
        return
    first = assign_slots(fields, {})
    # keeping a random subset as existing and re-assigning changes nothing for them
    kept = {n: s for n, s in first.items() if data.draw(st.booleans())}
    again = assign_slots(fields, kept)
    assert all(again[n] == s for n, s in kept.items())
    for t in ("int", "string"):
        used = [again[f.name] for f in fields if f.type == t]
        assert len(used) == len(set(used))
        assert all(0 <= s < 32 for s in used)
    assert assign_slots(fields, again) == again


def test_slot_column() -> None:
    assert slot_column("int", 0) == "i0"
    assert slot_column("string", 31) == "s31"
    with pytest.raises(ValueError):
        slot_column("int", 32)


# --------------------------------------------------------------------------- runtime JSON


def test_config_for_runtime() -> None:
    cfg = config(
        field_defs("price:int", "color:string"),
        [api_event("purchase", "购买", ["price"]), click_event()],
    )
    out = config_for_runtime(cfg, 3, {"purchase": 1, "goods_click": 7})
    assert out == {
        "version": 3,
        "fields": [{"name": "price", "type": "int"}, {"name": "color", "type": "string"}],
        "events": [
            {
                "id": 1,
                "name": "purchase",
                "display_name": "购买",
                "mode": "api",
                "fields": ["price"],
                "actions": [],
            },
            {"id": 7, **GOODS_CLICK},
        ],
    }
    assert json.loads(json.dumps(out)) == out
    with pytest.raises(ValueError, match="'goods_click' has no id"):
        config_for_runtime(cfg, 3, {"purchase": 1})


def test_runtime_actions_carry_null_page_and_element() -> None:
    cfg = config([], [configured(action(trigger="launch", page=None), fields=[])])
    [act] = config_for_runtime(cfg, 1, {"ev": 1})["events"][0]["actions"]
    assert act == {
        "trigger": "launch",
        "action": "report",
        "page": None,
        "element": None,
        "data": {},
    }


# --------------------------------------------------------------------------- the user docs


def doc_json_blocks() -> list[Any]:
    text = DOC.read_text(encoding="utf-8")
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]


def test_doc_examples_are_valid() -> None:
    """Every ```json block of docs/analytics-definitions.md is a valid event (or config)."""
    blocks = doc_json_blocks()
    events = [b for b in blocks if "mode" in b]
    configs = [b for b in blocks if "events" in b and "fields" in b and "sent_at" not in b]
    for block in events:
        parse_event(block)
    for block in configs:
        parse_config(block)
    triggers = {a["trigger"] for e in events for a in e.get("actions", [])}
    assert triggers == PAGE_TRIGGERS | PAGELESS_TRIGGERS
    assert any(a["action"] == "start" for e in events for a in e.get("actions", []))
    assert any(e["mode"] == "api" for e in events)


def test_odd_data_keys_get_unambiguous_paths() -> None:
    got = messages_at(configured(action(data={"a.b": "x", "": "y"}), fields=["price"]))
    assert got['actions[0].data["a.b"]'].startswith("invalid name 'a.b'")
    assert got['actions[0].data[""]'].startswith("invalid name ''")
