"""Unit tests for the evaluator's selector, source and page parsing."""

from __future__ import annotations

from typing import Any

import pytest

from miniport.analytics.evaluator import (
    Evaluator,
    Selector,
    Source,
    normalize_page,
    parse_selector,
    parse_source,
)


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("pages/a/a", "pages/a/a"),
        ("/pages/a/a", "pages/a/a"),
        ("//pages/a/a", "/pages/a/a"),
        ("/pages/a/a?x=1&y=/z", "pages/a/a"),
        ("?x=1", ""),
    ],
)
def test_normalize_page(page: str, expected: str) -> None:
    assert normalize_page(page) == expected


def test_parse_selector_valid() -> None:
    assert parse_selector(".buy") == Selector("class", "buy")
    assert parse_selector("#buy-1_x") == Selector("id", "buy-1_x")


@pytest.mark.parametrize(
    "text", ["", ".", "#", "buy", ".a.b", ".a .b", ".a>.b", " .a", ".a\n", "view.a", "#a,#b", "*"]
)
def test_parse_selector_invalid(text: str) -> None:
    assert parse_selector(text) is None


@pytest.mark.parametrize("text", [None, 3, [".a"]])
def test_parse_selector_non_string(text: Any) -> None:
    assert parse_selector(text) is None


def test_selector_matches() -> None:
    element = {"id": "b1", "classes": ["buy", "btn"]}
    assert Selector("class", "btn").matches(element)
    assert Selector("id", "b1").matches(element)
    assert not Selector("id", "buy").matches(element)
    assert not Selector("class", "b1").matches(element)
    assert not Selector("class", "buy").matches({"id": None})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a", Source("path", steps=("a",))),
        ("a.b.0", Source("path", steps=("a", "b", "0"))),
        ("list[].name", Source("path", steps=("list", 0, "name"))),
        ("list[][].name", Source("path", steps=("list", 0, 1, "name"))),
        ("shop.goods[].spec.color", Source("path", steps=("shop", "goods", 0, "spec", "color"))),
        ("a[].b[].c", Source("path", steps=("a", 0, "b", 1, "c"))),
        ("tags[]", Source("path", steps=("tags", 0))),
        ("list[].$INDEX", Source("index", level=0)),
        ("list[][].$INDEX", Source("index", level=1)),
        ("$DATASET.goodsId", Source("dataset", key="goodsId")),
        ("$APP.a.b", Source("app", key="a.b")),
        ("$PAGE_TIME", Source("page_time")),
        ("$APP_TIME", Source("app_time")),
        ("$CURRENT_PAGE", Source("current_page")),
        ("$LAST_PAGE", Source("last_page")),
    ],
)
def test_parse_source_valid(text: str, expected: Source) -> None:
    assert parse_source(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "", "a..b", ".a", "a.", "$X", "$DATASET", "$DATASET.", "$APP.", "$page_time",
        "$INDEX", "a.$INDEX", "a[].$INDEX.b", "a.$b", "a[0]", "a[]b", "a.[]", "[].a", "a[ ]",
    ],
)  # fmt: skip
def test_parse_source_invalid(text: str) -> None:
    assert parse_source(text) is None


@pytest.mark.parametrize("text", [None, 5, ["a"], {"a": 1}])
def test_parse_source_non_string(text: Any) -> None:
    assert parse_source(text) is None


def test_huge_numeric_segment_gives_nothing() -> None:
    config = {
        "events": [
            {
                "id": 1,
                "name": "e",
                "mode": "configured",
                "actions": [
                    {
                        "trigger": "pageLoad",
                        "action": "report",
                        "page": "p",
                        "data": {"x": "a." + "9" * 5000},
                    }
                ],
            }
        ]
    }
    (event,) = Evaluator(config).page_load(0, "p", {"a": [1]})
    assert event["data"] == {}


def test_malformed_config_is_tolerated() -> None:
    config: dict[str, Any] = {
        "events": [
            "not an event",
            {"id": 1, "name": "e", "mode": "configured", "actions": "nope"},
            {"id": 2, "name": "f", "mode": "configured", "actions": [3, {"data": []}]},
        ]
    }
    evaluator = Evaluator(config)
    assert evaluator.launch(0) == []
    assert Evaluator({}).launch(0) == []


def test_page_data_is_copied_and_set_data_merges() -> None:
    action = {"trigger": "pullDownRefresh", "action": "report", "page": "p"}
    action["data"] = {"x": "a", "y": "b"}
    config = {"events": [{"id": 1, "name": "e", "mode": "configured", "actions": [action]}]}
    data = {"a": 1, "b": 1}
    evaluator = Evaluator(config)
    evaluator.page_load(0, "p", data)
    data["a"] = 2  # the evaluator keeps its own copy of the top level
    evaluator.set_data(1, "/p?q=1", {"b": 3})
    assert evaluator.pull_down_refresh(2, "p")[0]["data"] == {"x": 1, "y": 3}
    assert data == {"a": 2, "b": 1}
