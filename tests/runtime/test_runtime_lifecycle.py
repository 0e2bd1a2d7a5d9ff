"""Sessions and built-in events of the Python runtime (pure): the vectors shared with the
JavaScript runtime, the query encoding they share, and the host's system properties."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from miniport import __version__
from miniport.runtime.analytics import system_properties
from miniport.runtime.lifecycle import BuiltinEvent, Lifecycle, query_string

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "src/miniport/runtime/vectors/lifecycle.json").read_text(
        encoding="utf-8"
    )
)


def _run(steps: list[dict[str, Any]], timeout_ms: int) -> list[dict[str, Any]]:
    ids = iter(f"s{n}" for n in range(1, 100))
    lc = Lifecycle(lambda: next(ids), timeout_ms)
    out: list[dict[str, Any]] = []

    def record(events: list[BuiltinEvent]) -> None:
        for ev in events:
            ctx = lc.context(ev.t)
            out.append(
                {
                    "event": ev.event,
                    "t": ev.t,
                    "data": ev.data,
                    "page": ev.page,
                    "session": ctx["$session"],
                    "scene": ctx.get("$scene"),
                }
            )

    for step in steps:
        call, t = step["call"], step.get("t", 0)
        if call == "launch":
            record(lc.launch(t, step["path"], step["query"], step["scene"]))
        elif call == "show":
            record(lc.show(t))
        elif call == "hide":
            record(lc.hide(t))
        elif call == "pageLoad":
            lc.page_load(step["path"], step["query"])
        elif call == "pageShow":
            record(lc.page_show(t, step["path"], step.get("query")))
        elif call == "pageLeave":
            record(lc.page_leave(t, step["path"]))
        elif call == "context":
            ctx = lc.context(t)
            out.append(
                {
                    "event": "(context)",
                    "t": t,
                    "data": {},
                    "page": None,
                    "session": ctx["$session"],
                    "scene": ctx.get("$scene"),
                }
            )
        else:
            raise AssertionError(f"unknown step {call}")
    return out


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[c["name"] for c in VECTORS["cases"]])
def test_lifecycle_vectors(case: dict[str, Any]) -> None:
    assert _run(case["steps"], VECTORS["timeout_ms"]) == case["expect"]


def test_query_strings_are_encoded_like_encode_uri_component() -> None:
    assert query_string({"q": "a b/c?", "n": 1, "ok": True, "x": 2.0}) == (
        "q=a%20b%2Fc%3F&n=1&ok=true&x=2"
    )
    assert query_string({"名": "值", "mark": "-_.!~*'()"}) == "%E5%90%8D=%E5%80%BC&mark=-_.!~*'()"
    assert query_string("?a=1") == "a=1"
    assert query_string(None) == ""


@pytest.mark.parametrize("case", VECTORS["query_strings"], ids=lambda c: c["string"][:40])
def test_query_objects_are_written_as_javascript_writes_them(case: dict[str, Any]) -> None:
    """The vectors the JavaScript runtime runs too: Python wrote None, [1, 2] and 1e-07."""
    assert query_string(case["query"]) == case["string"]


def test_system_properties_keep_dollar_keys_with_plain_values() -> None:
    assert system_properties(
        {
            "$platform": "ios",
            "$scene": 1001,
            "$x": 1.5,
            "$bad_float": math.nan,
            "$inf": math.inf,
            "$obj": {"a": 1},
            "$list": [1],
            "platform": "not named with $",
            "$flag": True,
        }
    ) == {"$sdk_version": __version__, "$platform": "ios", "$scene": 1001, "$x": 1.5, "$flag": True}
    assert system_properties({"$sdk_version": "9.9.9"}) == {"$sdk_version": "9.9.9"}
    assert system_properties(None) == {"$sdk_version": __version__}
