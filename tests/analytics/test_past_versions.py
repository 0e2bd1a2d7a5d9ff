"""Events recorded under a past published version (miniport.analytics.ingest_rules:
ConfigHistory, check_batch's ``history``): pure, with literal times."""

from __future__ import annotations

from typing import Any

from miniport.analytics.definitions import AnalyticsConfig
from miniport.analytics.ingest_rules import ConfigHistory, RuntimeConfigView, check_batch

JAN_1 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000


def view(fields: list[str]) -> RuntimeConfigView:
    config = AnalyticsConfig.model_validate({
        "fields": [{"name": "price", "type": "int"}, {"name": "color", "type": "string"}],
        "events": [{"name": "buy", "display_name": "Buy", "mode": "api", "fields": fields}],
    })  # fmt: skip
    return RuntimeConfigView.from_config(config, {"buy": 1})


V1, V2, V3 = view(["price", "color"]), view(["price"]), view([])
# v1 published at 00:00, v2 at 01:00; v3 (in force now) at 02:00
HISTORY = ConfigHistory(((1, JAN_1, V1), (2, JAN_1 + HOUR, V2)), JAN_1 + 2 * HOUR)


def test_the_version_in_force_at_the_events_time() -> None:
    at = HISTORY.recorded_under
    assert at({}, JAN_1 - 1) is None  # before any publish
    assert at({}, JAN_1) is V1
    assert at({}, JAN_1 + HOUR - 1) is V1
    assert at({}, JAN_1 + HOUR) is V2
    assert at({}, JAN_1 + 2 * HOUR - 1) is V2
    assert at({}, JAN_1 + 2 * HOUR) is None  # the version in force now checked it already
    assert at({}, None) is None  # an estimated time says nothing


def test_a_named_version_wins_over_the_time() -> None:
    at = HISTORY.recorded_under
    assert at({"v": 1}, JAN_1 + 2 * HOUR + 5) is V1  # a device that had not heard of v2, v3
    assert at({"v": 2}, None) is V2
    assert at({"v": 3}, JAN_1) is None  # the version in force now: nothing past to try
    assert at({"v": 9}, JAN_1) is None
    assert at({"v": "1"}, JAN_1 + HOUR) is V2  # not a version number: the time decides
    assert at({"v": True}, JAN_1 + HOUR) is V2


def batch(*events: dict[str, Any]) -> dict[str, Any]:
    return {"sent_at": JAN_1 + 3 * HOUR, "events": list(events)}


def test_check_batch_lifts_only_what_a_past_version_defined() -> None:
    received = JAN_1 + 3 * HOUR  # no clock skew: ts is the event's time
    events = batch(
        {"id": "a", "event": "buy", "data": {"price": 1, "color": "red"}, "ts": JAN_1 + 5},
        {"id": "b", "event": "buy", "data": {"price": 2}, "ts": JAN_1 + HOUR + 5},
        {"id": "c", "event": "buy", "data": {"color": "red"}, "ts": JAN_1 + HOUR + 5},
        {"id": "d", "event": "buy", "data": {"price": 3}},  # no time, no version
        {"id": "e", "event": "sell", "data": {}, "ts": JAN_1 + 5},
        {"id": "f", "event": "buy", "data": {"price": 7.5, "color": 5}, "v": 1},
    )
    without = check_batch(events, config=V3, received_at_ms=received)
    assert [r.id for r in without.rejected] == ["a", "b", "c", "d", "e", "f"]
    verdict = check_batch(events, config=V3, received_at_ms=received, history=HISTORY)
    assert [(e.uid, e.values, e.ts_ms) for e in verdict.accepted] == [
        ("a", {"price": 1, "color": "red"}, JAN_1 + 5),
        ("b", {"price": 2}, JAN_1 + HOUR + 5),
        ("f", {"price": 7, "color": "5"}, received),  # coerced by v1's types
    ]
    # each refused for what the version in force says, as without the history
    assert [(r.id, r.code) for r in verdict.rejected] == [
        ("c", "unknown_field"), ("d", "unknown_field"), ("e", "unknown_event"),
    ]  # fmt: skip
    assert verdict.accepted[2].coercions[0].field == "price"


def test_other_refusals_are_never_lifted() -> None:
    events = batch({"id": "a", "event": "buy", "data": [], "ts": JAN_1 + 5},
                   {"id": "b", "event": "buy", "data": {"price": 1}, "ts": JAN_1 + 5,
                    "trigger": "hover"})  # fmt: skip
    verdict = check_batch(events, config=V3, received_at_ms=JAN_1 + 3 * HOUR, history=HISTORY)
    assert [(r.id, r.code) for r in verdict.rejected] == [
        ("a", "invalid_data"), ("b", "unknown_field"),
    ]  # fmt: skip
