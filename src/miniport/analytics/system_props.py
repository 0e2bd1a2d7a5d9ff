"""System properties and built-in events (pure: no I/O).

The runtimes send, with no code from the developer:

* **system properties**, ``$``-named, in a batch's ``"context"`` (for all its events) and an
  event's own ``"context"`` (its keys override the batch's; a ``null`` there removes the
  batch's value for that event);
* **built-in events** ``$launch``, ``$show``, ``$hide``, ``$pageview``, ``$pageleave`` whose
  ``data`` keys are ``path``, ``query``, ``referrer``, ``duration_ms`` and ``cold``.

They need no definition and take no field slot: each has its own column in the event store
(:data:`EXTRA_COLUMNS`), and reports name them with a ``$`` (``--group-by '$platform'``,
``--filter '$scene=1001'``, ``avg:$duration_ms``); :data:`DIMENSIONS` maps those names.

Rules for a context value (a bad value never refuses the event; each change is a note
``"<code>: <text>"`` on the event, shown in the test view, like field coercions):

================ ============ ====================================================== ========
property         column       accepted                                               else
================ ============ ====================================================== ========
``$platform``    sys_platform ios, android, windows, mac, devtools, web (any case,     dropped
                              stored lowercase)
``$env``         sys_env      develop, trial, release (any case, stored lowercase)   dropped
``$scene``       sys_scene    an integer 1..2147483647 (or a numeric string/float,   dropped
                              truncated, with a note)
``$screen``      sys_screen   ``WxH`` (``393x852``; ``×``/``X``/``*`` normalised)   dropped
other strings    sys_<name>   a string (numbers and bools become text, with a note);  --
                              cut to :data:`MAX_PROPERTY_LENGTH` characters
``$new_user``    sys_new_user never taken from the client (ignored, noted): the platform
                              derives it (see :func:`is_new_user`)
================ ============ ====================================================== ========

An unknown key (``$foo``, ``foo``) is ignored with an ``unknown_property`` note (the first
:data:`MAX_UNKNOWN_NOTED` by name, the rest counted in one more note). A context
that is not an object is an error: for the batch's, the whole batch (``BatchInvalid``); for an
event's, that event (``invalid_context``).

Built-in event data: the keys that apply to the event (``$launch``: cold, path, query;
``$pageview``: path, query, referrer; ``$pageleave``: path, duration_ms; ``$show``/``$hide``:
none) are stored; ``path``/``query``/``referrer`` as strings of at most 255 characters,
``duration_ms`` as a whole number of at most a year (:data:`MAX_DURATION_MS`), ``cold`` as a
bool (``0``/``1`` accepted with a note). A key that does not apply, or is unknown, is ignored
with a note (runtimes may send more later); ``data`` that is not an object refuses the
event, as for custom events.

``$new_user`` is true for the events of a user's first day for the app: the UTC day (days
since 1970-01-01) on which the platform first stored an event of that user, kept per app and
never moved. UTC, not the report's time zone: a stored flag cannot follow every report's
zone, and UTC is the one day every node agrees on. An event dated before that first day (a
late offline report) counts as new too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from ..domain.shown import short_repr as _show  # a value in a note
from .coercion import coerce

__all__ = [
    "BUILTIN_EVENTS",
    "COLUMN_NAMES",
    "DIMENSIONS",
    "EXTRA_COLUMNS",
    "MAX_PROPERTY_LENGTH",
    "MAX_UNKNOWN_NOTED",
    "NEW_USER_COLUMN",
    "SYSTEM_PROPERTIES",
    "ColumnKind",
    "ContextInvalid",
    "Dimension",
    "builtin_data",
    "check_context",
    "is_new_user",
    "merge_context",
    "utc_day",
]

ColumnKind = Literal["string", "int", "bigint", "bool"]
MAX_PROPERTY_LENGTH: Final = 128
MAX_UNKNOWN_NOTED: Final = 10  # unknown context keys noted one by one; the rest in one note
MAX_DATA_STRING: Final = 255
DAY_MS: Final = 86_400_000
# a page open for a year at most: longer is not a measurement. The bound keeps every sum exact
# on ClickHouse, whose sum() of a 64-bit column wraps past 2^63: 292 million such events in one
# report row before it could (DuckDB sums in 128 bits; the two stores must give the same rows)
MAX_DURATION_MS: Final = 365 * DAY_MS
_INT32_MAX: Final = 2**31 - 1
_SCREEN_RE: Final = re.compile(r"\s*([0-9]{1,5})\s*[x×X*]\s*([0-9]{1,5})\s*")

PLATFORMS: Final = frozenset({"ios", "android", "windows", "mac", "devtools", "web"})
ENVS: Final = frozenset({"develop", "trial", "release"})


@dataclass(frozen=True, slots=True)
class Dimension:
    """A ``$`` name usable in reports: its column and the column's kind."""

    name: str
    column: str
    kind: ColumnKind

    @property
    def sql_type(self) -> str:
        return {"string": "VARCHAR", "int": "INTEGER", "bigint": "BIGINT", "bool": "BOOLEAN"}[
            self.kind
        ]


def _props() -> dict[str, Dimension]:
    out: dict[str, Dimension] = {}
    for name in (
        "platform",
        "os_version",
        "brand",
        "model",
        "host_version",
        "mp_version",
        "env",
        "sdk_version",
        "network",
        "language",
        "screen",
        "session",
    ):
        out[f"${name}"] = Dimension(f"${name}", f"sys_{name}", "string")
    out["$scene"] = Dimension("$scene", "sys_scene", "int")
    out["$new_user"] = Dimension("$new_user", "sys_new_user", "bool")
    return out


SYSTEM_PROPERTIES: Final[Mapping[str, Dimension]] = MappingProxyType(_props())
"""System properties by ``$`` name (``$new_user`` included: derived, never sent)."""
NEW_USER_COLUMN: Final = "sys_new_user"

_DATA: Final[Mapping[str, Dimension]] = MappingProxyType(
    {
        "path": Dimension("$path", "ev_path", "string"),
        "query": Dimension("$query", "ev_query", "string"),
        "referrer": Dimension("$referrer", "ev_referrer", "string"),
        "duration_ms": Dimension("$duration_ms", "ev_duration_ms", "bigint"),
        "cold": Dimension("$cold", "ev_cold", "bool"),
    }
)
BUILTIN_EVENTS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "$launch": ("cold", "path", "query"),
        "$show": (),
        "$hide": (),
        "$pageview": ("path", "query", "referrer"),
        "$pageleave": ("path", "duration_ms"),
    }
)
"""Built-in event name -> the ``data`` keys it takes."""

DIMENSIONS: Final[Mapping[str, Dimension]] = MappingProxyType(
    {**SYSTEM_PROPERTIES, **{d.name: d for d in _DATA.values()}}
)
"""Every ``$`` name a report may group by, filter on (or, for numbers, take metrics of)."""

COLUMN_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {d.column: d.name for d in DIMENSIONS.values()}
)
"""Column -> its ``$`` name in reports (``sys_platform`` -> ``$platform``)."""

EXTRA_COLUMNS: Final[Mapping[str, ColumnKind]] = MappingProxyType(
    {d.column: d.kind for d in DIMENSIONS.values()}
)
"""Event-store columns besides the core and slot columns, in a fixed order."""

Note = tuple[str, str]
"""``(key, "<code>: <text>")``."""


class ContextInvalid(ValueError):
    """A context that is not an object."""


def _enum(name: str, value: object, allowed: frozenset[str]) -> tuple[str | None, str | None]:
    if isinstance(value, str):
        low = value.strip().lower()
        if low in allowed:
            note = None if low == value else f"normalized: {_show(value)} -> {low!r}"
            return low, note
    choices = ", ".join(sorted(allowed))
    return None, f"invalid_value: {_show(value)} is not one of {choices}; dropped"


def _scene(value: object) -> tuple[int | None, str | None]:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= _INT32_MAX:
        return value, None
    if isinstance(value, bool | int | float | str):
        coerced = coerce(value, "int")
        number = coerced.value
        if (
            not isinstance(value, bool)
            and isinstance(number, int)
            and 1 <= number <= _INT32_MAX
            and coerced.code != "not_a_number"
        ):
            return number, coerced.note
    return None, f"invalid_value: {_show(value)} is not a scene number (1..{_INT32_MAX}); dropped"


def _screen(value: object) -> tuple[str | None, str | None]:
    if isinstance(value, str):
        found = _SCREEN_RE.fullmatch(value)
        if found is not None:
            text = f"{int(found.group(1))}x{int(found.group(2))}"
            return text, None if text == value else f"normalized: {_show(value)} -> {text!r}"
    return None, f"invalid_value: {_show(value)} is not WIDTHxHEIGHT (e.g. 393x852); dropped"


def _text(value: object, limit: int) -> tuple[str | None, str | None]:
    if type(value) is str and len(value) <= limit and value.isascii():
        return value, None
    if not isinstance(value, str | int | float | bool):
        return None, f"invalid_value: {_show(value)} is not text; dropped"
    coerced = coerce(value, "string")
    text = coerced.value
    assert isinstance(text, str)
    note = coerced.note
    if len(text) > limit:
        text = text[:limit]
        note = f"truncated: cut to {limit} characters"
    return text, note


def _property(name: str, value: object) -> tuple[object, str | None]:
    if name == "$platform":
        return _enum(name, value, PLATFORMS)
    if name == "$env":
        return _enum(name, value, ENVS)
    if name == "$scene":
        return _scene(value)
    if name == "$screen":
        return _screen(value)
    return _text(value, MAX_PROPERTY_LENGTH)


def check_context(raw: object) -> tuple[dict[str, object | None], list[Note]]:
    """A context object -> (column -> value, notes). A ``None`` value means "unset" (the
    key was ``null``: an event's context removes the batch's value with it).
    ``ContextInvalid`` when ``raw`` is not an object; ``None`` is an empty context."""
    if raw is None:
        return {}, []
    if not isinstance(raw, dict):
        raise ContextInvalid("invalid context: expected an object of $-named properties")
    values: dict[str, object | None] = {}
    notes: list[Note] = []
    unknown: list[str] = []
    for key, value in raw.items():
        spec = SYSTEM_PROPERTIES.get(key) if isinstance(key, str) else None
        if spec is None:
            unknown.append(str(key))
            continue
        if spec.column == NEW_USER_COLUMN:
            notes.append((key, "derived: $new_user is set by the platform; ignored"))
            continue
        if value is None:
            values[spec.column] = None
            continue
        stored, note = _property(key, value)
        if stored is not None:
            values[spec.column] = stored
        if note is not None:
            notes.append((key, note))
    if unknown:
        notes.extend(_unknown_notes(unknown))
    return values, notes


def _unknown_notes(keys: list[str]) -> list[Note]:
    """A note for each of the first MAX_UNKNOWN_NOTED unknown keys and one counting the rest:
    a batch's notes are copied to each of its events, so their number must not grow with the
    body (20,000 keys made 20 million notes for 1,000 events)."""
    notes = [
        (key, f"unknown_property: {_show(key)} is not a system property; ignored")
        for key in keys[:MAX_UNKNOWN_NOTED]
    ]
    rest = len(keys) - MAX_UNKNOWN_NOTED
    if rest > 0:
        first = keys[MAX_UNKNOWN_NOTED]
        notes.append(
            (first, f"unknown_property: {rest} more keys (from {_show(first)}) are not system"
             " properties; ignored")
        )
    return notes


def merge_context(
    batch: Mapping[str, object | None], event: Mapping[str, object | None]
) -> dict[str, object]:
    """The event's columns: the batch's values overridden by the event's (``None``: unset)."""
    merged = {**batch, **event} if event else dict(batch)
    if None in merged.values():
        return {k: v for k, v in merged.items() if v is not None}
    return merged  # no None left


def _data_value(key: str, value: object) -> tuple[object, str | None]:
    if key == "duration_ms":
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and 0 <= value <= MAX_DURATION_MS  # first: isfinite() of a 400-digit int overflows
            and math.isfinite(value)
        ):
            whole = math.trunc(value)
            return whole, None if whole == value else f"truncated: {value!r} -> {whole}"
        return None, (
            f"invalid_value: {_show(value)} is not a duration in ms (0 to {MAX_DURATION_MS:,},"
            " a year); dropped"
        )
    if key == "cold":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value), f"to_bool: {value!r} -> {bool(value)}"
        return None, f"invalid_value: {_show(value)} is not true or false; dropped"
    if value is None:
        return None, None
    return _text(value, MAX_DATA_STRING)


def builtin_data(event: str, data: Mapping[object, object]) -> tuple[dict[str, object], list[Note]]:
    """A built-in event's ``data`` -> (column -> value, notes) (``event`` must be built-in)."""
    takes = BUILTIN_EVENTS[event]
    values: dict[str, object] = {}
    notes: list[Note] = []
    for key, value in data.items():
        if not isinstance(key, str) or key not in takes:
            what = "unknown" if key not in _DATA else f"not taken by {event}"
            notes.append((str(key), f"ignored: data key {_show(key)} is {what}"))
            continue
        stored, note = _data_value(key, value)
        if stored is not None:
            values[_DATA[key].column] = stored
        if note is not None:
            notes.append((key, note))
    return values, notes


def utc_day(ts_ms: int) -> int:
    """Days since 1970-01-01 (UTC) of a time in ms."""
    return ts_ms // DAY_MS


def is_new_user(ts_ms: int, first_day: int) -> bool:
    """``$new_user`` of an event at ``ts_ms`` of a user first seen on UTC day ``first_day``."""
    return utc_day(ts_ms) <= first_day
