"""Coercion of reported values by field type (miniport.analytics.coercion)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miniport.analytics.coercion import (
    INT_MAX,
    INT_MIN,
    MAX_STRING_LENGTH,
    NOTE_CODES,
    Coerced,
    coerce,
)

with_surrogates = st.lists(st.sampled_from(["a", "\ud800", "\udfff", "字", "😀"])).map("".join)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text() | with_surrogates
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


# --------------------------------------------------------------------------- int


@pytest.mark.parametrize("value", [0, 1, -1, 12, INT_MIN, INT_MAX])
def test_int_in_range_unchanged(value: int) -> None:
    assert coerce(value, "int") == Coerced(value, None)


@pytest.mark.parametrize(("value", "expected"), [(12.0, 12), (-0.0, 0), (2.0**31 - 1, INT_MAX)])
def test_integral_float_is_not_a_coercion(value: float, expected: int) -> None:
    result = coerce(value, "int")
    assert result == Coerced(expected, None) and type(result.value) is int


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12.7, 12),
        (-12.7, -12),
        (0.5, 0),
        (-0.5, 0),
        (2147483647.9, INT_MAX),
        (-2147483648.9, INT_MIN),
    ],
)
def test_float_truncates_toward_zero(value: float, expected: int) -> None:
    result = coerce(value, "int")
    assert result.value == expected and result.code == "truncated"
    assert result.note == f"truncated: {value!r} -> {expected}"


def test_bool_to_int() -> None:
    assert coerce(True, "int") == Coerced(1, "bool_to_int: true -> 1")
    assert coerce(False, "int") == Coerced(0, "bool_to_int: false -> 0")


@pytest.mark.parametrize(
    ("value", "expected", "code"),
    [
        ("12", 12, "from_string"),
        ("-12", -12, "from_string"),
        ("+7", 7, "from_string"),
        (" 12\n", 12, "from_string"),
        ("12.", 12, "from_string"),
        ("12.000", 12, "from_string"),
        ("1e3", 1000, "from_string"),
        ("12.7", 12, "truncated"),
        ("-12.7", -12, "truncated"),
        (".5", 0, "truncated"),
        ("1e-999999", 0, "truncated"),
        # exponents past the decimal module's: they raised InvalidOperation, a 500 for the
        # whole batch
        ("1e-1000000000000000000", 0, "truncated"),
        ("-0.0e1000000000000000000", 0, "from_string"),
        ("2147483647.99", INT_MAX, "truncated"),
        ("-2147483648", INT_MIN, "from_string"),
    ],
)
def test_numeric_string(value: str, expected: int, code: str) -> None:
    result = coerce(value, "int")
    assert (result.value, result.code) == (expected, code)
    assert json.dumps(value, ensure_ascii=False) in (result.note or "")


def test_exponents_longer_than_int_reads_are_read_by_their_sign() -> None:
    """int() refuses a text of more than 4,300 digits: such an exponent was a ValueError, a
    500 for the whole batch."""
    assert coerce("1e" + "9" * 4400, "int").code == "out_of_range"
    low = coerce("-1.5e-" + "9" * 5000, "int")
    assert (low.value, low.code) == (0, "truncated")


@pytest.mark.parametrize(
    "value",
    ["abc", "", " ", "0x10", "1_000", "Infinity", "NaN", "1e", "--1", "1.2.3", "١٢", "12abc"],
)
def test_non_numeric_string_is_zero(value: str) -> None:
    result = coerce(value, "int")
    assert result.value == 0 and result.code == "not_a_number"


@pytest.mark.parametrize("value", [None, [], [1], {}, {"a": 1}, float("nan"), object()])
def test_non_number_is_zero(value: object) -> None:
    result = coerce(value, "int")
    assert result.value == 0 and result.code == "not_a_number"
    assert result.note is not None and result.note.endswith("is not a number -> 0")


@pytest.mark.parametrize(
    "value",
    [
        INT_MAX + 1,
        INT_MIN - 1,
        10**30,
        2.0**31,
        -(2.0**31) - 1,
        1e300,
        math.inf,
        -math.inf,
        "2147483648",
        "1e10",
        "-1e99999999999",
        "1e1000000000000000000",
        "-2.5E+99999999999999999999999",
    ],
)
def test_out_of_range_is_dropped(value: object) -> None:
    result = coerce(value, "int")
    assert result.value is None and result.code == "out_of_range"
    assert result.note is not None and "value dropped" in result.note


def test_notes_quote_long_values_briefly() -> None:
    result = coerce("x" * 1000, "int")
    assert result.note is not None and len(result.note) < 100


# --------------------------------------------------------------------------- string


@pytest.mark.parametrize("value", ["", "abc", "商品", "x" * MAX_STRING_LENGTH, "😀" * 10])
def test_string_unchanged(value: str) -> None:
    assert coerce(value, "string") == Coerced(value, None)


def test_long_string_truncated() -> None:
    result = coerce("字" * 300, "string")
    assert result == Coerced("字" * 255, "truncated: 300 characters cut to 255")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12, "12"),
        (-3, "-3"),
        (12.5, "12.5"),
        (12.0, "12"),
        (1e300, "1e+300"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (True, "true"),
        (False, "false"),
    ],
)
def test_scalars_to_json_text(value: object, expected: str) -> None:
    result = coerce(value, "string")
    assert result.value == expected and result.code == "to_string"


def test_null_string_is_left_out() -> None:
    assert coerce(None, "string") == Coerced(None, "null: null -> field left out")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([1, "a"], '[1,"a"]'),
        ({"a": [True, None]}, '{"a":[true,null]}'),
        ({"k": "商"}, '{"k":"商"}'),
    ],
)
def test_containers_to_json_text(value: object, expected: str) -> None:
    result = coerce(value, "string")
    assert result.value == expected and result.code == "to_string"


def test_long_container_truncated() -> None:
    result = coerce(list(range(200)), "string")
    assert isinstance(result.value, str) and len(result.value) == 255
    assert result.code == "truncated" and result.note is not None and "JSON text" in result.note


def test_lone_surrogates_replaced() -> None:
    result = coerce("a\ud800b", "string")
    assert result.value == "a\ufffdb" and result.code == "invalid_text"


def test_unknown_type() -> None:
    with pytest.raises(ValueError, match="unknown field type"):
        coerce(1, "double")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- properties


@given(json_values | st.decimals(allow_nan=False).map(str) | st.integers().map(str))
def test_int_results_always_in_range(value: Any) -> None:
    result = coerce(value, "int")
    if result.value is None:
        assert result.code == "out_of_range"
    else:
        assert type(result.value) is int and INT_MIN <= result.value <= INT_MAX
    assert result.code is None or result.code in NOTE_CODES


@given(json_values)
def test_string_results_always_valid(value: Any) -> None:
    result = coerce(value, "string")
    if result.value is None:
        assert value is None and result.code == "null"
    else:
        assert isinstance(result.value, str) and len(result.value) <= MAX_STRING_LENGTH
        result.value.encode("utf-8")  # storable
    assert result.code is None or result.code in NOTE_CODES


@given(st.integers(min_value=INT_MIN, max_value=INT_MAX))
def test_int_idempotent_on_valid(value: int) -> None:
    assert coerce(value, "int") == Coerced(value, None)


@given(st.text(max_size=MAX_STRING_LENGTH))
def test_string_idempotent_on_valid(value: str) -> None:
    assert coerce(value, "string") == Coerced(value, None)


@given(json_values, st.sampled_from(["int", "string"]))
def test_coercion_is_idempotent(value: Any, field_type: Any) -> None:
    first = coerce(value, field_type)
    if first.value is not None:
        assert coerce(first.value, field_type) == Coerced(first.value, None)


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-(2.0**31), max_value=2.0**31))
def test_float_truncation_matches_math_trunc(value: float) -> None:
    result = coerce(value, "int")
    if INT_MIN <= math.trunc(value) <= INT_MAX:
        assert result.value == math.trunc(value)
        assert (result.note is None) == value.is_integer()
    else:
        assert result.value is None


# --------------------------------------------------------------------------- float and bool


@pytest.mark.parametrize(
    ("value", "stored", "code"),
    [
        (19.99, 19.99, None),
        (12, 12.0, None),
        (-0.5, -0.5, None),
        (True, 1.0, "bool_to_int"),
        ("12.5", 12.5, "from_string"),
        (" 1e3 ", 1000.0, "from_string"),
        ("cheap", 0.0, "not_a_number"),
        (None, 0.0, "not_a_number"),
        ([1.5], 0.0, "not_a_number"),
        (math.nan, None, "out_of_range"),
        (math.inf, None, "out_of_range"),
        (10**400, None, "out_of_range"),
        ("1e999", None, "out_of_range"),
    ],
)
def test_float_coercion(value: object, stored: float | None, code: str | None) -> None:
    got = coerce(value, "float")
    assert got.value == stored and type(got.value) is type(stored)
    assert got.code == code


@pytest.mark.parametrize(
    ("value", "stored", "code"),
    [
        (True, True, None),
        (False, False, None),
        (1, True, "to_bool"),
        (0.0, False, "to_bool"),
        ("TRUE", True, "to_bool"),
        (" 0 ", False, "to_bool"),
        (2, None, "not_a_bool"),
        ("yes", None, "not_a_bool"),
        ({}, None, "not_a_bool"),
        (None, None, "null"),
    ],
)
def test_bool_coercion(value: object, stored: bool | None, code: str | None) -> None:
    got = coerce(value, "bool")
    assert got.value is stored
    assert got.code == code


@given(json_values)
def test_float_and_bool_always_give_their_type_or_nothing(value: Any) -> None:
    as_float = coerce(value, "float")
    assert as_float.value is None or (
        type(as_float.value) is float and math.isfinite(as_float.value)
    )
    as_bool = coerce(value, "bool")
    assert as_bool.value is None or type(as_bool.value) is bool
    for got in (as_float, as_bool):
        assert got.code is None or got.code in NOTE_CODES


def test_sums_of_prices_are_exact_to_the_cent() -> None:
    """What the float type promises (docs): a double sum of 2-decimal prices rounds back to
    the exact cent total (here 100,000 prices up to a million)."""
    prices = [((i * 7919) % 100_000_000) / 100 for i in range(100_000)]
    cents = sum((i * 7919) % 100_000_000 for i in range(100_000))
    total = 0.0
    for price in prices:
        total += coerce(price, "float").value  # type: ignore[operator]
    assert round(total * 100) == cents
