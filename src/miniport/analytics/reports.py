"""Report query model and SQL building for the analytics event store (pure: no I/O).

Two report kinds, both over one app's events in ``[from_ms, to_ms)`` and never before
``not_before_ms`` (the retention cut-off, so a report cannot count events that the retention
job has not deleted yet):

* **Event analysis** (:class:`EventQuery`) of ONE event: 1..5 metrics, 0..5 group-bys, 0..5
  filters combined all-AND or all-OR, bucketed by ``hour``, ``day`` (in an IANA time zone) or
  ``all``.
* **Funnel** (:class:`FunnelQuery`): 2..10 steps, each an event with its own filters (AND),
  a conversion window, strict or any order, at most one group-by taken from the user's first
  step-1 event. See :func:`compile_funnel` for the exact rules.

Strings from the console/API are parsed with :func:`parse_metric` and :func:`parse_filter`
(``ReportQueryError`` on anything malformed). SQL is built by :func:`compile_event_analysis`,
:func:`compile_funnel` and :func:`compile_export`, which check every field against the app's
:data:`FieldSlots` (name -> (type, slot)); identifiers in the SQL come only from that mapping
(``i0..i31``, ``s0..s31``) or from this module's own constants, and every value (appid, event
names, filter values, times, offsets) is a query parameter. The generated SQL is DuckDB SQL
over the table layout described in :mod:`miniport.analytics.event_store`, or, with
``dialect=CLICKHOUSE``, ClickHouse SQL over :mod:`miniport.analytics.clickhouse_store`'s
(the differences live in :mod:`miniport.analytics.sql_dialects`).

Semantics shared with the pure-Python reference in the tests:

* a filter only matches events that HAVE a value for the field (``color!=blue`` does not
  match an event without a color), as in SQL;
* ``sum:F`` is 0 and ``per_user:F`` is 0.0 when no event of the group has the field;
  ``max``/``min``/``avg`` are ``None`` then;
* buckets are local wall-clock days/hours: ``"2026-11-01"``, ``"2026-11-01T13:00"`` (the
  repeated hour of a DST fall-back is one bucket), or ``"all"``;
* rows are sorted by bucket, then by group values with ``None`` first.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Final, Literal, cast
from zoneinfo import ZoneInfo

from miniport.domain.shown import short_repr
from miniport.domain.zones import zone
from miniport.errors import ReportQueryError

from .field_history import FieldHistory, read_columns
from .sql_dialects import CLICKHOUSE, DUCKDB, Dialect, clickhouse_funnel
from .system_props import BUILTIN_EVENTS, DIMENSIONS

__all__ = [
    "BUILTIN_DIMENSIONS",
    "CORE_COLUMNS",
    "MAX_FILTERS",
    "MAX_GROUP_BY",
    "MAX_METRICS",
    "MAX_SLOTS",
    "TABLE",
    "CompiledExport",
    "CompiledFunnelScan",
    "CompiledReport",
    "EventQuery",
    "FieldSlots",
    "FieldType",
    "Filter",
    "FilterOp",
    "FunnelOrder",
    "FunnelQuery",
    "FunnelStep",
    "Granularity",
    "Metric",
    "MetricKind",
    "ReportQueryError",
    "compile_event_analysis",
    "compile_export",
    "compile_funnel",
    "compile_funnel_scan",
    "offset_segments",
    "parse_filter",
    "parse_metric",
    "parse_window",
    "slot_column",
]

FieldType = Literal["int", "string", "float", "bool"]
FieldSlots = Mapping[str, tuple[FieldType, int]]
"""An app's fields: name -> (type, slot), the slot being 0..31 within its type."""

Granularity = Literal["hour", "day", "all"]
FilterOp = Literal["=", "!=", ">=", ">", "<=", "<"]
MetricKind = Literal["count", "users", "per_user", "sum", "max", "min", "avg", "distinct"]
FunnelOrder = Literal["strict", "any"]

MAX_METRICS: Final = 5
MAX_GROUP_BY: Final = 5
MAX_FILTERS: Final = 5
MIN_FUNNEL_STEPS: Final = 2
MAX_FUNNEL_STEPS: Final = 10
MAX_SLOTS: Final = 32

TABLE: Final = "events"
CORE_COLUMNS: Final = (
    "appid",
    "uid",
    "event",
    "user_id",
    "ts_ms",
    "received_ms",
    "time_estimated",
    "page",
    "trigger",
    "action",
    "test_id",
    "visible",
)
BUILTIN_DIMENSIONS: Final[Mapping[str, str]] = {"page": "page", "trigger": "trigger"}
"""Group-by / filter names that are not app fields (an app field of the same name wins)."""

_NAME_RE: Final = re.compile(r"\$?[a-z][a-z0-9_]{0,31}")
_FILTER_RE: Final = re.compile(r"\s*(\$?[a-z][a-z0-9_]{0,31})\s*(>=|<=|!=|=|>|<)(.*)", re.DOTALL)
_BOOL_VALUES: Final = {"true": True, "false": False, "1": True, "0": False}
_INT_RE: Final = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SLOT_PREFIX: Final = {"int": "i", "string": "s", "float": "f", "bool": "b"}
_SLOT_SQL: Final = {"int": "INTEGER", "string": "VARCHAR", "float": "DOUBLE", "bool": "BOOLEAN"}
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_PLAIN_METRICS: Final = frozenset({"count", "users", "per_user"})
_INT_METRICS: Final = frozenset({"sum", "max", "min", "avg", "per_user"})
_STRING_METRICS: Final = frozenset({"distinct"})
_RESERVED_KEYS: Final = frozenset({"bucket", "step", "event", "users", "conversion"})

_MS_PER_HOUR: Final = 3_600_000
_MS_PER_DAY: Final = 86_400_000
DEFAULT_FUNNEL_WINDOW_MS: Final = _MS_PER_DAY
MAX_FUNNEL_WINDOW_MS: Final = 90 * _MS_PER_DAY
_WINDOW_RE: Final = re.compile(r"\s*([0-9]{1,9})\s*([smhdw])\s*")
_WINDOW_UNITS: Final = {
    "s": 1000,
    "m": 60_000,
    "h": _MS_PER_HOUR,
    "d": _MS_PER_DAY,
    "w": 7 * _MS_PER_DAY,
}
_FUNNEL_KEYS: Final = frozenset({"step_conversion", "drop_off", "median_s"})
_SAMPLE_MS: Final = 6 * _MS_PER_HOUR
_MAX_REPORT_MS: Final = 253_402_214_400_000  # 9999-12-31T00:00:00Z
_FIRST_EVENT_MS: Final = 946_684_800_000  # 2000-01-01: ingest_rules.MIN_EVENT_TIME_MS
_LAST_EVENT_MS: Final = 4_102_444_800_000  # 2100-01-01: no event can carry a later time yet
# Bucket numbers are computed as (ts + offset + SHIFT) // width so the integer division
# never sees a negative number (DuckDB's // truncates toward zero); SHIFT is whole days.
_SHIFT_DAYS: Final = 100_000
_EPOCH_DATE: Final = date(1970, 1, 1)
_EPOCH_NAIVE: Final = datetime(1970, 1, 1)  # local wall-clock arithmetic


# --------------------------------------------------------------------------- parsing


def _check_name(name: str, what: str) -> str:
    """A field name, or a ``$`` name (a system property, built-in event data or a built-in
    event): those are checked against their lists when the query is compiled."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ReportQueryError(
            f"{what} {name!r} is not a valid name (lowercase letters, digits and _, "
            "starting with a letter, at most 32 characters; or a $ name such as $platform)"
        )
    return name


def _check_event(name: str) -> str:
    _check_name(name, "event")
    if name.startswith("$") and name not in BUILTIN_EVENTS:
        raise ReportQueryError(
            f"unknown built-in event {name!r} (built-in events: {', '.join(BUILTIN_EVENTS)})"
        )
    return name


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric: ``count``, ``users``, ``per_user`` or ``kind:field``."""

    kind: MetricKind
    field: str | None = None

    @property
    def name(self) -> str:
        """The metric as written, e.g. ``"sum:price"``: the key of its value in report rows."""
        return self.kind if self.field is None else f"{self.kind}:{self.field}"

    def __post_init__(self) -> None:
        if self.field is None:
            if self.kind not in _PLAIN_METRICS:
                raise ReportQueryError(
                    f"metric {self.kind!r} needs a field, e.g. {self.kind}:price"
                )
        else:
            if self.kind not in _INT_METRICS | _STRING_METRICS:
                raise ReportQueryError(
                    f"metric {self.kind!r} does not take a field; field metrics are "
                    "sum, max, min, avg, per_user (int fields) and distinct (string fields)"
                )
            _check_name(self.field, "field")


def parse_metric(text: str) -> Metric:
    """``"count"``, ``"users"``, ``"per_user"``, ``"sum:price"``, ``"distinct:color"``..."""
    if not isinstance(text, str):
        raise ReportQueryError(f"metric must be a string, not {type(text).__name__}")
    raw = text.strip()
    kind, sep, name = raw.partition(":")
    kind = kind.strip()
    known = _PLAIN_METRICS | _INT_METRICS | _STRING_METRICS
    if kind not in known:
        raise ReportQueryError(
            f"unknown metric {text!r}; use count, users, per_user, sum:F, max:F, min:F, avg:F, "
            "per_user:F or distinct:F"
        )
    if not sep:
        return Metric(cast(MetricKind, kind))
    return Metric(cast(MetricKind, kind), _check_name(name.strip(), "field"))


@dataclass(frozen=True, slots=True)
class Filter:
    """``field op value``; the value is kept as text and typed by the field's type later."""

    field: str
    op: FilterOp
    value: str

    def __post_init__(self) -> None:
        _check_name(self.field, "filter field")
        if self.op not in ("=", "!=", ">=", ">", "<=", "<"):
            raise ReportQueryError(f"unknown filter operator {self.op!r}")
        if not isinstance(self.value, str):
            raise ReportQueryError("filter value must be text")

    @property
    def text(self) -> str:
        return f"{self.field}{self.op}{self.value}"


def parse_filter(text: str) -> Filter:
    """``"color=red"``, ``"color!=blue"``, ``"price>=100"``, ``"price>5"``, ``"price<=9"``,
    ``"price<3"``. Spaces around the field, the operator and the value are ignored; the value
    is everything after the operator (it may itself contain ``=``)."""
    if not isinstance(text, str):
        raise ReportQueryError(f"filter must be a string, not {type(text).__name__}")
    match = _FILTER_RE.fullmatch(text)
    if match is None:
        raise ReportQueryError(
            f"filter {text!r} is not of the form FIELD OP VALUE with OP one of =, !=, >=, >, <=, <"
        )
    name, op, value = match.group(1), match.group(2), match.group(3).strip()
    return Filter(name, cast(FilterOp, op), value)


def _as_metric(item: str | Metric) -> Metric:
    return item if isinstance(item, Metric) else parse_metric(item)


def _as_filter(item: str | Filter) -> Filter:
    return item if isinstance(item, Filter) else parse_filter(item)


def _check_window(from_ms: int, to_ms: int, not_before_ms: int) -> None:
    for label, value in (("from_ms", from_ms), ("to_ms", to_ms), ("not_before_ms", not_before_ms)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ReportQueryError(f"{label} must be an integer (ms since the epoch)")
        if not 0 <= value <= _MAX_REPORT_MS:  # past 9999, dates (and time zones) end
            raise ReportQueryError(f"{label} {value} is out of range (up to 9999-12-31)")
    if from_ms >= to_ms:
        raise ReportQueryError("from_ms must be before to_ms")


def _check_filters(filters: Sequence[Filter], where: str) -> None:
    if len(filters) > MAX_FILTERS:
        raise ReportQueryError(f"at most {MAX_FILTERS} filters {where}, got {len(filters)}")


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True, kw_only=True, slots=True)
class EventQuery:
    """Event analysis of one event. Build from strings with :meth:`parse`."""

    event: str
    from_ms: int
    to_ms: int
    not_before_ms: int
    metrics: tuple[Metric, ...]
    group_by: tuple[str, ...] = ()
    filters: tuple[Filter, ...] = ()
    any: bool = False
    granularity: Granularity = "day"
    tz: str = "UTC"

    def __post_init__(self) -> None:
        _check_event(self.event)
        _check_window(self.from_ms, self.to_ms, self.not_before_ms)
        if not 1 <= len(self.metrics) <= MAX_METRICS:
            raise ReportQueryError(f"give 1 to {MAX_METRICS} metrics, got {len(self.metrics)}")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ReportQueryError("a metric is given twice")
        if len(self.group_by) > MAX_GROUP_BY:
            raise ReportQueryError(f"at most {MAX_GROUP_BY} group-bys, got {len(self.group_by)}")
        for name in self.group_by:
            _check_name(name, "group-by")
            if name in names or name in _RESERVED_KEYS:
                raise ReportQueryError(f"group-by {name!r} clashes with a column of the report")
        if len(set(self.group_by)) != len(self.group_by):
            raise ReportQueryError("a group-by is given twice")
        _check_filters(self.filters, "per query")
        if self.granularity not in ("hour", "day", "all"):
            raise ReportQueryError(f"granularity is hour, day or all, not {self.granularity!r}")
        _zone(self.tz)

    @classmethod
    def parse(
        cls,
        *,
        event: str,
        from_ms: int,
        to_ms: int,
        not_before_ms: int,
        metrics: Sequence[str | Metric],
        group_by: Sequence[str] = (),
        filters: Sequence[str | Filter] = (),
        any: bool = False,
        granularity: str = "day",
        tz: str = "UTC",
    ) -> EventQuery:
        if isinstance(metrics, str) or isinstance(filters, str) or isinstance(group_by, str):
            raise ReportQueryError("metrics, group_by and filters are lists")
        return cls(
            event=event,
            from_ms=from_ms,
            to_ms=to_ms,
            not_before_ms=not_before_ms,
            metrics=tuple(_as_metric(m) for m in metrics),
            group_by=tuple(group_by),
            filters=tuple(_as_filter(f) for f in filters),
            any=bool(any),
            granularity=cast(Granularity, granularity),
            tz=tz,
        )


@dataclass(frozen=True, slots=True)
class FunnelStep:
    event: str
    filters: tuple[Filter, ...] = ()

    def __post_init__(self) -> None:
        _check_event(self.event)
        _check_filters(self.filters, "per funnel step")


def parse_window(text: str | int) -> int:
    """A funnel's conversion window in ms: ``"30m"``, ``"1h"``, ``"1d"``, ``"7d"``, ``"2w"``,
    ``"90s"`` (or a number of ms); 1 s to 90 days."""
    if isinstance(text, bool):
        raise ReportQueryError("window must be a duration such as 30m, 1h or 7d")
    if isinstance(text, int):
        ms = text
    elif isinstance(text, str) and (match := _WINDOW_RE.fullmatch(text)) is not None:
        ms = int(match.group(1)) * _WINDOW_UNITS[match.group(2)]
    else:
        raise ReportQueryError(
            f"window {text!r} is not a duration: a whole number and a unit s, m, h, d or w "
            "(e.g. 30m, 1h, 7d)"
        )
    if ms < 1000:
        raise ReportQueryError(f"window {text!r} is too short: at least 1s")
    if ms > MAX_FUNNEL_WINDOW_MS:
        raise ReportQueryError(f"window {text!r} is too long: at most 90d")
    return ms


@dataclass(frozen=True, kw_only=True, slots=True)
class FunnelQuery:
    """Funnel steps with a conversion window (ms) and an order (``strict`` or ``any``); build
    from strings with :meth:`parse`."""

    steps: tuple[FunnelStep, ...]
    from_ms: int
    to_ms: int
    not_before_ms: int
    group_by: str | None = None
    window_ms: int = DEFAULT_FUNNEL_WINDOW_MS
    order: FunnelOrder = "strict"

    def __post_init__(self) -> None:
        _check_window(self.from_ms, self.to_ms, self.not_before_ms)
        if not MIN_FUNNEL_STEPS <= len(self.steps) <= MAX_FUNNEL_STEPS:
            raise ReportQueryError(
                f"a funnel has {MIN_FUNNEL_STEPS} to {MAX_FUNNEL_STEPS} steps, "
                f"got {len(self.steps)}"
            )
        if self.group_by is not None:
            _check_name(self.group_by, "group-by")
            if self.group_by in _RESERVED_KEYS | _FUNNEL_KEYS:
                raise ReportQueryError(
                    f"group-by {self.group_by!r} clashes with a column of the report"
                )
        parse_window(self.window_ms)
        if self.order not in ("strict", "any"):
            raise ReportQueryError(f"order is strict or any, not {self.order!r}")

    @classmethod
    def parse(
        cls,
        *,
        steps: Sequence[str | FunnelStep | tuple[str, Sequence[str | Filter]]],
        from_ms: int,
        to_ms: int,
        not_before_ms: int,
        group_by: str | None = None,
        window: str | int | None = None,
        order: str | None = None,
    ) -> FunnelQuery:
        parsed: list[FunnelStep] = []
        for step in steps:
            if isinstance(step, FunnelStep):
                parsed.append(step)
            elif isinstance(step, str):
                parsed.append(FunnelStep(step))
            else:
                event, filters = step
                if isinstance(filters, str):
                    raise ReportQueryError("a step's filters are a list")
                parsed.append(FunnelStep(event, tuple(_as_filter(f) for f in filters)))
        return cls(
            steps=tuple(parsed),
            from_ms=from_ms,
            to_ms=to_ms,
            not_before_ms=not_before_ms,
            group_by=group_by,
            window_ms=DEFAULT_FUNNEL_WINDOW_MS if window is None else parse_window(window),
            order=cast(FunnelOrder, "strict" if order is None else order),
        )


# --------------------------------------------------------------------------- time zones


def _zone(name: str) -> ZoneInfo:
    found = zone(name)
    if found is None:
        raise ReportQueryError(f"unknown time zone {short_repr(name)}")
    return found


_EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _offset_ms(zone: ZoneInfo, ts_ms: int) -> int:
    local = (_EPOCH_UTC + timedelta(milliseconds=ts_ms)).astimezone(zone)
    offset = local.utcoffset()
    assert offset is not None
    return offset // timedelta(milliseconds=1)


def offset_segments(tz: str, lo_ms: int, hi_ms: int) -> list[tuple[int, int]]:
    """UTC offsets of ``tz`` over ``[lo_ms, hi_ms)``: ``[(start_ms, offset_ms), ...]``, the
    first start being ``lo_ms``; each later start is the exact millisecond of a transition.

    The transitions of each UTC year are found once per process (``_year_transitions``):
    sampling 2000-2027 every 6 hours cost 0.25 s of CPU on every report request."""
    zone = _zone(tz)
    segments = [(lo_ms, _offset_ms(zone, lo_ms))]
    if hi_ms <= lo_ms:
        return segments
    first, last = _utc_year(lo_ms), _utc_year(hi_ms - 1)
    for year in range(first, last + 1):
        segments += [(t, off) for t, off in _year_transitions(tz, year) if lo_ms < t < hi_ms]
    return segments


def _utc_year(ts_ms: int) -> int:
    return (_EPOCH_UTC + timedelta(milliseconds=ts_ms)).year


@functools.lru_cache(maxsize=8192)
def _year_transitions(tz: str, year: int) -> tuple[tuple[int, int], ...]:
    """The transitions of ``tz`` in UTC year ``year``: each millisecond ``t`` of the year whose
    offset differs from that of ``t - 1``, with its offset. Offsets are sampled every 6 hours
    and each change is located by bisection to the millisecond (no two transitions of a real
    zone are that close together)."""
    zone = _zone(tz)
    lo = int(datetime(year, 1, 1, tzinfo=UTC).timestamp() * 1000) - 1  # a change AT Jan 1
    last_day = year == 9999  # the calendar's last year has no next one
    end = datetime(9999, 12, 31, tzinfo=UTC) if last_day else datetime(year + 1, 1, 1, tzinfo=UTC)
    hi = int(end.timestamp() * 1000)
    found: list[tuple[int, int]] = []
    prev_t, prev_off = lo, _offset_ms(zone, lo)
    t = lo
    while t < hi - 1:
        t = min(t + _SAMPLE_MS, hi - 1)
        off = _offset_ms(zone, t)
        if off != prev_off:
            a, b = prev_t, t  # offset(a) == prev_off, offset(b) != prev_off
            while b - a > 1:
                mid = (a + b) // 2
                if _offset_ms(zone, mid) == prev_off:
                    a = mid
                else:
                    b = mid
            found.append((b, _offset_ms(zone, b)))
        prev_t, prev_off = t, off
    return tuple(found)


# --------------------------------------------------------------------------- SQL pieces


def slot_column(field_type: FieldType, slot: int) -> str:
    """Column of a slot: ``i0..i31`` (int fields), ``s0..s31`` (string), ``f0..f31`` (float),
    ``b0..b31`` (bool)."""
    if field_type not in _SLOT_PREFIX:
        raise ReportQueryError(f"unknown field type {field_type!r}")
    if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < MAX_SLOTS:
        raise ReportQueryError(f"slot {slot!r} is outside 0..{MAX_SLOTS - 1}")
    return f"{_SLOT_PREFIX[field_type]}{slot}"


class _Params:
    """Collects parameter values; ``add`` returns the dialect's (typed) placeholder."""

    def __init__(self, dialect: Dialect = DUCKDB) -> None:
        self.values: list[object] = []
        self.dialect = dialect

    def add(self, value: object, sql_type: str) -> str:
        self.values.append(value)
        return self.dialect.placeholder(len(self.values), sql_type)


ValueType = Literal["int", "string", "bool", "float"]


@dataclass(frozen=True, slots=True)
class _Resolved:
    expr: str  # a column name (or a typed NULL when the column does not exist yet)
    type: ValueType


class _Columns:
    """Resolves field names to column expressions using the app's slots."""

    def __init__(
        self, slots: FieldSlots, existing: Collection[str] | None, dialect: Dialect = DUCKDB
    ) -> None:
        self.slots = slots
        self.existing = existing
        self.dialect = dialect
        self.used: list[str] = []  # slot columns read, in order of first use
        self.history: Mapping[str, FieldHistory] = getattr(slots, "history", {})

    def _use(self, column: str, sql_type: str) -> str:
        if self.existing is not None and column not in self.existing:
            return self.dialect.null_of(sql_type)
        if column not in self.used:
            self.used.append(column)
        return column

    def resolve(self, name: str, *, builtins: bool = True) -> _Resolved:
        spec = self.slots.get(name)
        history = self.history.get(name)
        if spec is not None and history is not None and history.retyped:
            # a retyped field read as its current type (rules: analytics.field_history)
            joined, _ = read_columns(history)
            now = history.current.type
            exprs = [
                self._use(column, _SLOT_SQL[ftype])
                if ftype == now
                else self.dialect.convert(self._use(column, _SLOT_SQL[ftype]), ftype, now)
                for column, ftype in joined
            ]
            expr = exprs[0] if len(exprs) == 1 else f"coalesce({', '.join(exprs)})"
            return _Resolved(expr, now)
        if spec is not None:
            ftype, slot = spec
            column = slot_column(ftype, slot)
            if self.existing is not None and column not in self.existing:
                return _Resolved(self.dialect.null_of(_SLOT_SQL[ftype]), ftype)
            if column not in self.used:
                self.used.append(column)
            return _Resolved(column, ftype)
        if name.startswith("$"):
            return self._dimension(name)
        if builtins and name in BUILTIN_DIMENSIONS:
            return _Resolved(BUILTIN_DIMENSIONS[name], "string")
        raise ReportQueryError(f"unknown field {name!r}")

    def apart(self, name: str) -> list[tuple[str, ValueType]]:
        """The kept-apart parts of a retyped field: ``(column expression, type)``, newest
        first (none for any other name)."""
        history = self.history.get(name)
        if name not in self.slots or history is None or not history.retyped:
            return []
        return [(self._use(c, _SLOT_SQL[t]), t) for c, t in read_columns(history)[1]]

    def _dimension(self, name: str) -> _Resolved:
        dim = DIMENSIONS.get(name)
        if dim is None:
            raise ReportQueryError(
                f"unknown system property {name!r} (known: {', '.join(DIMENSIONS)})"
            )
        kind: ValueType = (
            "string" if dim.kind == "string" else "bool" if dim.kind == "bool" else "int"
        )
        if self.existing is not None and dim.column not in self.existing:
            return _Resolved(self.dialect.null_of(dim.sql_type), kind)
        if dim.column not in self.used:
            self.used.append(dim.column)
        return _Resolved(dim.column, kind)


def _filter_sql(f: Filter, columns: _Columns, params: _Params) -> str:
    col = columns.resolve(f.field)
    if col.type == "bool":
        if f.op not in ("=", "!=") or f.value.lower() not in _BOOL_VALUES:
            raise ReportQueryError(
                f"filter {short_repr(f.text)}: {f.field!r} is true or false; use {f.field}=true "
                f"or {f.field}!=true"
            )
        flag = params.add(_BOOL_VALUES[f.value.lower()], "BOOLEAN")
        return f"{col.expr} {'=' if f.op == '=' else '<>'} {flag}"
    if col.type == "float":
        if not _FLOAT_RE.fullmatch(f.value) or not math.isfinite(float(f.value)):
            raise ReportQueryError(
                f"filter {short_repr(f.text)}: {f.field!r} is a float field,"
                f" {short_repr(f.value)} is not a number"
            )
        op = "<>" if f.op == "!=" else f.op
        return f"{col.expr} {op} {params.add(float(f.value), 'DOUBLE')}"
    if col.type == "string":
        if f.op not in ("=", "!="):
            raise ReportQueryError(
                f"filter {short_repr(f.text)}: string field {f.field!r} only takes = or !="
            )
        return f"{col.expr} {'=' if f.op == '=' else '<>'} {params.add(f.value, 'VARCHAR')}"
    if not _INT_RE.fullmatch(f.value):
        raise ReportQueryError(
            f"filter {short_repr(f.text)}: {f.field!r} is an int field, {short_repr(f.value)} is"
            " not an integer"
        )
    # more than 19 digits cannot be in range: checked before ``int``, which refuses more than
    # 4,300 of them (a ValueError, that was a 500)
    digits = f.value.lstrip("+-").lstrip("0")
    if len(digits) > 19 or not _INT64_MIN <= int(f.value) <= _INT64_MAX:
        raise ReportQueryError(f"filter {short_repr(f.text)}: the number is out of range")
    op = "<>" if f.op == "!=" else f.op
    return f"{col.expr} {op} {params.add(int(f.value), 'BIGINT')}"


def _filters_sql(
    filters: Sequence[Filter], any_of: bool, columns: _Columns, params: _Params
) -> str:
    if not filters:
        return ""
    parts = [f"({_filter_sql(f, columns, params)})" for f in filters]
    return " AND (" + (" OR " if any_of else " AND ").join(parts) + ")"


@dataclass(frozen=True, slots=True)
class _Where:
    sql: str
    appid: str  # the placeholders, for the dialect's source
    lo: str
    hi: str

    def source(self, params: _Params, columns: _Columns) -> str:
        return params.dialect.source(TABLE, self.appid, (self.lo, self.hi), columns.used)


def _base_where(
    appid: str, from_ms: int, to_ms: int, not_before_ms: int, params: _Params
) -> _Where:
    lo = max(from_ms, not_before_ms)
    app, lo_p, hi_p = (
        params.add(appid, "VARCHAR"),
        params.add(lo, "BIGINT"),
        params.add(to_ms, "BIGINT"),
    )
    visible = params.dialect.visible()
    return _Where(
        f"appid = {app} AND {visible} AND ts_ms >= {lo_p} AND ts_ms < {hi_p}", app, lo_p, hi_p
    )


def _bucket_sql(q: EventQuery, params: _Params) -> str:
    width = _MS_PER_HOUR if q.granularity == "hour" else _MS_PER_DAY
    lo = max(q.from_ms, q.not_before_ms)
    return local_number_sql("ts_ms", q.tz, lo, q.to_ms, width, params)


def local_number_sql(column: str, tz: str, lo: int, hi: int, width: int, params: _Params) -> str:
    """SQL of the local hour or day number (``width``) of the time in ``column``, for times in
    ``[lo, hi)``: one UTC offset per DST segment of the window (``CASE`` on the column), plus
    whole days (``_SHIFT_DAYS``) so the integer division only sees positive numbers. Every
    report that buckets by local time uses it, so their buckets agree."""
    # only where events can be: ingestion refuses times before 2000 and after receipt + 1 day
    # (a window of centuries took minutes of sampling); rows outside get the nearest offset
    lo, hi = max(lo, _FIRST_EVENT_MS), min(max(lo + 1, hi), _LAST_EVENT_MS)
    segments = offset_segments(tz, lo, max(lo + 1, hi))
    shift = _SHIFT_DAYS * _MS_PER_DAY
    if len(segments) == 1:
        offset = params.add(segments[0][1] + shift, "BIGINT")
    else:
        whens = []
        for (_, off), (next_start, _) in itertools.pairwise(segments):
            until = params.add(next_start, "BIGINT")
            whens.append(f"WHEN {column} < {until} THEN {params.add(off + shift, 'BIGINT')}")
        last = params.add(segments[-1][1] + shift, "BIGINT")
        offset = f"(CASE {' '.join(whens)} ELSE {last} END)"
    return params.dialect.int_div(f"{column} + {offset}", width)


def _bucket_label(granularity: Granularity, number: int) -> str:
    if granularity == "day":
        return (_EPOCH_DATE + timedelta(days=number - _SHIFT_DAYS)).isoformat()
    hours = number - _SHIFT_DAYS * 24
    return (_EPOCH_NAIVE + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:00")


# --------------------------------------------------------------------------- compiled reports


Row = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class CompiledReport:
    """SQL + parameters of a report, and the function that shapes its result rows."""

    sql: str
    params: tuple[object, ...]
    shape: Callable[[Sequence[Row]], list[dict[str, object]]] = field(repr=False)
    columns: tuple[str, ...] = ()
    """The slot and system-property columns the SQL reads (a store without one of them
    must create it, or compile again with ``existing_columns``)."""


class _Aggregates:
    """Distinct base aggregates of a query (each computed once in SQL)."""

    def __init__(self) -> None:
        self.exprs: list[str] = []

    def add(self, expr: str) -> int:
        if expr not in self.exprs:
            self.exprs.append(expr)
        return self.exprs.index(expr)


def _div(a: object, b: object) -> float | None:
    if not isinstance(a, int | float) or not isinstance(b, int) or b == 0:
        return None
    return a / b


def _metric_plan(m: Metric, columns: _Columns, aggs: _Aggregates) -> Callable[[Row], object]:
    """Register the base aggregates ``m`` needs; return how to compute it from a result row."""
    if m.field is None:
        if m.kind == "count":
            count_i = aggs.add("count(*)")
            return lambda r: r[count_i]
        users_i = aggs.add(columns.dialect.count_distinct("user_id"))
        if m.kind == "users":
            return lambda r: r[users_i]
        count_i = aggs.add("count(*)")
        return lambda r: _div(r[count_i], r[users_i])
    col = columns.resolve(m.field, builtins=False)
    if m.kind in _STRING_METRICS:
        if col.type != "string":
            raise ReportQueryError(
                f"metric {m.name!r}: distinct needs a string field, {m.field!r} is "
                f"{'an int' if col.type == 'int' else 'a ' + col.type} field"
            )
        distinct_i = aggs.add(columns.dialect.count_distinct(col.expr))
        return lambda r: r[distinct_i]
    if col.type not in ("int", "float"):
        raise ReportQueryError(
            f"metric {m.name!r}: {m.kind} needs an int or float field, {m.field!r} is a "
            f"{col.type} field"
        )
    if m.kind in ("max", "min"):
        extreme_i = aggs.add(f"{m.kind}({col.expr})")
        return lambda r: r[extreme_i]
    sum_i = aggs.add(f"sum({col.expr})")

    if col.type == "float":

        def total(r: Row) -> int | float:
            value = r[sum_i]
            return float(cast(float, value)) if value is not None else 0.0

    else:

        def total(r: Row) -> int | float:
            value = r[sum_i]
            return int(cast(int, value)) if value is not None else 0

    if m.kind == "sum":
        return total
    if m.kind == "avg":
        n_i = aggs.add(columns.dialect.count_values(col.expr))
        return lambda r: _div(total(r), r[n_i])
    users_i = aggs.add(columns.dialect.count_distinct("user_id"))
    return lambda r: _div(total(r), r[users_i])


def compile_event_analysis(
    appid: str,
    q: EventQuery,
    slots: FieldSlots,
    *,
    existing_columns: Collection[str] | None = None,
    dialect: Dialect = DUCKDB,
) -> CompiledReport:
    """SQL for an event analysis. ``existing_columns``: the slot columns the table has (a
    slot column that does not exist yet reads as NULL); ``None`` means all of them."""
    columns = _Columns(slots, existing_columns, dialect)
    params = _Params(dialect)
    aggs = _Aggregates()
    metric_fns = [(m.name, _metric_plan(m, columns, aggs)) for m in q.metrics]
    resolved = [(name, columns.resolve(name)) for name in q.group_by]
    # per group-by: (name, [(expr, type)]): the field as its current type, then its parts
    # kept apart (a retyped field's; analytics.field_history)
    groups = [(name, [(col.expr, col.type), *columns.apart(name)]) for name, col in resolved]
    select: list[str] = []
    keys: list[str] = []
    if q.granularity != "all":
        select.append(_bucket_sql(q, params) + " AS b")
        keys.append("b")
    for i, (_, parts) in enumerate(groups):
        for k, (expr, _) in enumerate(parts):
            alias = f"g{i}" if k == 0 else f"g{i}_{k}"
            select.append(f"{expr} AS {alias}")
            keys.append(alias)
    select += [f"{expr} AS m{i}" for i, expr in enumerate(aggs.exprs)]
    base = _base_where(appid, q.from_ms, q.to_ms, q.not_before_ms, params)
    where = base.sql + f" AND event = {params.add(q.event, 'VARCHAR')}"
    where += _filters_sql(q.filters, q.any, columns, params)
    sql = f"SELECT {', '.join(select)} FROM {base.source(params, columns)} WHERE {where}"
    if keys:
        sql += dialect.group_order(keys)
    else:
        sql += " HAVING count(*) > 0"
    granularity = q.granularity
    has_bucket = granularity != "all"

    def shape(rows: Sequence[Row]) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for row in rows:
            if has_bucket:
                bucket = _bucket_label(granularity, cast(int, row[0]))
                rest = row[1:]
            else:
                bucket, rest = "all", row
            item: dict[str, object] = {"bucket": bucket}
            at = 0
            for name, parts in groups:
                value: object = None
                kind: str | None = None
                for expr_type in (t for _, t in parts):
                    got = rest[at]
                    at += 1
                    if got is not None and kind is None:
                        value, kind = (_as_bool(got) if expr_type == "bool" else got), expr_type
                item[name] = value
                if len(parts) > 1:  # a retyped field with parts kept apart: say which
                    item[f"{name}@type"] = kind
            metric_row = rest[at:]
            for name, fn in metric_fns:
                item[name] = fn(metric_row)
            out.append(item)
        return out

    return CompiledReport(sql, tuple(params.values), shape, tuple(columns.used))


def _as_bool(value: object) -> object:
    """A bool column's value as a bool (ClickHouse stores them as UInt8)."""
    return value if value is None else bool(value)


def _none_first(value: object) -> tuple[bool, object]:
    return (value is not None, value)


def compile_funnel(
    appid: str,
    q: FunnelQuery,
    slots: FieldSlots,
    *,
    existing_columns: Collection[str] | None = None,
    dialect: Dialect = CLICKHOUSE,
) -> CompiledReport:
    """SQL for a funnel. The rules (the same on both engines and in the tests' reference):

    * A user's events in the date range are put in one order: time, then the first step the
      event matches, then the event id. So two events of the same millisecond count in step
      order, and one event never satisfies two steps.
    * Every step-1 event is a possible start (an *anchor*); each later step must happen within
      ``window_ms`` after the anchor (inclusive). ``strict``: step k is the first event after
      step k-1's event (in the order above) that matches step k. ``any``: step k is the first
      event at or after the anchor's time, not taken by an earlier step, that matches step k.
    * A user reaches the furthest step any anchor reaches (the earliest such anchor is the
      one used, as ClickHouse's ``windowFunnel`` or PostHog pick the attempt that goes
      furthest); a user at step k counts at steps 1..k.
    * ``median_s`` of step k: the median over users who reached step k+1 of the seconds from
      completing steps 1..k to completing steps 1..k+1 (``any``: the time by which every step
      so far was done); the mean of the two middle values when their count is even.

    ClickHouse's ``windowFunnel`` is not used: it gives no times (no medians), and an event
    matching two conditions advances two steps. This builds the ClickHouse SQL; DuckDB runs
    the same rules as a scan (:func:`compile_funnel_scan`)."""
    columns = _Columns(slots, existing_columns, dialect)
    params = _Params(dialect)
    base = _base_where(appid, q.from_ms, q.to_ms, q.not_before_ms, params)
    where = base.sql
    events = sorted({s.event for s in q.steps})
    where += " AND event IN (" + ", ".join(params.add(e, "VARCHAR") for e in events) + ")"
    group = columns.resolve(q.group_by) if q.group_by is not None else None
    group_expr = group.expr if group is not None else "NULL"
    step_conds: list[str] = []
    for step in q.steps:
        cond = f"event = {params.add(step.event, 'VARCHAR')}"
        cond += _filters_sql(step.filters, False, columns, params)
        step_conds.append(cond)
    window = params.add(q.window_ms, "BIGINT")
    bool_group = group is not None and group.type == "bool"
    shape = _funnel_shape([s.event for s in q.steps], q.group_by, bool_group)
    if dialect is not CLICKHOUSE:
        raise ValueError("a DuckDB funnel is a scan: compile_funnel_scan")
    source = base.source(params, columns)
    sql = clickhouse_funnel(source, where, group_expr, step_conds, window, q.order)
    return CompiledReport(sql, tuple(params.values), shape, tuple(columns.used))


@dataclass(frozen=True, slots=True)
class CompiledFunnelScan:
    """A DuckDB funnel: SQL that fetches the rows, and what
    :func:`miniport.analytics.funnel_scan.run_scan` needs to compute the report from them.

    * ``rows_sql``: ``h, t, m`` per event matching some step: the user's 64-bit hash, the
      time (ms since ``t_base``), the steps it matches (bit i: step i+1), in no order;
    * ``users_sql``: ``h`` per distinct user of the app in the range (a superset of the
      rows' users), and when grouped ``g``: the group value of the user's first step-1 event
      by (time, event id);
    * ``ties_sql``: ``h, t, uid, m`` of the rows at the times (ms since the epoch: a filter
      on the column itself is pushed into the scan) given as one more parameter (a BIGINT
      list), ordered by (h, t, uid): the event ids that order rows of the same user, ms
      and first step.

    Parameter 1 is the hash's salt (``params[0]``, 0; another after a collision);
    ``users_sql`` takes the first ``users_params`` parameters, the others all of them (and
    ``ties_sql`` the list after them). Run them in one transaction (one snapshot)."""

    rows_sql: str
    users_sql: str
    ties_sql: str
    params: tuple[object, ...]
    users_params: int
    t_base: int
    steps: int
    window_ms: int
    strict: bool
    grouped: bool
    shape: Callable[[Sequence[Row]], list[dict[str, object]]] = field(repr=False)
    columns: tuple[str, ...] = ()


def compile_funnel_scan(
    appid: str,
    q: FunnelQuery,
    slots: FieldSlots,
    *,
    existing_columns: Collection[str] | None = None,
) -> CompiledFunnelScan:
    """The DuckDB form of :func:`compile_funnel` (same rules): SQL only filters and fetches,
    :mod:`miniport.analytics.funnel_scan` orders the rows and follows the chains.

    The former all-SQL form (one join per step on (user, time bucket), a group by over the
    anchors still going) took 7-9 CPU s on 10M events / 30 days (5 steps, 1 h); sorting in
    DuckDB alone (by user, time, step, id) costs 3-6 CPU s there, a value sort of packed
    uint64 keys in numpy ~0.1 s. The step mask reads the event's place in the list of the
    steps' events once (``list_position``, NULL for another event: the row is dropped),
    then indexes a list of bits with it and compares it as an integer in the filtered
    steps' conditions: 0.31 -> 0.22 CPU s for the rows of 10M events, against a ``CASE
    event WHEN`` per name (a filtered step's ``event = name AND ...`` in a ``CASE`` cost
    ~0.08 of it). No ``event IN (...)`` filter is added (~0.2 CPU s per 10M rows)."""
    columns = _Columns(slots, existing_columns, DUCKDB)
    params = _Params(DUCKDB)
    salt = params.add(0, "BIGINT")
    hashed = f"hash(user_id, {salt})"
    base = _base_where(appid, q.from_ms, q.to_ms, q.not_before_ms, params)
    users_params = len(params.values)
    t_base = max(q.from_ms, q.not_before_ms)
    narrow = q.to_ms - t_base <= 2**32
    t_expr = f"CAST(ts_ms - {params.add(t_base, 'BIGINT')} AS {'UINTEGER' if narrow else 'BIGINT'})"
    # the event's place in the list of the steps' events (NULL for another event: no row)
    events = list(dict.fromkeys(step.event for step in q.steps))
    names = ", ".join(params.add(ev, "VARCHAR") for ev in events)
    plain_bits = [0] * len(events)
    filtered: list[str] = []
    for i, step in enumerate(q.steps):
        at = events.index(step.event) + 1
        if not step.filters:
            plain_bits[at - 1] |= 1 << i
            continue
        cond = f"step_event_at = {at}" + _filters_sql(step.filters, False, columns, params)
        filtered.append(f"(CASE WHEN {cond} THEN {1 << i} ELSE 0 END)")
    parts = [f"[{', '.join(str(b) for b in plain_bits)}][step_event_at]", *filtered]
    mask = f"CAST({' | '.join(parts)} AS USMALLINT)"
    group = columns.resolve(q.group_by) if q.group_by is not None else None
    placed = (
        f"SELECT *, list_position([{names}], event) AS step_event_at FROM {TABLE}"
        f" WHERE {base.sql}"
    )
    e = f"SELECT user_id, ts_ms, uid, {t_expr} AS t, {mask} AS m FROM ({placed})"
    rows_sql = f"SELECT {hashed} AS h, t, m FROM ({e}) WHERE m <> 0"
    if group is not None:  # every user of the range, with the first anchor's value
        grouped_e = e.replace(" AS m FROM ", f" AS m, {group.expr} AS g FROM ", 1)
        users_sql = (
            f"SELECT {hashed} AS h, arg_min_null(g, (ts_ms, uid)) FILTER (WHERE m & 1 = 1)"
            f" AS g FROM ({grouped_e}) GROUP BY user_id"
        )
        users_params = len(params.values)
    else:
        users_sql = (
            f"SELECT {hashed} AS h FROM (SELECT DISTINCT user_id FROM {TABLE} WHERE {base.sql})"
        )
    times = f"${len(params.values) + 1}"
    ties_sql = (
        f"SELECT {hashed} AS h, t, uid, m FROM ({e}) WHERE m <> 0"
        f" AND ts_ms IN (SELECT unnest(CAST({times} AS BIGINT[]))) ORDER BY h, t, uid"
    )
    bool_group = group is not None and group.type == "bool"
    return CompiledFunnelScan(
        rows_sql=rows_sql,
        users_sql=users_sql,
        ties_sql=ties_sql,
        params=tuple(params.values),
        users_params=users_params,
        t_base=t_base,
        steps=len(q.steps),
        window_ms=q.window_ms,
        strict=q.order == "strict",
        grouped=group is not None,
        shape=_funnel_shape([s.event for s in q.steps], q.group_by, bool_group),
        columns=tuple(columns.used),
    )


def _funnel_shape(
    step_events: list[str], group_name: str | None, bool_group: bool = False
) -> Callable[[Sequence[Row]], list[dict[str, object]]]:
    """Rows ``(g, n1..nK, m1..m(K-1))`` -> one row per group and step: users, conversion
    (from step 1), step_conversion (from the step before), drop_off (users lost since the
    step before) and median_s (to the next step; ``None`` for the last step or nobody)."""
    k = len(step_events)

    def shape(rows: Sequence[Row]) -> list[dict[str, object]]:
        by_group = {(_as_bool(row[0]) if bool_group else row[0]): row for row in rows}
        if group_name is None:
            by_group = {None: by_group.get(None, (None, *([0] * k), *([None] * (k - 1))))}
        out: list[dict[str, object]] = []
        for g in sorted(by_group, key=_none_first):
            row = by_group[g]
            counts = [int(cast(int, n)) for n in row[1 : k + 1]]
            medians = [*row[k + 1 :], None]
            for i, event in enumerate(step_events):
                users = counts[i]
                prev = counts[i - 1] if i else users
                item: dict[str, object] = {"step": i + 1, "event": event}
                if group_name is not None:
                    item[group_name] = g
                item["users"] = users
                item["conversion"] = users / counts[0] if counts[0] else 0.0
                item["step_conversion"] = users / prev if prev else 0.0
                item["drop_off"] = prev - users
                median = medians[i]
                item["median_s"] = None if median is None else float(cast(float, median)) / 1000
                out.append(item)
        return out

    return shape


@dataclass(frozen=True, slots=True)
class CompiledExport:
    sql: str
    params: tuple[object, ...]
    header: tuple[str, ...]
    bool_columns: tuple[int, ...] = ()
    """Positions (in a result row) of bool fields: written ``true``/``false`` on every store
    (ClickHouse returns them as 0/1)."""

    def values(self, row: Row) -> list[object]:
        """A result row's values after the time column, as the CSV shows them: text that a
        spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR first: users,
        pages and string fields are what clients report) gets a leading ``'``."""
        out = [
            "'" + value if isinstance(value, str) and value[:1] in _FORMULA_STARTS else value
            for value in row[1:]
        ]
        for i in self.bool_columns:
            value = out[i - 1]
            if value is not None:
                out[i - 1] = "true" if value else "false"
        return out


_FORMULA_STARTS: Final = frozenset("=+-@\t\r")


def compile_export(
    appid: str,
    event: str,
    from_ms: int,
    to_ms: int,
    not_before_ms: int,
    slots: FieldSlots,
    *,
    existing_columns: Collection[str] | None = None,
    dialect: Dialect = DUCKDB,
) -> CompiledExport:
    """All of one event's rows (time order): ts_ms, user, page, trigger, action, then every
    field of ``slots`` in the mapping's order. The header names the CSV columns."""
    _check_name(event, "event")
    _check_window(from_ms, to_ms, not_before_ms)
    columns = _Columns(slots, existing_columns, dialect)
    params = _Params(dialect)
    names = list(slots)
    for name in names:
        _check_name(name, "field")
    resolved = [columns.resolve(name, builtins=False) for name in names]
    header_fields = list(names)
    for name in list(names):  # a retyped field's parts kept apart: a column each
        for expr, kind in columns.apart(name):
            resolved.append(_Resolved(expr, kind))
            header_fields.append(f"{name}@{kind}")
    fields = [col.expr for col in resolved]
    bools = tuple(5 + i for i, col in enumerate(resolved) if col.type == "bool")
    base = _base_where(appid, from_ms, to_ms, not_before_ms, params)
    where = base.sql + f" AND event = {params.add(event, 'VARCHAR')}"
    select = ", ".join(["ts_ms", "user_id", "page", "trigger", "action", *fields])
    source = base.source(params, columns)
    sql = f"SELECT {select} FROM {source} WHERE {where} ORDER BY ts_ms, uid"
    header = ("time", "user", "page", "trigger", "action", *header_fields)
    return CompiledExport(sql, tuple(params.values), header, bools)
