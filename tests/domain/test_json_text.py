"""The strict JSON reader: orjson where it reads a body to the same value as ``json``, ``json``
(with its own errors and the lone-surrogate refusal) everywhere else. Every body must give the
same value, or be refused, exactly as ``json`` alone would."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miniport.domain import json_text


def reference(body: bytes) -> Any:
    """What ``loads`` did before orjson: ``json``, then the lone-surrogate check."""
    return json_text._stdlib_loads(body)


def same(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down (1 == 1.0 == True is not enough; NaN
    equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def outcome(body: bytes) -> tuple[str, Any]:
    try:
        return "ok", json_text.loads(body)
    except (ValueError, RecursionError) as exc:
        return "error", type(exc)


def expected(body: bytes) -> tuple[str, Any]:
    try:
        return "ok", reference(body)
    except (ValueError, RecursionError) as exc:
        return "error", type(exc)


def check(body: bytes) -> None:
    got, want = outcome(body), expected(body)
    assert got[0] == want[0], (body, got, want)
    assert same(got[1], want[1]), (body, got, want)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(json_values, st.booleans())
def test_any_json_value_reads_as_json_reads_it(value: Any, ascii_only: bool) -> None:
    check(json.dumps(value, ensure_ascii=ascii_only).encode())


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40), st.binary(max_size=8), st.integers(min_value=0, max_value=60))
def test_damaged_bodies_are_refused_or_read_as_json_does(
    noise: bytes, insert: bytes, at: int
) -> None:
    base = b'{"events":[{"id":"a-1","data":{"price":12,"color":"red"},"ts":1.5e12}]}'
    check(base[:at] + insert + base[at:])
    check(noise)


@pytest.mark.parametrize(
    "body",
    [
        b"12345678901234567890123",  # beyond 64 bits: orjson would make it a float
        b"9223372036854775808",
        b"-9223372036854775809",
        b"[1.2345678901234567890123]",
        b"0.1",
        b"-0",
        b"-0.0",
        b"1e308",
        b"1e400",  # json: inf
        b"-1e400",
        b"1e-400",
        b"NaN",
        b"[Infinity, -Infinity]",
        b'\xef\xbb\xbf{"a": 1}',  # a byte-order mark
        '{"a": "é"}'.encode("utf-16"),
        b'{"a": 1, "a": 2}',
        b'"\\ud83d\\ude00"',  # a surrogate pair: one character
        b'"\\ud800"',  # lone: refused
        b'{"\\udfff": 1}',
        b'"\xed\xa0\x80"',  # raw surrogate bytes
        b'"a\x01b"',  # a raw control character
        b'"\\u0000"',
        b" \t\r\n[1] \n",
        b"[1]\x0c",
        b"[" * 5000 + b"]" * 5000,  # deeper than either reader goes
        b"",
        b"\xff",
    ],
)
def test_edge_bodies_read_or_fail_as_json_does(body: bytes) -> None:
    check(body)


def test_a_str_body_reads_as_before() -> None:
    assert json_text.loads('{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    with pytest.raises(json.JSONDecodeError, match="lone UTF-16 surrogate"):
        json_text.loads('"\\ud800"')


def test_a_big_integer_stays_an_integer() -> None:
    value = json_text.loads(b'{"events": [{"data": {"n": 123456789012345678901234567890}}]}')
    assert value["events"][0]["data"]["n"] == 123456789012345678901234567890


def test_ordinary_bodies_take_the_fast_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """The speed is the point: an analytics batch never reaches ``json``."""

    def refuse(body: bytes | str) -> Any:
        raise AssertionError("read by json")

    monkeypatch.setattr(json_text, "_stdlib_loads", refuse)
    body = b'{"sent_at": 1700000000000, "events": [{"id": "1-1", "event": "purchase",'
    body += b' "data": {"price": 12, "color": "red", "f": 1.5}, "ts": 1700000000000}]}'
    assert json_text.loads(body)["events"][0]["data"] == {"price": 12, "color": "red", "f": 1.5}
    with pytest.raises(AssertionError, match="read by json"):
        json_text.loads(b'"\\ud800"')
