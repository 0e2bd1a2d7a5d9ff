"""Validation of reported batches (miniport.analytics.ingest_rules)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miniport.analytics.definitions import AnalyticsConfig
from miniport.analytics.ingest_rules import (
    DAY_MS,
    MIN_EVENT_TIME_MS,
    BatchInvalid,
    BatchVerdict,
    CheckedEvent,
    CoercionNote,
    Rejection,
    RuntimeConfigView,
    check_batch,
)

NOW = 1_700_000_000_000

CONFIG = AnalyticsConfig.model_validate(
    {
        "fields": [
            {"name": "price", "type": "int"},
            {"name": "color", "type": "string"},
            {"name": "size", "type": "string"},
        ],
        "events": [
            {
                "name": "purchase",
                "display_name": "购买",
                "mode": "api",
                "fields": ["price", "color"],
            },
            {
                "name": "goods_click",
                "display_name": "商品点击",
                "mode": "configured",
                "fields": ["price"],
                "actions": [
                    {
                        "trigger": "click",
                        "action": "report",
                        "page": "pages/list/list",
                        "element": ".buy",
                        "data": {"price": "goods[].price"},
                    }
                ],
            },
        ],
    }
)
VIEW = RuntimeConfigView.from_config(CONFIG, {"purchase": 1, "goods_click": 2})


def ev(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": "e1", "event": "purchase", "data": {"price": 5}, "ts": NOW}
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ...}


def check(*events: Any, sent_at: Any = NOW, received: int = NOW, **kw: Any) -> BatchVerdict:
    batch: dict[str, Any] = {"events": list(events)}
    if sent_at is not ...:
        batch["sent_at"] = sent_at
    return check_batch(batch, config=VIEW, received_at_ms=received, **kw)


def reason_of(event: dict[str, Any]) -> str:
    verdict = check(event)
    assert not verdict.accepted, verdict
    [rejection] = verdict.rejected
    return rejection.reason


# --------------------------------------------------------------------------- config view


def test_view_lookups() -> None:
    purchase = VIEW.event_by_name("purchase")
    assert purchase is not None and purchase.id == 1 and purchase.fields == ("price", "color")
    assert VIEW.event_by_id(2) is not None and VIEW.event_by_id(2).name == "goods_click"  # type: ignore[union-attr]
    assert VIEW.event_by_name("nope") is None and VIEW.event_by_id(9) is None
    assert VIEW.field_type("price") == "int" and VIEW.field_type("color") == "string"
    assert VIEW.field_type("nope") is None


def test_view_is_read_only() -> None:
    with pytest.raises(AttributeError):
        VIEW.field_types = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        VIEW.field_types["x"] = "int"  # type: ignore[index]


def test_view_refuses_bad_ids() -> None:
    with pytest.raises(ValueError, match="'goods_click' has no id"):
        RuntimeConfigView.from_config(CONFIG, {"purchase": 1})
    with pytest.raises(ValueError, match="share id 1"):
        RuntimeConfigView.from_config(CONFIG, {"purchase": 1, "goods_click": 1})
    broken = AnalyticsConfig.model_validate(
        {
            "fields": [],
            "events": [{"name": "a", "display_name": "A", "mode": "api", "fields": ["x"]}],
        }
    )
    with pytest.raises(ValueError, match="undefined field 'x'"):
        RuntimeConfigView.from_config(broken, {"a": 1})


# --------------------------------------------------------------------------- accepted events


def test_accepts_a_valid_event() -> None:
    verdict = check(ev(page="pages/a/a"))
    assert verdict.rejected == [] and verdict.duplicates_in_batch == 0
    assert verdict.accepted == [
        CheckedEvent(
            uid="e1",
            event_name="purchase",
            event_id=1,
            ts_ms=NOW,
            time_estimated=False,
            page="pages/a/a",
            trigger=None,
            action=None,
            values={"price": 5},
            coercions=[],
            index=0,
        )
    ]
    assert verdict.accepted[0].as_dict()["values"] == {"price": 5}


@pytest.mark.parametrize("ref", ["purchase", 1, "1"])
def test_event_by_name_or_id(ref: object) -> None:
    [accepted] = check(ev(event=ref)).accepted
    assert (accepted.event_name, accepted.event_id) == ("purchase", 1)


def test_codeless_event_keeps_trigger_action_page() -> None:
    [accepted] = check(
        ev(event="goods_click", trigger="click", action="report", page="pages/list/list")
    ).accepted
    assert (accepted.trigger, accepted.action, accepted.page) == (
        "click",
        "report",
        "pages/list/list",
    )


@pytest.mark.parametrize("data", [..., None, {}])
def test_absent_data_is_empty(data: Any) -> None:
    [accepted] = check(ev(data=data)).accepted
    assert accepted.values == {}


def test_values_are_coerced_with_notes() -> None:
    [accepted] = check(ev(data={"price": "12.7", "color": 3})).accepted
    assert accepted.values == {"price": 12, "color": "3"}
    assert accepted.coercions == [
        CoercionNote("price", 'truncated: "12.7" (string) -> 12'),
        CoercionNote("color", 'to_string: 3 -> "3"'),
    ]
    assert accepted.as_dict()["coercions"][0] == {
        "field": "price",
        "note": 'truncated: "12.7" (string) -> 12',
    }


def test_dropped_values_leave_the_field_out_but_keep_the_event() -> None:
    [accepted] = check(ev(data={"price": 2**40, "color": None})).accepted
    assert accepted.values == {}
    assert [(c.field, c.note.split(":")[0]) for c in accepted.coercions] == [
        ("price", "out_of_range"),
        ("color", "null"),
    ]


def test_unknown_event_keys_are_ignored() -> None:
    assert check(ev(extra="x")).accepted


# --------------------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("event", "reason", "code"),
    [
        (5, "invalid event entry: expected an object", "not_object"),
        (ev(id=...), "missing id", "missing_id"),
        (ev(id=None), "missing id", "missing_id"),
        (ev(id=""), "invalid id: expected a string of 1 to 64 characters", "invalid_id"),
        (ev(id="x" * 65), "invalid id: expected a string of 1 to 64 characters", "invalid_id"),
        (ev(id=12), "invalid id: expected a string of 1 to 64 characters", "invalid_id"),
        (ev(id="a\ud800"), "invalid id: expected a string of 1 to 64 characters", "invalid_id"),
        (ev(event=...), "missing event", "missing_event"),
        (ev(event="nope"), "unknown event 'nope'", "unknown_event"),
        (ev(event=99), "unknown event id 99", "unknown_event"),
        (ev(event="99"), "unknown event id 99", "unknown_event"),
        (
            ev(event=True),
            "invalid event: expected an event name or a numeric event id",
            "invalid_event",
        ),
        (
            ev(event=1.0),
            "invalid event: expected an event name or a numeric event id",
            "invalid_event",
        ),
        (ev(data=[1]), "invalid data: expected an object", "invalid_data"),
        (ev(data="x"), "invalid data: expected an object", "invalid_data"),
        (ev(data={"x": 1}), "unknown field 'x' for event 'purchase'", "unknown_field"),
        (
            ev(data={"price": 1, "size": "m"}),
            "unknown field 'size' for event 'purchase'",
            "unknown_field",
        ),
        (
            ev(ts="1700000000000"),
            "invalid ts: expected a number of milliseconds since the epoch",
            "invalid_ts",
        ),
        (
            ev(ts=True),
            "invalid ts: expected a number of milliseconds since the epoch",
            "invalid_ts",
        ),
        (
            ev(ts=float("nan")),
            "invalid ts: expected a number of milliseconds since the epoch",
            "invalid_ts",
        ),
        (ev(page=3), "invalid page: expected a string of at most 256 characters", "invalid_page"),
        (
            ev(page="p" * 257),
            "invalid page: expected a string of at most 256 characters",
            "invalid_page",
        ),
        (ev(trigger="tap"), "invalid trigger 'tap'", "invalid_trigger"),
        (ev(trigger=1), "invalid trigger 1", "invalid_trigger"),
        (ev(action="send"), "invalid action 'send'", "invalid_action"),
    ],
)
def test_rejections(event: Any, reason: str, code: str) -> None:
    verdict = check(event)
    assert verdict.accepted == [] and verdict.duplicates_in_batch == 0
    [rejection] = verdict.rejected
    assert (rejection.index, rejection.reason, rejection.code) == (0, reason, code)
    valid_id = isinstance(event, dict) and event.get("id") == "e1"
    assert rejection.id == ("e1" if valid_id else None)
    assert rejection.as_dict() == {"index": 0, "id": rejection.id, "reason": reason, "code": code}


def test_field_of_another_event_is_unknown() -> None:
    assert reason_of(ev(event="goods_click", data={"color": "red"})) == (
        "unknown field 'color' for event 'goods_click'"
    )


def test_bad_neighbours_cost_nothing() -> None:
    verdict = check(
        "junk",
        ev(id="a"),
        ev(id="b", event="nope"),
        ev(id="c", data={"x": 1}),
        ev(id="d", event=2, data={"price": 1}),
    )
    assert [a.uid for a in verdict.accepted] == ["a", "d"]
    assert [a.index for a in verdict.accepted] == [1, 4]
    assert [(r.index, r.id) for r in verdict.rejected] == [(0, None), (2, "b"), (3, "c")]


# --------------------------------------------------------------------------- duplicates


def test_duplicates_in_batch_first_kept() -> None:
    verdict = check(
        ev(id="a", data={"price": 1}), ev(id="a", data={"price": 2}), ev(id="b"), ev(id="a")
    )
    assert [(a.uid, a.values) for a in verdict.accepted] == [
        ("a", {"price": 1}),
        ("b", {"price": 5}),
    ]
    assert verdict.duplicates_in_batch == 2 and verdict.rejected == []


def test_rejected_event_does_not_claim_its_id() -> None:
    verdict = check(ev(id="a", event="nope"), ev(id="a"))
    assert [a.index for a in verdict.accepted] == [1]
    assert [r.index for r in verdict.rejected] == [0]
    assert verdict.duplicates_in_batch == 0


def test_invalid_duplicate_of_accepted_is_a_duplicate() -> None:
    verdict = check(ev(id="a"), ev(id="a", event="nope"))
    assert (
        len(verdict.accepted) == 1 and verdict.rejected == [] and verdict.duplicates_in_batch == 1
    )


# --------------------------------------------------------------------------- time


def test_clock_skew_corrected() -> None:
    # the device clock is 10 s behind: it sent at NOW - 10 s what happened at NOW - 70 s
    [accepted] = check(ev(ts=NOW - 70_000), sent_at=NOW - 10_000, received=NOW).accepted
    assert accepted.ts_ms == NOW - 60_000 and not accepted.time_estimated
    # and ahead
    [accepted] = check(ev(ts=NOW + 3_600_000), sent_at=NOW + 3_600_500, received=NOW).accepted
    assert accepted.ts_ms == NOW - 500 and not accepted.time_estimated


def test_float_times_are_truncated() -> None:
    [accepted] = check(ev(ts=NOW + 0.9), sent_at=float(NOW)).accepted
    assert accepted.ts_ms == NOW and not accepted.time_estimated


@pytest.mark.parametrize("ts", [..., None])
def test_missing_ts_is_estimated(ts: Any) -> None:
    [accepted] = check(ev(ts=ts), received=NOW + 5).accepted
    assert accepted.ts_ms == NOW + 5 and accepted.time_estimated


@pytest.mark.parametrize("sent_at", [..., None, "x", True, float("inf"), [1]])
def test_unusable_sent_at_is_estimated(sent_at: Any) -> None:
    [accepted] = check(ev(ts=NOW - 1000), sent_at=sent_at, received=NOW).accepted
    assert accepted.ts_ms == NOW and accepted.time_estimated


@pytest.mark.parametrize(
    ("ts", "estimated"),
    [
        (NOW + DAY_MS, False),
        (NOW + DAY_MS + 1, True),
        (MIN_EVENT_TIME_MS, False),
        (MIN_EVENT_TIME_MS - 1, True),
        (0, True),
        (-5, True),
        (10**30, True),
    ],
)
def test_absurd_times_are_estimated(ts: int, estimated: bool) -> None:
    [accepted] = check(ev(ts=ts), sent_at=NOW, received=NOW).accepted
    assert accepted.time_estimated is estimated
    assert accepted.ts_ms == (NOW if estimated else ts)


# --------------------------------------------------------------------------- batch


@pytest.mark.parametrize(
    ("batch", "reason"),
    [
        ([], "invalid batch: expected an object"),
        ("x", "invalid batch: expected an object"),
        ({"sent_at": NOW}, "invalid batch: missing 'events'"),
        ({"events": {"a": 1}}, "invalid batch: 'events' must be a list"),
        ({"events": None}, "invalid batch: 'events' must be a list"),
    ],
)
def test_broken_batch(batch: object, reason: str) -> None:
    with pytest.raises(BatchInvalid) as caught:
        check_batch(batch, config=VIEW, received_at_ms=NOW)
    assert caught.value.reason == reason == str(caught.value)


def test_too_many_events() -> None:
    events = [ev(id=str(n)) for n in range(11)]
    with pytest.raises(BatchInvalid, match=r"too many events: 11 \(at most 10 per batch\)"):
        check(*events, max_batch=10)
    assert len(check(*events[:10], max_batch=10).accepted) == 10
    assert len(check(*[ev(id=str(n)) for n in range(1000)]).accepted) == 1000
    with pytest.raises(BatchInvalid, match="1001"):
        check(*[ev(id=str(n)) for n in range(1001)])


def test_empty_batch() -> None:
    verdict = check()
    assert (verdict.accepted, verdict.rejected, verdict.duplicates_in_batch) == ([], [], 0)
    assert verdict.as_dict() == {"accepted": 0, "rejected": [], "duplicates_in_batch": 0}


def test_rejection_dataclass_shape() -> None:
    assert Rejection(1, None, "missing id", "missing_id").as_dict() == {
        "index": 1,
        "id": None,
        "reason": "missing id",
        "code": "missing_id",
    }


# --------------------------------------------------------------------------- properties

anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
ids = st.sampled_from(["a", "b", "c", "", "x" * 65]) | st.none() | st.integers(0, 2)
event_refs = st.sampled_from(["purchase", "goods_click", 1, 2, "2", "nope", 7]) | st.none()
field_values = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=300)
datas = st.none() | st.dictionaries(st.sampled_from(["price", "color", "size", "x"]), field_values)
raw_events = st.one_of(
    anything,
    st.fixed_dictionaries(
        {"id": ids, "event": event_refs, "data": datas | anything},
        optional={
            "ts": st.none() | st.integers() | st.floats() | st.text(max_size=3),
            "page": st.none() | st.text(max_size=5) | st.integers(),
            "trigger": st.none() | st.sampled_from(["click", "launch", "tap"]),
            "action": st.none() | st.sampled_from(["report", "start", "send"]),
        },
    ),
)


@given(
    st.lists(raw_events, max_size=30),
    st.none() | st.integers() | st.floats() | st.text(max_size=3),
    st.integers(0, 4_000_000_000_000),
)
def test_every_event_is_accounted_for(events: list[Any], sent_at: Any, received: int) -> None:
    verdict = check_batch(
        {"events": events, "sent_at": sent_at}, config=VIEW, received_at_ms=received
    )
    assert len(verdict.accepted) + len(verdict.rejected) + verdict.duplicates_in_batch == len(
        events
    )
    uids = [a.uid for a in verdict.accepted]
    assert len(uids) == len(set(uids))
    indexes = sorted([a.index for a in verdict.accepted] + [r.index for r in verdict.rejected])
    assert len(indexes) == len(set(indexes)) and all(0 <= i < len(events) for i in indexes)
    for accepted in verdict.accepted:
        event = VIEW.event_by_name(accepted.event_name)
        assert event is not None and event.id == accepted.event_id
        assert MIN_EVENT_TIME_MS <= accepted.ts_ms <= received + DAY_MS or accepted.time_estimated
        if accepted.time_estimated:
            assert accepted.ts_ms == received
        for name, value in accepted.values.items():
            assert event.has_field(name)
            if VIEW.field_type(name) == "int":
                assert type(value) is int and -(2**31) <= value < 2**31
            else:
                assert isinstance(value, str) and len(value) <= 255


@given(st.lists(raw_events, max_size=10), st.lists(raw_events, max_size=10), field_values)
def test_nothing_valid_is_lost(before: list[Any], after: list[Any], price: Any) -> None:
    valid = {"id": "the-valid-one", "event": "purchase", "data": {"price": price}, "ts": NOW}
    verdict = check(*before, valid, *after)
    [kept] = [a for a in verdict.accepted if a.uid == "the-valid-one"]
    assert kept.index == len(before) and not kept.time_estimated


def test_docs_list_every_reason_and_note_code() -> None:
    from pathlib import Path

    from miniport.analytics.coercion import NOTE_CODES

    doc = (Path(__file__).resolve().parents[2] / "docs" / "analytics-definitions.md").read_text(
        encoding="utf-8"
    )
    codes = {
        "not_object",
        "missing_id",
        "invalid_id",
        "missing_event",
        "unknown_event",
        "invalid_event",
        "invalid_data",
        "unknown_field",
        "invalid_ts",
        "invalid_page",
        "invalid_trigger",
        "invalid_action",
    }
    seen: set[str] = set()
    for event in [
        5,
        ev(id=...),
        ev(id=""),
        ev(event=...),
        ev(event="x"),
        ev(event=1.5),
        ev(data=1),
        ev(data={"x": 1}),
        ev(ts="x"),
        ev(page=1),
        ev(trigger="x"),
        ev(action="x"),
    ]:
        [rejection] = check(event).rejected
        seen.add(rejection.code)
        assert f"`{rejection.code}`" in doc
    assert seen == codes
    for code in NOTE_CODES:
        assert f"`{code}`" in doc
    for reason in [
        "invalid batch: expected an object",
        "invalid batch: missing 'events'",
        "invalid batch: 'events' must be a list",
        "too many events",
    ]:
        assert reason in doc


def test_built_in_events_switched_off_are_refused_one_by_one() -> None:
    off = RuntimeConfigView.from_config(
        CONFIG, {"purchase": 1, "goods_click": 2}, builtin_events=False
    )
    batch = {
        "sent_at": NOW,
        "events": [
            {"id": "s", "event": "$show", "ts": NOW},
            {"id": "p", "event": "purchase", "data": {"price": 1}, "ts": NOW},
            {"id": "h", "event": "$hide", "ts": NOW},
            {"id": "x", "event": "$nope", "ts": NOW},  # still an unknown built-in event
        ],
    }
    verdict = check_batch(batch, config=off, received_at_ms=NOW)
    assert [ev.uid for ev in verdict.accepted] == ["p"]
    assert [(r.index, r.id, r.code) for r in verdict.rejected] == [
        (0, "s", "builtin_off"),
        (2, "h", "builtin_off"),
        (3, "x", "unknown_event"),
    ]
    assert verdict.rejected[0].reason == (
        "built-in event $show refused: built-in events are switched off for this app"
    )
    on = check_batch(batch, config=VIEW, received_at_ms=NOW)  # the default: taken
    assert [ev.uid for ev in on.accepted] == ["s", "p", "h"]


def test_a_batch_context_of_many_unknown_keys_costs_each_event_a_bounded_number_of_notes() -> None:
    """The batch's context notes are copied to every event: 20,000 unknown keys (a 250 KB body)
    made 20,000 notes on each of 1,000 events (20 million, ~160 MB for one request). The
    unknown keys are now noted a few by name and the rest counted in one note."""
    context = {f"k{i}": 0 for i in range(20_000)}
    events = [ev(id=f"e{i}") for i in range(1_000)]
    verdict = check_batch(
        {"sent_at": NOW, "context": {"$platform": "ios", **context}, "events": events},
        config=VIEW, received_at_ms=NOW,
    )
    assert len(verdict.accepted) == 1_000
    notes = verdict.accepted[0].coercions
    assert len(notes) <= 11
    assert all(note.note.startswith("unknown_property: ") for note in notes)
    assert "19990 more" in notes[-1].note
    assert verdict.accepted[0].extra == {"sys_platform": "ios"}
