"""Changing a published field's type ("retype"): the field's slot history and how reports
read across the change (pure domain rules: no I/O, no clock).

The model
---------
A field is stored in one slot column of its type (``i3``, ``s0``...; see
:func:`miniport.analytics.definitions.slot_column`). Retyping a published field never rewrites
an event: the change is a *draft* (``pending``) until the definitions are published; the publish
starts a new **part** of the field's history, with the new type and a slot of that type. Events
accepted from then on are written to the new slot; the events already stored keep their values
in the old slot. A field's :class:`FieldHistory` is its parts, oldest first, each with the
publish (time ``since_ms`` and ``version``) that started it; the last part is the current one.

Rules
-----
* **Slots of earlier parts stay the field's own**: no other field is given a slot that any
  part of another field's history holds (:func:`taken_slots`), so each stored value is in
  exactly one of its field's columns, whenever and under whichever configuration (published
  or a live test of the draft) it was accepted. Reading a field is therefore the
  ``COALESCE`` of its columns — no time boundary is needed, and an event whose client clock
  says "before the change" but that was accepted after it is read correctly.
* **Back to a type the field had before reuses that type's old slot** (it is still the
  field's own): ``price`` int ``i0`` -> string ``s2`` -> int again writes ``i0`` again. No
  slot is spent and the old int values and the new ones are one column.
* **A retype is refused** (:class:`RetypeError`, with a message saying why) for a name that
  starts with ``$`` (system properties and built-in event data are not fields), an unknown
  field, an unknown type, the field's current type with no change pending ("same type"), the
  type already pending, or when every slot of the new type is held.
* **Twice before publish**: the draft holds one change per field. Retyping again to another
  type replaces the pending change (its slot is free again); retyping back to the published
  type cancels the pending change. A field that was never published is simply redefined
  (it has no stored values): no history part is made. A slot given out fresh is emptied in
  the event store of the values received before (a live test may have written some there
  under a change since cancelled: they are nobody's), and a running live test whose draft
  no longer fits the slots goes on with the draft as it is now (the services do both).
* **One owner per slot, whoever asks at the same moment**: the services choose and write a
  slot with the app's fields locked in the state database (see
  ``AnalyticsDefsStore.change_slots``).

How reports read a retyped field (:func:`reading`)
--------------------------------------------------
Every report reads a field **as its current type**. Each earlier part is either:

* ``converted`` — its type converts exactly to the current type: ``bool`` -> ``int``
  (false 0, true 1), ``bool`` -> ``float``, ``bool`` -> ``string`` (``"true"``/``"false"``),
  ``int`` -> ``float`` (int fields are 32-bit: every value is an exact double), ``int`` ->
  ``string`` (decimal digits). Its values join the current ones: group-bys show them as
  values of the current type, filters and metrics see them;
* ``apart`` — any other pair (``string`` -> anything, ``float`` -> ``int``/``string``/``bool``,
  anything -> ``bool``...): converting would lose or invent information, so its values are
  **kept apart**. An event analysis group-by shows them in rows of their own, with their old
  type's value and ``"<field>@type": "<old type>"``; a filter on the field never matches them
  (like an event without the field); a metric (``sum``, ``avg``...) does not count them. CSV
  export gives them their own column ``<field>@<type>``; a user's event lookup shows the
  value as stored. Funnels and retention group by one value per user: there, an apart part's
  events are in the ``null`` group.

Every report that reads a retyped field says so: its JSON carries ``field_types``
(:func:`describe`): for each retyped field read, its current type and each part with its type,
column, accepted time range (``from_ms``/``to_ms``, ``null`` for open ends), the publish
version that started it and how the report read it, plus notes for the metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, cast

__all__ = [
    "EXACT_CONVERSIONS",
    "FIELD_TYPES",
    "MAX_SLOTS",
    "FieldHistory",
    "FieldPart",
    "FieldType",
    "ReadMode",
    "RetypeError",
    "RetypePlan",
    "SlotMap",
    "converts",
    "describe",
    "plan_retype",
    "publish_part",
    "read_columns",
    "reading",
    "taken_slots",
    "value_type",
]

FieldType = Literal["int", "string", "float", "bool"]
ReadMode = Literal["current", "converted", "apart"]
FIELD_TYPES: Final[tuple[FieldType, ...]] = ("int", "string", "float", "bool")
MAX_SLOTS: Final = 32
_PREFIX: Final = {"int": "i", "string": "s", "float": "f", "bool": "b"}

EXACT_CONVERSIONS: Final[frozenset[tuple[str, str]]] = frozenset(
    {
        ("bool", "int"),
        ("bool", "float"),
        ("bool", "string"),
        ("int", "float"),
        ("int", "string"),
    }
)
"""``(from, to)`` type pairs whose every value converts exactly (see the module docs)."""


class RetypeError(ValueError):
    """A retype that makes no sense; ``code`` is a stable word for clients."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def converts(from_type: str, to_type: str) -> bool:
    """Whether every value of ``from_type`` converts exactly to ``to_type``."""
    return (from_type, to_type) in EXACT_CONVERSIONS


def column_of(field_type: str, slot: int) -> str:
    return f"{_PREFIX[field_type]}{slot}"


@dataclass(frozen=True, slots=True)
class FieldPart:
    """One part of a field's history: its type and slot from ``since_ms`` (the publish that
    started it; ``None``: since the field was defined), published as ``version``."""

    type: FieldType
    slot: int
    since_ms: int | None = None
    version: int | None = None

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"unknown field type {self.type!r}")
        if isinstance(self.slot, bool) or not 0 <= self.slot < MAX_SLOTS:
            raise ValueError(f"slot {self.slot!r} is outside 0..{MAX_SLOTS - 1}")

    @property
    def column(self) -> str:
        return column_of(self.type, self.slot)


@dataclass(frozen=True, slots=True)
class FieldHistory:
    """A field's parts, oldest first (the last is the current type and slot)."""

    name: str
    parts: tuple[FieldPart, ...]

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError(f"field {self.name!r} has no part")
        starts = [p.since_ms for p in self.parts[1:]]
        if any(s is None for s in starts) or starts != sorted(cast(list[int], starts)):
            raise ValueError(f"field {self.name!r}: later parts need increasing since_ms")
        slots: dict[str, int] = {}
        for part in self.parts:
            if slots.setdefault(part.type, part.slot) != part.slot:
                raise ValueError(f"field {self.name!r} has two {part.type} slots")

    @classmethod
    def single(cls, name: str, field_type: FieldType, slot: int) -> FieldHistory:
        return cls(name, (FieldPart(field_type, slot),))

    @property
    def current(self) -> FieldPart:
        return self.parts[-1]

    @property
    def retyped(self) -> bool:
        return len(self.parts) > 1

    def slot_of(self, field_type: str) -> int | None:
        """The field's slot of ``field_type`` if any part had that type."""
        return next((p.slot for p in self.parts if p.type == field_type), None)

    def ranges(self) -> list[tuple[FieldPart, int | None, int | None]]:
        """``(part, from_ms, to_ms)`` of each part: accepted in ``[from_ms, to_ms)``."""
        out = []
        for i, part in enumerate(self.parts):
            end = self.parts[i + 1].since_ms if i + 1 < len(self.parts) else None
            out.append((part, part.since_ms, end))
        return out


class SlotMap(dict[str, tuple[FieldType, int]]):
    """An app's fields as the report compiler takes them (name -> current (type, slot)), with
    the history of each retyped field in ``history`` (name -> :class:`FieldHistory`)."""

    def __init__(
        self,
        current: Mapping[str, tuple[FieldType, int]] | Iterable[tuple[str, tuple[FieldType, int]]],
        history: Mapping[str, FieldHistory] | None = None,
    ) -> None:
        super().__init__(current)
        self.history: dict[str, FieldHistory] = dict(history or {})


@dataclass(frozen=True, slots=True)
class PartReading:
    part: FieldPart
    from_ms: int | None
    to_ms: int | None
    mode: ReadMode


def reading(history: FieldHistory) -> list[PartReading]:
    """How a report reads each part of ``history`` (as its current type; module docs)."""
    now = history.current.type
    out = []
    for part, start, end in history.ranges():
        mode: ReadMode = (
            "current" if part.type == now else "converted" if converts(part.type, now) else "apart"
        )
        out.append(PartReading(part, start, end, mode))
    return out


Columns = list[tuple[str, FieldType]]


def read_columns(history: FieldHistory) -> tuple[Columns, Columns]:
    """``(joined, apart)``: the distinct columns read as the current type (the current column
    first, then converted ones, newest first) and the columns kept apart (newest first), each
    with its type."""
    joined: Columns = [(history.current.column, history.current.type)]
    apart: Columns = []
    for r in reversed(reading(history)):
        item = (r.part.column, r.part.type)
        target = apart if r.mode == "apart" else joined
        if item not in joined and item not in apart:
            target.append(item)
    return joined, apart


# --------------------------------------------------------------------------- retype rules


@dataclass(frozen=True, slots=True)
class RetypePlan:
    """What a retype request does to the draft: ``set`` a pending change (type, slot) or
    ``cancel`` the pending one."""

    action: Literal["set", "cancel"]
    name: str
    type: FieldType
    slot: int
    reused: bool = False  # the slot is one the field had before (back to an old type)


def taken_slots(
    histories: Iterable[FieldHistory], pending: Mapping[str, tuple[str, int]]
) -> dict[str, dict[int, str]]:
    """Every slot held, per type: slot -> field name (current, earlier parts and pending
    changes). A new field or a retype must take another one."""
    taken: dict[str, dict[int, str]] = {t: {} for t in FIELD_TYPES}
    for h in histories:
        for part in h.parts:
            taken[part.type].setdefault(part.slot, h.name)
    for name, (ftype, slot) in pending.items():
        taken[ftype].setdefault(slot, name)
    return taken


def plan_retype(
    name: str,
    new_type: str,
    *,
    histories: Mapping[str, FieldHistory],
    published: Mapping[str, bool],
    pending: Mapping[str, tuple[str, int]],
) -> RetypePlan:
    """Check a retype of ``name`` to ``new_type`` against the app's fields (their histories,
    whether each is published, the pending changes) and say what it does. Raises
    :class:`RetypeError` (module docs: when and why)."""
    if not isinstance(name, str) or name.startswith("$"):
        raise RetypeError(
            "system_name",
            f"{name!r} is a system property or built-in name, not a field: "
            "it has no type to change",
        )
    if new_type not in FIELD_TYPES:
        raise RetypeError(
            "unknown_type", f"unknown type {new_type!r}: use {', '.join(FIELD_TYPES)}"
        )
    history = histories.get(name)
    if history is None:
        raise RetypeError("unknown_field", f"field {name!r} is not defined")
    ftype: FieldType = new_type
    current = history.current
    waiting = pending.get(name)
    if waiting is not None and waiting[0] == ftype:
        raise RetypeError(
            "already_pending",
            f"field {name!r} is already being changed to {ftype} (publish to apply it)",
        )
    if current.type == ftype:
        if waiting is not None:
            return RetypePlan("cancel", name, ftype, current.slot, reused=True)
        raise RetypeError("same_type", f"field {name!r} is already {ftype}")
    own = history.slot_of(ftype) if published.get(name, False) else None
    if own is not None:
        return RetypePlan("set", name, ftype, own, reused=True)
    others = {n: h for n, h in histories.items() if n != name}
    held = taken_slots(others.values(), {n: p for n, p in pending.items() if n != name})[ftype]
    free = next((s for s in range(MAX_SLOTS) if s not in held), None)
    if free is None:
        raise RetypeError(
            "no_free_slot",
            f"no free {ftype} slot for field {name!r}: all {MAX_SLOTS} {ftype} slots are held "
            "(by fields, and by the earlier types of retyped fields)",
        )
    return RetypePlan("set", name, ftype, free)


def publish_part(
    history: FieldHistory, new_type: FieldType, slot: int, *, at_ms: int, version: int
) -> FieldHistory:
    """The history after publishing a pending change: a new part from ``at_ms``."""
    if history.current.type == new_type:
        raise ValueError(f"field {history.name!r} is already {new_type}")
    last = history.parts[-1].since_ms
    if last is not None and at_ms <= last:
        raise ValueError(f"field {history.name!r}: a publish at {at_ms} is not after {last}")
    return FieldHistory(history.name, (*history.parts, FieldPart(new_type, slot, at_ms, version)))


def value_type(value: object) -> FieldType:
    """The field type of a value already coerced for a field (bool before int)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    raise TypeError(f"not a field value: {type(value).__name__}")


# --------------------------------------------------------------------------- report notes


def describe(history: FieldHistory, metrics: Sequence[str] = ()) -> dict[str, object]:
    """The ``field_types`` entry of one retyped field a report read: ``{"type", "parts":
    [{"type", "column", "from_ms", "to_ms", "version", "read"}], "notes": [...]}``."""
    readings = reading(history)
    parts = [
        {
            "type": r.part.type,
            "column": r.part.column,
            "from_ms": r.from_ms,
            "to_ms": r.to_ms,
            "version": r.part.version,
            "read": r.mode,
        }
        for r in readings
    ]
    notes: list[str] = []
    now = history.current.type
    apart = [r for r in readings if r.mode == "apart"]
    for r in readings:
        if r.mode == "converted":
            notes.append(f"{_span(r)}: {r.part.type} values read as {now}")
    for r in apart:
        notes.append(
            f"{_span(r)}: {r.part.type} values kept apart (no exact conversion to {now}): "
            "own group-by rows, not matched by filters"
        )
    for metric in metrics:
        if apart:
            kinds = ", ".join(sorted({r.part.type for r in apart}))
            notes.append(f"{metric} counts only the {now} values; the {kinds} part is left out")
    return {"type": now, "parts": parts, "notes": notes}


def _span(r: PartReading) -> str:
    start = "the start" if r.from_ms is None else _iso(r.from_ms)
    end = "now" if r.to_ms is None else _iso(r.to_ms)
    return f"accepted from {start} to {end}"


def _iso(ms: int) -> str:
    return (
        (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
