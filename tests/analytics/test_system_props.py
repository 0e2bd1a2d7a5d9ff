"""System properties and built-in events: the pure rules (miniport.analytics.system_props)
and how a batch carrying them is judged (miniport.analytics.ingest_rules)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miniport.analytics.ingest_rules import BatchInvalid, check_batch
from miniport.analytics.system_props import (
    BUILTIN_EVENTS,
    DIMENSIONS,
    EXTRA_COLUMNS,
    MAX_UNKNOWN_NOTED,
    SYSTEM_PROPERTIES,
    ContextInvalid,
    builtin_data,
    check_context,
    is_new_user,
    merge_context,
    utc_day,
)
from tests.analytics.test_ingest_rules import NOW, VIEW

DAY = 86_400_000


def notes_of(raw: object) -> dict[str, str]:
    return dict(check_context(raw)[1])


# --------------------------------------------------------------------------- context values


def test_a_full_context_is_stored_by_column_without_notes() -> None:
    values, notes = check_context(
        {
            "$platform": "ios",
            "$os_version": "17.2",
            "$brand": "Apple",
            "$model": "iPhone 15",
            "$host_version": "8.0.50",
            "$mp_version": "1.2.0",
            "$env": "release",
            "$sdk_version": "0.9.0",
            "$network": "wifi",
            "$scene": 1001,
            "$language": "zh_CN",
            "$screen": "393x852",
            "$session": "s-1",
        }
    )
    assert notes == []
    assert values["sys_platform"] == "ios" and values["sys_scene"] == 1001
    assert values["sys_screen"] == "393x852" and values["sys_session"] == "s-1"
    assert len(values) == 13
    assert set(values) <= set(EXTRA_COLUMNS)


@pytest.mark.parametrize(
    ("key", "value", "stored", "code"),
    [
        ("$platform", "iOS", "ios", "normalized"),
        ("$platform", "symbian", None, "invalid_value"),
        ("$platform", 3, None, "invalid_value"),
        ("$env", "Release", "release", "normalized"),
        ("$env", "prod", None, "invalid_value"),
        ("$scene", "1001", 1001, "from_string"),
        ("$scene", 1001.7, 1001, "truncated"),
        ("$scene", 0, None, "invalid_value"),
        ("$scene", -5, None, "invalid_value"),
        ("$scene", "home", None, "invalid_value"),
        ("$scene", True, None, "invalid_value"),
        ("$scene", [1001], None, "invalid_value"),
        ("$scene", 2**40, None, "invalid_value"),
        ("$screen", "393×852", "393x852", "normalized"),
        ("$screen", "393 X 852", "393x852", "normalized"),
        ("$screen", "big", None, "invalid_value"),
        ("$os_version", 17.2, "17.2", "to_string"),
        ("$model", "x" * 200, "x" * 128, "truncated"),
        ("$model", {"a": 1}, None, "invalid_value"),
    ],
)
def test_a_bad_value_is_coerced_or_dropped_with_a_note(
    key: str, value: object, stored: object, code: str
) -> None:
    values, notes = check_context({key: value})
    assert values.get(SYSTEM_PROPERTIES[key].column) == stored
    [(noted, note)] = notes
    assert noted == key and note.startswith(f"{code}: "), note


def test_unknown_keys_are_ignored_and_noted() -> None:
    values, notes = check_context({"$foo": 1, "platform": "ios", "$platform": "web"})
    assert values == {"sys_platform": "web"}
    assert dict(notes) == {
        "$foo": "unknown_property: '$foo' is not a system property; ignored",
        "platform": "unknown_property: 'platform' is not a system property; ignored",
    }


def test_new_user_is_never_taken_from_the_client() -> None:
    values, notes = check_context({"$new_user": True})
    assert values == {}
    assert notes == [("$new_user", "derived: $new_user is set by the platform; ignored")]


@pytest.mark.parametrize("raw", [[], "ios", 3, True])
def test_a_context_must_be_an_object(raw: object) -> None:
    with pytest.raises(ContextInvalid, match="expected an object"):
        check_context(raw)
    assert check_context(None) == ({}, [])


def test_an_events_context_overrides_the_batchs_and_null_unsets() -> None:
    batch, _ = check_context({"$platform": "ios", "$scene": 1001, "$session": "s-1"})
    event, _ = check_context({"$session": "s-2", "$scene": None})
    assert merge_context(batch, event) == {"sys_platform": "ios", "sys_session": "s-2"}
    assert merge_context(batch, {}) == {
        "sys_platform": "ios",
        "sys_scene": 1001,
        "sys_session": "s-1",
    }


@given(st.dictionaries(st.text(max_size=12), st.none() | st.integers() | st.text(max_size=20)))
def test_any_context_object_gives_typed_columns_or_notes(raw: dict[str, Any]) -> None:
    values, notes = check_context(raw)
    for column, value in values.items():
        kind = EXTRA_COLUMNS[column]
        if value is not None:
            assert {"string": str, "int": int, "bool": bool}[kind] is type(value)
    noted = {key for key, _ in notes}
    unknown = [key for key in raw if key not in SYSTEM_PROPERTIES]
    for key in unknown[: MAX_UNKNOWN_NOTED + 1]:  # by name; the rest counted in the last note
        assert key in noted
    if len(unknown) > MAX_UNKNOWN_NOTED:
        assert f"{len(unknown) - MAX_UNKNOWN_NOTED} more keys" in notes[-1][1]


# --------------------------------------------------------------------------- built-in data


def test_builtin_event_data_by_column() -> None:
    assert builtin_data("$launch", {"cold": True, "path": "p/i", "query": "a=1"}) == (
        {"ev_cold": True, "ev_path": "p/i", "ev_query": "a=1"},
        [],
    )
    assert builtin_data("$pageleave", {"path": "p", "duration_ms": 1234.0}) == (
        {"ev_path": "p", "ev_duration_ms": 1234},
        [],
    )
    assert builtin_data("$show", {}) == ({}, [])
    year = {"duration_ms": 365 * 86_400_000}
    assert builtin_data("$pageleave", year) == ({"ev_duration_ms": 365 * 86_400_000}, [])
    assert set(BUILTIN_EVENTS) == {"$launch", "$show", "$hide", "$pageview", "$pageleave"}


@pytest.mark.parametrize(
    ("event", "data", "values", "code"),
    [
        ("$pageleave", {"duration_ms": -1}, {}, "invalid_value"),
        ("$pageleave", {"duration_ms": "12"}, {}, "invalid_value"),
        ("$pageleave", {"duration_ms": 12.5}, {"ev_duration_ms": 12}, "truncated"),
        # longer than a year: no measurement, and 2^53 (the old bound) made ClickHouse's 64-bit
        # sum() wrap after 1,024 such events
        ("$pageleave", {"duration_ms": 365 * 86_400_000 + 1}, {}, "invalid_value"),
        ("$pageleave", {"duration_ms": 2**53}, {}, "invalid_value"),
        ("$launch", {"cold": 1}, {"ev_cold": True}, "to_bool"),
        ("$launch", {"cold": "yes"}, {}, "invalid_value"),
        ("$pageview", {"path": 12}, {"ev_path": "12"}, "to_string"),
        ("$show", {"path": "p"}, {}, "ignored"),
        ("$pageview", {"colour": "red"}, {}, "ignored"),
    ],
)
def test_bad_builtin_data_is_coerced_or_dropped_with_a_note(
    event: str, data: dict[str, object], values: dict[str, object], code: str
) -> None:
    got, notes = builtin_data(event, data)
    assert got == values
    [(_, note)] = notes
    assert note.startswith(f"{code}: "), note


def test_new_user_is_the_first_utc_day() -> None:
    first = utc_day(1_800_000_000_000)
    start = first * DAY
    assert is_new_user(start, first) and is_new_user(start + DAY - 1, first)
    assert not is_new_user(start + DAY, first)
    assert is_new_user(start - 1, first)  # a late offline event from before
    assert DIMENSIONS["$new_user"].column == "sys_new_user"


# --------------------------------------------------------------------------- batches


def judge(batch: dict[str, Any]) -> Any:
    return check_batch({"sent_at": NOW, **batch}, config=VIEW, received_at_ms=NOW)


def test_batch_context_reaches_every_event_and_the_event_context_wins() -> None:
    verdict = judge(
        {
            "context": {"$platform": "android", "$scene": 1001, "$foo": 1},
            "events": [
                {"id": "a", "event": "purchase", "data": {"price": 3}, "ts": NOW},
                {
                    "id": "b",
                    "event": "$pageview",
                    "data": {"path": "p"},
                    "ts": NOW,
                    "context": {"$scene": 1007, "$session": "s-9"},
                },
            ],
        }
    )
    a, b = verdict.accepted
    assert a.extra == {"sys_platform": "android", "sys_scene": 1001}
    assert a.values == {"price": 3}
    assert b.extra == {
        "sys_platform": "android",
        "sys_scene": 1007,
        "sys_session": "s-9",
        "ev_path": "p",
    }
    assert b.event_name == "$pageview" and b.event_id < 0 and b.values == {}
    for event in (a, b):
        assert [n.field for n in event.coercions] == ["$foo"]
    assert b.as_dict()["system"]["$path"] == "p"


def test_built_in_events_need_no_definition_but_must_exist() -> None:
    verdict = judge(
        {
            "events": [
                {"id": "a", "event": "$launch", "data": {"cold": True, "path": "p"}},
                {"id": "b", "event": "$hide"},
                {"id": "c", "event": "$crash"},
                {"id": "d", "event": "$pageview", "data": "p"},
            ]
        }
    )
    assert [e.event_name for e in verdict.accepted] == ["$launch", "$hide"]
    c, d = verdict.rejected
    assert c.code == "unknown_event" and "unknown built-in event '$crash'" in c.reason
    assert d.code == "invalid_data"


@pytest.mark.parametrize("context", [[], "ios", 1])
def test_a_batch_context_that_is_not_an_object_refuses_the_batch(context: object) -> None:
    with pytest.raises(BatchInvalid, match="invalid batch: invalid context: expected an object"):
        judge({"context": context, "events": []})


def test_an_event_context_that_is_not_an_object_refuses_that_event() -> None:
    verdict = judge(
        {
            "events": [
                {"id": "a", "event": "purchase", "context": ["$platform"]},
                {"id": "b", "event": "purchase", "context": None},
            ]
        }
    )
    [refused] = verdict.rejected
    assert (refused.index, refused.code) == (0, "invalid_context")
    assert "expected an object" in refused.reason
    assert [e.uid for e in verdict.accepted] == ["b"]


def test_many_unknown_keys_are_noted_a_few_by_name_and_the_rest_counted() -> None:
    values, notes = check_context({"$platform": "ios", **{f"k{i}": i for i in range(25)}})
    assert values == {"sys_platform": "ios"}
    assert [key for key, _ in notes] == [f"k{i}" for i in range(MAX_UNKNOWN_NOTED + 1)]
    assert notes[-1][1] == (
        f"unknown_property: {25 - MAX_UNKNOWN_NOTED} more keys (from 'k{MAX_UNKNOWN_NOTED}')"
        " are not system properties; ignored"
    )
