"""Validation of one reported analytics batch against a configuration (pure).

Input (decoded JSON)::

    {"sent_at": 1700000000000,
     "context": {"$platform": "ios", "$scene": 1001, "$session": "s-1", ...},
     "events": [{"id": "5f0c…e2", "event": "goods_click" | 12, "data": {...},
                 "ts": 1700000000000, "page": "pages/list/list",
                 "trigger": "click", "action": "report",
                 "context": {"$session": "s-2"}}, ...]}

:func:`check_batch` raises :class:`BatchInvalid` only when the batch as a whole cannot be
read (not an object, ``events`` missing or not a list, more than ``max_batch`` events).
Otherwise every event is judged on its own: it is accepted (:class:`CheckedEvent`),
rejected with one reason (:class:`Rejection`), or counted as a duplicate of an earlier
accepted event of the same batch; a bad event never costs its neighbours anything.

Rules, in the order they are applied to one event (the first that fails is the reason):

1. the entry is an object;
2. ``id``: a string of 1..64 characters (no lone surrogates), unique within the app (the
   store deduplicates by (appid, id) across users); if an event with this id was
   already accepted in this batch, the entry is a duplicate (nothing else is checked);
3. ``event``: an event name, or its numeric id (an integer, or a string of digits) — the
   event must exist in the configuration;
4. ``data``: an object (absent or ``null`` means ``{}``) whose every key is a field of
   that event — one unknown key refuses the whole event;
5. ``ts``: absent/``null``, or a finite number (ms since the epoch; a fraction is dropped);
6. ``page``: absent/``null`` or a string of at most 256 characters; ``trigger``: absent/
   ``null`` or a known trigger; ``action``: absent/``null``, ``report`` or ``start``.

System properties (``context``) and built-in events (``$launch``, ``$show``, ``$hide``,
``$pageview``, ``$pageleave``: no definition needed, ``data`` keys path/query/referrer/
duration_ms/cold; each refused with ``builtin_off`` while the app has them switched off)
follow :mod:`miniport.analytics.system_props`: a batch ``context`` that is
not an object makes the batch invalid, an event ``context`` that is not an object refuses the
event (``invalid_context``, checked right after ``data``), a bad value of a known property is
coerced or dropped with a note, an unknown key is ignored with a note. The accepted event
carries them by column in :attr:`CheckedEvent.extra`.

Past versions (``history``): an event refused by rule 3 or 4 (an event or a field the
configuration in force does not have) is checked again against the published version it was
recorded under, when the batch's ``history`` has it: the version the event names (``"v"``: the
runtimes stamp each event with the version in force when it was recorded), else the version in
force at the event's corrected time (not an estimated one). A device that queued events
offline, or had not yet heard of a publish, loses nothing to a field or an event the next
version dropped; what no published version defined is refused as before, and only published
versions of the same app ever count (the one under test never does), each for
``PAST_VERSION_DAYS`` after it was replaced (the service builds ``history`` so).

Unknown keys of an event are ignored. Mode is not cross-checked (an ``api`` event
reported with a trigger is accepted as is).

Time: ``ts + (received_at_ms - sent_at)``; when ``ts`` or ``sent_at`` is absent or not a
finite number, or the corrected time is before 2000-01-01 or more than one day after
``received_at_ms``, the event gets ``received_at_ms`` and ``time_estimated=True``.

Values are coerced by field type (:mod:`miniport.analytics.coercion`); a value coerced to
nothing (``out_of_range`` int, ``null`` string) is left out of ``values`` and its note kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from miniport.analytics.coercion import (
    INT_MAX,
    INT_MIN,
    MAX_STRING_LENGTH,
    FieldType,
    coerce,
)
from miniport.analytics.definitions import ACTION_KINDS, TRIGGERS, AnalyticsConfig
from miniport.analytics.system_props import (
    BUILTIN_EVENTS,
    COLUMN_NAMES,
    ContextInvalid,
    builtin_data,
    check_context,
    merge_context,
)
from miniport.domain.shown import short_repr as _show  # a value in a note
from miniport.errors import BatchInvalid

__all__ = [
    "DAY_MS",
    "MAX_ID_LENGTH",
    "MIN_EVENT_TIME_MS",
    "PAST_CODES",
    "PAST_VERSION_DAYS",
    "BatchInvalid",
    "BatchVerdict",
    "CheckedEvent",
    "CoercionNote",
    "ConfigHistory",
    "EventView",
    "Rejection",
    "RuntimeConfigView",
    "check_batch",
]

MAX_ID_LENGTH: Final = 64
MAX_PAGE_LENGTH: Final = 256
DAY_MS: Final = 86_400_000
MIN_EVENT_TIME_MS: Final = 946_684_800_000  # 2000-01-01T00:00:00Z
_EVENT_ID_RE: Final = re.compile(r"[0-9]{1,18}")
_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class EventView:
    """What ingestion needs of one event: its id, name and fields (in definition order), and
    (made by :meth:`RuntimeConfigView.from_config`) each field's type, so that one lookup per
    reported key both checks it is a field of the event and finds how to coerce it."""

    id: int
    name: str
    fields: tuple[str, ...]
    types: Mapping[str, FieldType] | None = None
    """Field name -> type, for the fields of this event; ``None``: from the configuration."""

    def has_field(self, name: str) -> bool:
        return name in self.fields


@dataclass(frozen=True)
class RuntimeConfigView:
    """Read-only lookups over one configuration (published, or the one under test)."""

    field_types: Mapping[str, FieldType]
    events_by_name: Mapping[str, EventView]
    events_by_id: Mapping[int, EventView]
    builtin_events: bool = True
    """Whether built-in events are taken (the app's switch); off: each is refused."""

    @classmethod
    def from_config(
        cls, config: AnalyticsConfig, event_ids: Mapping[str, int], *, builtin_events: bool = True
    ) -> RuntimeConfigView:
        """Build the view; ``ValueError`` if an event has no id, two events share an id or
        an event lists an undefined field (run ``validate_config`` first)."""
        field_types: dict[str, FieldType] = {f.name: f.type for f in config.fields}
        by_name: dict[str, EventView] = {}
        by_id: dict[int, EventView] = {}
        for event in config.events:
            if event.name not in event_ids:
                raise ValueError(f"event {event.name!r} has no id")
            event_id = event_ids[event.name]
            if event_id in by_id:
                raise ValueError(
                    f"events {by_id[event_id].name!r} and {event.name!r} share id {event_id}"
                )
            for name in event.fields:
                if name not in field_types:
                    raise ValueError(f"event {event.name!r} uses undefined field {name!r}")
            types = {name: field_types[name] for name in event.fields}
            view = EventView(event_id, event.name, tuple(event.fields), types)
            by_name[event.name] = view
            by_id[event_id] = view
        return cls(
            MappingProxyType(field_types),
            MappingProxyType(by_name),
            MappingProxyType(by_id),
            builtin_events,
        )

    def event_by_name(self, name: str) -> EventView | None:
        return self.events_by_name.get(name)

    def event_by_id(self, event_id: int) -> EventView | None:
        return self.events_by_id.get(event_id)

    def field_type(self, name: str) -> FieldType | None:
        return self.field_types.get(name)


@dataclass(frozen=True)
class ConfigHistory:
    """An app's past published versions, for events recorded under one of them: ``past`` is
    ``(version, published_at_ms, view)``, oldest first; ``current_since_ms``: when the version
    in force now was published. Built only when an event is refused (see the module docs):
    the common batch never needs it."""

    past: tuple[tuple[int, int, RuntimeConfigView], ...]
    current_since_ms: int

    def recorded_under(self, raw: Mapping[Any, Any], at_ms: int | None) -> RuntimeConfigView | None:
        """The past version an event was recorded under: the one it names (``"v"``), else
        the one in force at ``at_ms`` (its corrected time; ``None``: not known). ``None``
        when that is the version in force now, or no past version."""
        named = raw.get("v")
        if type(named) is int:
            return next((view for v, _, view in self.past if v == named), None)
        if at_ms is None or at_ms >= self.current_since_ms:
            return None
        found: RuntimeConfigView | None = None
        for _, published_at_ms, view in self.past:
            if published_at_ms > at_ms:
                break
            found = view
        return found


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True, slots=True)
class CoercionNote:
    field: str
    note: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "note": self.note}


@dataclass(slots=True)
class CheckedEvent:
    """An accepted event, ready for the store. ``uid`` is the client-made event id.

    Not frozen: thousands are made per second on the ingestion path, and a frozen
    dataclass's ``__init__`` costs about four times as much; treat it as read-only."""

    uid: str
    event_name: str
    event_id: int
    ts_ms: int
    time_estimated: bool
    page: str | None
    trigger: str | None
    action: str | None
    values: dict[str, int | str | float | bool]
    coercions: list[CoercionNote] = field(default_factory=list)
    index: int = 0
    """Position of the event in the batch."""
    extra: dict[str, object] = field(default_factory=dict)
    """System properties and built-in event data by event-store column (``sys_platform``,
    ``ev_path``...; see :mod:`miniport.analytics.system_props`)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "uid": self.uid,
            "event_name": self.event_name,
            "event_id": self.event_id,
            "ts_ms": self.ts_ms,
            "time_estimated": self.time_estimated,
            "page": self.page,
            "trigger": self.trigger,
            "action": self.action,
            "values": dict(self.values),
            "coercions": [note.as_dict() for note in self.coercions],
            "system": {COLUMN_NAMES[c]: v for c, v in self.extra.items()},
        }


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused event: its position, its id when that was valid, and why.

    ``code`` is a stable word for counting (``unknown_field``…); ``reason`` is the text
    shown to the developer.
    """

    index: int
    id: str | None
    reason: str
    code: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id, "reason": self.reason, "code": self.code}


@dataclass(frozen=True, slots=True)
class BatchVerdict:
    accepted: list[CheckedEvent]
    rejected: list[Rejection]
    duplicates_in_batch: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": len(self.accepted),
            "rejected": [rejection.as_dict() for rejection in self.rejected],
            "duplicates_in_batch": self.duplicates_in_batch,
        }


class _Refused(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# --------------------------------------------------------------------------- checks


def _finite_ms(value: object) -> int | None:
    """An int for an int or a finite float (fraction dropped); ``None`` otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return math.trunc(value)
    return None


def _valid_id(value: object) -> str | None:
    if (
        isinstance(value, str)
        and 1 <= len(value) <= MAX_ID_LENGTH
        and (value.isascii() or _SURROGATE_RE.search(value) is None)
    ):
        return value
    return None


BUILTIN_VIEWS: Final[Mapping[str, EventView]] = MappingProxyType(
    {name: EventView(-1 - i, name, keys) for i, (name, keys) in enumerate(BUILTIN_EVENTS.items())}
)
"""Built-in events (``$launch``...): ids -1..-5, never defined by an app."""


def _lookup_event(value: object, config: RuntimeConfigView) -> EventView:
    if type(value) is str:  # the common case: a name (a name never is all digits)
        found = config.events_by_name.get(value)
        if found is not None:
            return found
        if value.startswith("$"):
            builtin = BUILTIN_VIEWS.get(value)
            if builtin is None:
                raise _Refused(
                    "unknown_event",
                    f"unknown built-in event {_show(value)} (built-in events: "
                    + ", ".join(BUILTIN_EVENTS)
                    + ")",
                )
            if not config.builtin_events:
                raise _Refused(
                    "builtin_off",
                    f"built-in event {value} refused: built-in events are switched off for"
                    " this app",
                )
            return builtin
    if value is None:
        raise _Refused("missing_event", "missing event")
    if isinstance(value, str):
        if _EVENT_ID_RE.fullmatch(value):
            found = config.event_by_id(int(value))
            if found is None:
                raise _Refused("unknown_event", f"unknown event id {int(value)}")
            return found
        found = config.event_by_name(value)
        if found is None:
            raise _Refused("unknown_event", f"unknown event {_show(value)}")
        return found
    if isinstance(value, int) and not isinstance(value, bool):
        found = config.event_by_id(value)
        if found is None:
            raise _Refused("unknown_event", f"unknown event id {value}")
        return found
    raise _Refused("invalid_event", "invalid event: expected an event name or a numeric event id")


@dataclass(frozen=True, slots=True)
class _BatchContext:
    values: dict[str, object]  # no None: a null in the batch's context just means "not set"
    notes: list[CoercionNote]


def _batch_context(raw: object) -> _BatchContext:
    try:
        values, notes = check_context(raw)
    except ContextInvalid as exc:
        raise BatchInvalid(f"invalid batch: {exc}") from None
    return _BatchContext(
        {k: v for k, v in values.items() if v is not None},
        [CoercionNote(key, note) for key, note in notes],
    )


def _event_extra(
    raw: Mapping[Any, Any], event: EventView, data: dict[Any, Any], context: _BatchContext
) -> tuple[dict[str, object], list[CoercionNote]]:
    """System properties (batch's, overridden by the event's) and built-in data by column."""
    notes = list(context.notes) if context.notes else []
    own = raw.get("context")
    if own is None:
        extra = dict(context.values)
    else:
        try:
            values, own_notes = check_context(own)
        except ContextInvalid as exc:
            raise _Refused("invalid_context", str(exc)) from None
        extra = merge_context(context.values, values)
        if own_notes:
            notes.extend(CoercionNote(key, note) for key, note in own_notes)
    if event.id < 0:
        values_b, data_notes = builtin_data(event.name, data)
        extra.update(values_b)
        notes.extend(CoercionNote(key, note) for key, note in data_notes)
    return extra, notes


def _check_event(
    raw: Mapping[Any, Any],
    uid: str,
    index: int,
    config: RuntimeConfigView,
    received_at_ms: int,
    skew_ms: int | None,
    context: _BatchContext,
) -> CheckedEvent:
    """The checks run in this order, so an event wrong in several ways is refused for the
    first: event, data, context, ts, page, trigger, action. A custom event's fields are
    coerced while its data keys are checked (coercion never refuses an event, so the first
    refusal is the same); the notes come out in the same order as ever (context first)."""
    event = _lookup_event(raw.get("event"), config)
    if event.id < 0:
        return _check_builtin(raw, uid, index, event, received_at_ms, skew_ms, context)
    data = raw.get("data")
    if data is None:
        values: dict[str, int | str | float | bool] = {}
        notes: list[CoercionNote] = []
    elif isinstance(data, dict):
        types = event.types
        if types is None:
            field_types = config.field_types
            types = {n: field_types[n] for n in event.fields if n in field_types}
        values, notes = _field_values(data, event, types)
    else:
        raise _Refused("invalid_data", "invalid data: expected an object")
    if raw.get("context") is None and not context.notes:  # the common case: batch context only
        extra: dict[str, object] = dict(context.values)
    else:
        extra, extra_notes = _event_extra(raw, event, {}, context)
        if extra_notes:
            notes = extra_notes + notes
    raw_ts = raw.get("ts")
    if type(raw_ts) is int:
        ts: int | None = raw_ts
    else:
        ts = _event_ts(raw_ts)
    page, trigger, action = _event_origin(raw)
    if ts is not None and skew_ms is not None:
        corrected = ts + skew_ms
        if MIN_EVENT_TIME_MS <= corrected <= received_at_ms + DAY_MS:
            return CheckedEvent(
                uid, event.name, event.id, corrected, False, page, trigger, action, values,
                notes, index, extra,
            )  # fmt: skip
    return CheckedEvent(
        uid, event.name, event.id, received_at_ms, True, page, trigger, action, values,
        notes, index, extra,
    )  # fmt: skip


def _check_builtin(
    raw: Mapping[Any, Any],
    uid: str,
    index: int,
    event: EventView,
    received_at_ms: int,
    skew_ms: int | None,
    context: _BatchContext,
) -> CheckedEvent:
    """A built-in event (``$launch``...): its data go to their own columns."""
    data = _builtin_data(raw.get("data"))
    extra, notes = _event_extra(raw, event, data, context)
    ts = _event_ts(raw.get("ts"))
    page, trigger, action = _event_origin(raw)
    ts_ms, time_estimated = _event_time(ts, skew_ms, received_at_ms)
    return CheckedEvent(
        uid, event.name, event.id, ts_ms, time_estimated, page, trigger, action, {}, notes,
        index, extra,
    )  # fmt: skip


def _builtin_data(data: object) -> dict[Any, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _Refused("invalid_data", "invalid data: expected an object")
    return data


def _event_ts(raw_ts: object) -> int | None:
    """The client time in ms, or ``None`` when not given; refused when not a finite number."""
    ts = _finite_ms(raw_ts)
    if raw_ts is not None and ts is None:
        raise _Refused(
            "invalid_ts", "invalid ts: expected a number of milliseconds since the epoch"
        )
    return ts


def _event_origin(raw: Mapping[Any, Any]) -> tuple[str | None, str | None, str | None]:
    """``(page, trigger, action)`` of a codeless event, each checked (``None`` when absent)."""
    page = raw.get("page")
    trigger = raw.get("trigger")
    action = raw.get("action")
    if page is None and trigger is None and action is None:  # an API event
        return None, None, None
    if page is not None and (not isinstance(page, str) or len(page) > MAX_PAGE_LENGTH):
        raise _Refused(
            "invalid_page",
            f"invalid page: expected a string of at most {MAX_PAGE_LENGTH} characters",
        )
    if trigger is not None and (not isinstance(trigger, str) or trigger not in TRIGGERS):
        raise _Refused("invalid_trigger", f"invalid trigger {_show(trigger)}")
    if action is not None and (not isinstance(action, str) or action not in ACTION_KINDS):
        raise _Refused("invalid_action", f"invalid action {_show(action)}")
    return page, trigger, action


def _event_time(ts: int | None, skew_ms: int | None, received_at_ms: int) -> tuple[int, bool]:
    """``(ts_ms, time_estimated)``: the client time corrected by the batch's clock skew when
    both are known and the result is plausible; the arrival time otherwise."""
    if ts is not None and skew_ms is not None:
        corrected = ts + skew_ms
        if MIN_EVENT_TIME_MS <= corrected <= received_at_ms + DAY_MS:
            return corrected, False
    return received_at_ms, True


def _field_values(
    data: dict[Any, Any], event: EventView, types: Mapping[str, FieldType]
) -> tuple[dict[str, int | str | float | bool], list[CoercionNote]]:
    """Each field's value coerced to its type, and a note for each value changed or dropped;
    refused (``unknown_field``) at the first key that is not a field of the event."""
    values: dict[str, int | str | float | bool] = {}
    notes: list[CoercionNote] = []
    for key, value in data.items():
        field_type = types.get(key)
        if field_type is None or (type(key) is not str and not isinstance(key, str)):
            raise _Refused(
                "unknown_field", f"unknown field {_show(key)} for event {_show(event.name)}"
            )
        # fast paths for values stored as they came (the same result as coerce(), no note)
        kind = type(value)
        if field_type == "int":
            if kind is int and INT_MIN <= value <= INT_MAX:
                values[key] = value
                continue
        elif (
            field_type == "string"
            and kind is str
            and len(value) <= MAX_STRING_LENGTH
            and (value.isascii() or _SURROGATE_RE.search(value) is None)
        ):
            values[key] = value
            continue
        coerced = coerce(value, field_type)
        if coerced.value is not None:
            values[key] = coerced.value
        if coerced.note is not None:
            notes.append(CoercionNote(key, coerced.note))
    return values, notes


# refusals a past version may lift: an event or a field the version in force does not have
PAST_CODES: Final = frozenset({"unknown_event", "unknown_field"})
# how long after a version is replaced events recorded under it are still checked against it:
# a device offline for a week keeps what it recorded; what an admin dropped (a field that
# collected too much, say) is not taken from anyone for longer, whatever a client claims
PAST_VERSION_DAYS: Final = 7


def _check_past(
    raw: Mapping[Any, Any],
    uid: str,
    index: int,
    history: ConfigHistory,
    received_at_ms: int,
    skew_ms: int | None,
    context: _BatchContext,
) -> CheckedEvent | None:
    """An event the version in force refused, checked against the past version it was
    recorded under; ``None`` when there is none, or that one refuses it too."""
    ts = _finite_ms(raw.get("ts"))
    at_ms, estimated = _event_time(ts, skew_ms, received_at_ms)
    view = history.recorded_under(raw, None if estimated else at_ms)
    if view is None:
        return None
    try:
        return _check_event(raw, uid, index, view, received_at_ms, skew_ms, context)
    except _Refused:
        return None


def check_batch(
    batch: object,
    *,
    config: RuntimeConfigView,
    received_at_ms: int,
    max_batch: int = 1000,
    history: ConfigHistory | None = None,
) -> BatchVerdict:
    """Judge one batch (see the module docs for every rule; ``history``: the app's past
    published versions, for events recorded under one of them).

    ``len(accepted) + len(rejected) + duplicates_in_batch == len(batch["events"])``.
    """
    if not isinstance(batch, dict):
        raise BatchInvalid("invalid batch: expected an object")
    if "events" not in batch:
        raise BatchInvalid("invalid batch: missing 'events'")
    events = batch["events"]
    if not isinstance(events, list):
        raise BatchInvalid("invalid batch: 'events' must be a list")
    if len(events) > max_batch:
        raise BatchInvalid(f"too many events: {len(events)} (at most {max_batch} per batch)")

    context = _batch_context(batch.get("context"))
    sent_at = _finite_ms(batch.get("sent_at"))
    skew_ms = None if sent_at is None else received_at_ms - sent_at

    accepted: list[CheckedEvent] = []
    rejected: list[Rejection] = []
    seen: set[str] = set()
    duplicates = 0
    for index, raw in enumerate(events):
        if not isinstance(raw, dict):
            rejected.append(
                Rejection(index, None, "invalid event entry: expected an object", "not_object")
            )
            continue
        raw_id = raw.get("id")
        if type(raw_id) is str and 0 < len(raw_id) <= MAX_ID_LENGTH and raw_id.isascii():
            uid: str | None = raw_id  # the common case of _valid_id
        else:
            uid = _valid_id(raw_id)
        if uid is None:
            if raw_id is None:
                rejected.append(Rejection(index, None, "missing id", "missing_id"))
            else:
                rejected.append(
                    Rejection(
                        index,
                        None,
                        f"invalid id: expected a string of 1 to {MAX_ID_LENGTH} characters",
                        "invalid_id",
                    )
                )
            continue
        if uid in seen:
            duplicates += 1
            continue
        try:
            checked = _check_event(raw, uid, index, config, received_at_ms, skew_ms, context)
        except _Refused as refused:
            past = None
            if history is not None and refused.code in PAST_CODES:
                past = _check_past(raw, uid, index, history, received_at_ms, skew_ms, context)
            if past is None:
                rejected.append(Rejection(index, uid, refused.reason, refused.code))
                continue
            checked = past
        seen.add(uid)
        accepted.append(checked)
    return BatchVerdict(accepted, rejected, duplicates)
