"""Runs every shared JSON vector through the Python evaluator.

The same vectors run through ``src/miniport/web/sdk/evaluator.js`` (``cd js && node --test test/``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from miniport.analytics import evaluator as evaluator_module
from miniport.analytics.evaluator import Evaluator

VECTORS_DIR = Path(evaluator_module.__file__).parent / "vectors"

CALLS: dict[str, Callable[[Evaluator, dict[str, Any]], Any]] = {
    "launch": lambda e, c: e.launch(c["t"]),
    "background": lambda e, c: e.background(c["t"]),
    "foreground": lambda e, c: e.foreground(c["t"]),
    "share": lambda e, c: e.share(c["t"], c.get("page")),
    "page_load": lambda e, c: e.page_load(c["t"], c["page"], c.get("data")),
    "page_show": lambda e, c: e.page_show(c["t"], c["page"]),
    "page_hide": lambda e, c: e.page_hide(c["t"], c["page"]),
    "page_unload": lambda e, c: e.page_unload(c["t"], c["page"]),
    "set_data": lambda e, c: e.set_data(c["t"], c["page"], c["data"]),
    "set_app_data": lambda e, c: e.set_app_data(c["t"], c["data"]),
    "click": lambda e, c: e.click(c["t"], c["page"], c.get("element")),
    "switch_tab": lambda e, c: e.switch_tab(c["t"], c["page"]),
    "pull_down_refresh": lambda e, c: e.pull_down_refresh(c["t"], c["page"]),
    "set_config": lambda e, c: e.set_config(c["config"]),
}


def load_vectors() -> list[tuple[str, dict[str, Any]]]:
    vectors: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(VECTORS_DIR.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        vectors.extend((path.name, vector) for vector in data["vectors"])
    return vectors


VECTORS = load_vectors()


def run(vector: dict[str, Any]) -> list[dict[str, Any]]:
    evaluator = Evaluator(vector["config"], vector.get("app_data"))
    emitted: list[dict[str, Any]] = []
    for call in vector["calls"]:
        emitted.extend(CALLS[call["call"]](evaluator, call) or [])
    return emitted


@pytest.mark.parametrize("vector", [v for _, v in VECTORS], ids=[v["name"] for _, v in VECTORS])
def test_vector(vector: dict[str, Any]) -> None:
    assert run(vector) == vector["expected"]


def test_vectors_are_well_formed() -> None:
    names = [vector["name"] for _, vector in VECTORS]
    assert len(names) == len(set(names)), "vector names must be unique"
    assert len(names) >= 40
    for filename, vector in VECTORS:
        assert set(vector) <= {"name", "description", "config", "app_data", "calls", "expected"}, (
            filename,
            vector["name"],
        )
        assert vector["description"], vector["name"]
        for call in vector["calls"]:
            assert call["call"] in CALLS, (vector["name"], call)


def test_every_trigger_and_call_is_covered() -> None:
    triggers = {e["trigger"] for _, v in VECTORS for e in v["expected"]}
    assert triggers >= {
        "click", "enterPage", "leavePage", "pageLoad", "pageUnload", "switchTab",
        "pullDownRefresh", "launch", "background", "foreground", "share",
    }  # fmt: skip
    calls = {c["call"] for _, v in VECTORS for c in v["calls"]}
    assert calls == set(CALLS)
