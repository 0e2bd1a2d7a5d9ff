"""Retype rules (pure): a field's history, the slot a change takes, the conversion rule and
what a report says about it. Literal datetimes, no store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from miniport.analytics.field_history import (
    EXACT_CONVERSIONS,
    FIELD_TYPES,
    FieldHistory,
    FieldPart,
    RetypeError,
    converts,
    describe,
    plan_retype,
    publish_part,
    read_columns,
    reading,
    taken_slots,
    value_type,
)


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


NOV_3 = ms(2026, 11, 3, 9, 30)
NOV_10 = ms(2026, 11, 10, 18, 0)


def price_history() -> FieldHistory:
    """price: string (s0) until Nov 3 09:30, int (i4) from then (version 2)."""
    return FieldHistory("price", (FieldPart("string", 0), FieldPart("int", 4, NOV_3, 2)))


def test_ranges_cover_time_without_gaps() -> None:
    h = FieldHistory(
        "code",
        (FieldPart("int", 1), FieldPart("string", 3, NOV_3, 2), FieldPart("int", 1, NOV_10, 5)),
    )
    assert [(p.column, a, b) for p, a, b in h.ranges()] == [
        ("i1", None, NOV_3),
        ("s3", NOV_3, NOV_10),
        ("i1", NOV_10, None),
    ]
    assert h.current == FieldPart("int", 1, NOV_10, 5)
    assert h.slot_of("string") == 3 and h.slot_of("bool") is None


def test_history_rejects_inconsistent_parts() -> None:
    with pytest.raises(ValueError, match="no part"):
        FieldHistory("x", ())
    with pytest.raises(ValueError, match="increasing since_ms"):
        FieldHistory(
            "x", (FieldPart("int", 0), FieldPart("string", 0, NOV_10), FieldPart("bool", 0, NOV_3))
        )
    with pytest.raises(ValueError, match="increasing since_ms"):
        FieldHistory("x", (FieldPart("int", 0), FieldPart("string", 0, None)))
    with pytest.raises(ValueError, match="two int slots"):
        FieldHistory(
            "x", (FieldPart("int", 0), FieldPart("string", 0, NOV_3), FieldPart("int", 2, NOV_10))
        )
    with pytest.raises(ValueError, match="outside"):
        FieldPart("int", 32)
    with pytest.raises(ValueError, match="unknown field type"):
        FieldPart("date", 0)  # type: ignore[arg-type]


def test_conversion_rule_is_exactly_the_lossless_pairs() -> None:
    assert {
        ("bool", "int"), ("bool", "float"), ("bool", "string"), ("int", "float"), ("int", "string"),
    } == EXACT_CONVERSIONS  # fmt: skip
    assert converts("int", "string") and converts("bool", "int")
    for lossy in [("string", "int"), ("float", "int"), ("float", "string"), ("int", "bool"),
                  ("string", "bool"), ("string", "float"), ("float", "bool")]:  # fmt: skip
        assert not converts(*lossy)
    for t in FIELD_TYPES:
        assert not converts(t, t)  # the same type is "current", not a conversion


def test_reading_modes_and_columns() -> None:
    h = price_history()
    assert [(r.part.column, r.mode, r.from_ms, r.to_ms) for r in reading(h)] == [
        ("s0", "apart", None, NOV_3),
        ("i4", "current", NOV_3, None),
    ]
    assert read_columns(h) == ([("i4", "int")], [("s0", "string")])
    widened = FieldHistory(
        "qty",
        (FieldPart("bool", 2), FieldPart("int", 7, NOV_3, 2), FieldPart("float", 1, NOV_10, 3)),
    )
    assert [r.mode for r in reading(widened)] == ["converted", "converted", "current"]
    assert read_columns(widened) == ([("f1", "float"), ("i7", "int"), ("b2", "bool")], [])
    back = FieldHistory(
        "code",
        (FieldPart("int", 1), FieldPart("string", 3, NOV_3, 2), FieldPart("int", 1, NOV_10, 5)),
    )
    assert read_columns(back) == ([("i1", "int")], [("s3", "string")])  # i1 read once


def test_describe_says_which_part_used_which_type() -> None:
    info = describe(price_history(), ["sum:price"])
    assert info["type"] == "int"
    assert info["parts"] == [
        {"type": "string", "column": "s0", "from_ms": None, "to_ms": NOV_3, "version": None,
         "read": "apart"},
        {"type": "int", "column": "i4", "from_ms": NOV_3, "to_ms": None, "version": 2,
         "read": "current"},
    ]  # fmt: skip
    assert info["notes"] == [
        "accepted from the start to 2026-11-03T09:30:00.000Z: string values kept apart "
        "(no exact conversion to int): own group-by rows, not matched by filters",
        "sum:price counts only the int values; the string part is left out",
    ]
    converted = FieldHistory("n", (FieldPart("int", 0), FieldPart("string", 2, NOV_10, 4)))
    assert describe(converted)["notes"] == [
        "accepted from the start to 2026-11-10T18:00:00.000Z: int values read as string"
    ]


def test_publish_part_appends_after_the_last_change() -> None:
    h = publish_part(price_history(), "bool", 0, at_ms=NOV_10, version=3)
    assert h.current == FieldPart("bool", 0, NOV_10, 3) and len(h.parts) == 3
    with pytest.raises(ValueError, match="already int"):
        publish_part(price_history(), "int", 4, at_ms=NOV_10, version=3)
    with pytest.raises(ValueError, match="not after"):
        publish_part(price_history(), "bool", 0, at_ms=NOV_3, version=3)


FIELDS = {
    "price": FieldHistory.single("price", "int", 0),
    "color": FieldHistory.single("color", "string", 0),
    "old": FieldHistory("old", (FieldPart("string", 1), FieldPart("int", 1, NOV_3, 2))),
}
PUBLISHED = {"price": True, "color": True, "old": True}


def plan(name: str, to: str, **kw: object) -> object:
    args: dict[str, object] = {"histories": FIELDS, "published": PUBLISHED, "pending": {}}
    args.update(kw)
    return plan_retype(name, to, **args)  # type: ignore[arg-type]


def test_retype_takes_the_lowest_slot_no_history_holds() -> None:
    # s0 is color's, s1 is old's earlier part (still holding its values): s2
    p = plan("price", "string")
    assert (p.action, p.type, p.slot, p.reused) == ("set", "string", 2, False)  # type: ignore[attr-defined]
    assert taken_slots(FIELDS.values(), {})["string"] == {0: "color", 1: "old"}


def test_back_to_an_earlier_type_reuses_its_slot() -> None:
    p = plan("old", "string")
    assert (p.action, p.slot, p.reused) == ("set", 1, True)  # type: ignore[attr-defined]


def test_twice_before_publish_replaces_and_back_cancels() -> None:
    pending = {"price": ("string", 2)}
    again = plan("price", "float", pending=pending)
    assert (again.action, again.type, again.slot) == ("set", "float", 0)  # type: ignore[attr-defined]
    # the pending string slot is not held against the field's own new change
    swap = plan("price", "bool", pending=pending)
    assert swap.slot == 0  # type: ignore[attr-defined]
    cancel = plan("price", "int", pending=pending)
    assert (cancel.action, cancel.type, cancel.slot) == ("cancel", "int", 0)  # type: ignore[attr-defined]
    with pytest.raises(RetypeError, match="already being changed to string") as exc:
        plan("price", "string", pending=pending)
    assert exc.value.code == "already_pending"
    # another field's pending change holds its slot
    assert plan("color", "int", pending={"price": ("int", 1)}).slot == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "to", "code", "message"),
    [
        ("size", "int", "unknown_field", "field 'size' is not defined"),
        ("price", "date", "unknown_type", "unknown type 'date': use int, string, float, bool"),
        ("price", "int", "same_type", "field 'price' is already int"),
        ("$platform", "int", "system_name", "'$platform' is a system property or built-in name"),
        ("price", "", "unknown_type", "unknown type ''"),
    ],
)
def test_refused_retypes(name: str, to: str, code: str, message: str) -> None:
    with pytest.raises(RetypeError) as exc:
        plan(name, to)
    assert exc.value.code == code and exc.value.message.startswith(message)


def test_no_free_slot_of_the_new_type() -> None:
    full = {f"f{i}": FieldHistory.single(f"f{i}", "bool", i) for i in range(31)}
    full["x"] = FieldHistory("x", (FieldPart("bool", 31), FieldPart("int", 0, NOV_3, 2)))
    full["price"] = FieldHistory.single("price", "int", 1)
    with pytest.raises(RetypeError, match="no free bool slot for field 'price': all 32") as exc:
        plan("price", "bool", histories=full, published={n: True for n in full})
    assert exc.value.code == "no_free_slot"
    # x still has its own bool slot: going back needs none
    assert plan("x", "bool", histories=full, published={n: True for n in full}).slot == 31  # type: ignore[attr-defined]


def test_unpublished_field_is_redefined_in_its_new_type() -> None:
    fields = {**FIELDS, "draft": FieldHistory.single("draft", "string", 5)}
    p = plan("draft", "int", histories=fields, published={**PUBLISHED, "draft": False})
    assert (p.action, p.slot, p.reused) == ("set", 2, False)  # type: ignore[attr-defined]


def test_value_type_checks_bool_before_int() -> None:
    assert [value_type(v) for v in (True, 3, 2.5, "x")] == ["bool", "int", "float", "string"]
    with pytest.raises(TypeError):
        value_type(None)
