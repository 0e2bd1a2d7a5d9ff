"""Retention report: query model and SQL for both event stores (pure: no I/O).

A **cohort** is a pair (user, period): the user did the *start* in that period. Periods are
local calendar days, or weeks starting on Monday, in the query's IANA time zone (a DST day
is 23 or 25 hours long; its events still fall in that one local day). Everything is read
from the app's visible events in ``[max(from_ms, not_before_ms), to_ms)``.

* ``start`` = an event name: every period in which the user did that event is a cohort of
  theirs (a user active on Monday and Tuesday is in both cohorts: WeChat's 活跃留存 and
  PostHog's "recurring" retention). ``$any``: any event. ``$new``: the user's FIRST event
  for the app (first since ``not_before_ms``, i.e. since the oldest event kept) starts the
  one and only cohort of that user, if it falls in the window (WeChat's 新增留存).
* The cohort's **start time** ``t0`` is the user's first start event in the cohort period
  (for ``$new``, the first event); with a group-by, the cohort row's group value is that
  event's value of the group-by field (ties on time: the smaller event id).
* ``retained[0]``: users of the cohort who did the *return* event (a name or ``$any``) in
  the cohort period at or after ``t0`` -- so with the same start and return event, or with
  ``$any`` as the return, ``retained[0] == size`` (PostHog's 100% day 0; WeChat shows
  only k >= 1).
* ``retained[k]`` (1 <= k <= periods): users of the cohort who did the return event at any
  time in period ``cohort + k``. (Not cumulative: a user may be retained in period 2 and
  not in period 1.)
* ``retained`` stops at the last period that starts before ``to_ms`` (later periods have
  not happened yet; a chart shows them as missing, not as 0), so its length is
  ``min(periods, last - cohort) + 1``.

Output rows, sorted by cohort then group value (``None`` first)::

    {"cohort": "2026-11-20", ["<group-by>": value,] "size": n, "retained": [n0, n1, ...]}

The cohort is the local date of the period's first day (a Monday for weeks).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final, Literal, cast

from miniport.errors import ReportQueryError

from .limits import MAX_PERIODS
from .reports import (
    CompiledReport,
    FieldSlots,
    _as_bool,
    _base_where,
    _check_name,
    _check_window,
    _Columns,
    _none_first,
    _Params,
    _zone,
    local_number_sql,
    offset_segments,
)
from .sql_dialects import DUCKDB, Dialect

_Shape = Callable[[Sequence[tuple[object, ...]]], list[dict[str, object]]]

__all__ = [
    "ANY",
    "MAX_PERIODS",
    "NEW",
    "RetentionQuery",
    "Unit",
    "compile_retention",
    "period_label",
    "period_of",
]

Unit = Literal["day", "week"]
ANY: Final = "$any"
NEW: Final = "$new"
MS_PER_DAY: Final = 86_400_000
# period numbers are computed on (ts + offset + SHIFT) so integer division never sees a
# negative number; SHIFT is whole days and (SHIFT - 3) % 7 == 2 puts Mondays at 7w + 2
_SHIFT_DAYS: Final = 100_000
_WEEK_BASE: Final = 2  # shifted day numbers of Mondays are 7w + 2 (1970-01-05 is a Monday)
_EPOCH_DATE: Final = date(1970, 1, 1)
_RESERVED: Final = frozenset({"cohort", "size", "retained"})


@dataclass(frozen=True, kw_only=True, slots=True)
class RetentionQuery:
    start: str
    returning: str
    from_ms: int
    to_ms: int
    not_before_ms: int
    unit: Unit = "day"
    periods: int = 7
    group_by: str | None = None
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if self.start not in (ANY, NEW):
            _check_name(self.start, "start event")
        if self.returning == NEW:
            raise ReportQueryError("the return event is an event name or $any, not $new")
        if self.returning != ANY:
            _check_name(self.returning, "return event")
        _check_window(self.from_ms, self.to_ms, self.not_before_ms)
        if self.unit not in ("day", "week"):
            raise ReportQueryError(f"unit is day or week, not {self.unit!r}")
        if isinstance(self.periods, bool) or not isinstance(self.periods, int):
            raise ReportQueryError("periods must be an integer")
        if not 1 <= self.periods <= MAX_PERIODS:
            raise ReportQueryError(f"periods is 1 to {MAX_PERIODS}, got {self.periods}")
        if self.group_by is not None and self.group_by in _RESERVED:
            raise ReportQueryError(
                f"group-by {self.group_by!r} clashes with a column of the report"
            )
        _zone(self.tz)

    @property
    def events(self) -> list[str]:
        """The event names the query names (for "is it defined?" checks)."""
        return [e for e in (self.start, self.returning) if e not in (ANY, NEW)]


# --------------------------------------------------------------------------- periods


def period_of(ts_ms: int, unit: Unit, tz: str) -> int:
    """The period number of an instant (the same numbers the SQL computes)."""
    offset = offset_segments(tz, ts_ms, ts_ms)[0][1]
    day = (ts_ms + offset) // MS_PER_DAY + _SHIFT_DAYS
    return day if unit == "day" else (day - _WEEK_BASE) // 7


def period_label(number: int, unit: Unit) -> str:
    """``"2026-11-20"``: the local date of the period's first day."""
    day = number if unit == "day" else number * 7 + _WEEK_BASE
    return (_EPOCH_DATE + timedelta(days=day - _SHIFT_DAYS)).isoformat()


def _period_sql(ts: str, q: RetentionQuery, lo: int, params: _Params) -> str:
    day = local_number_sql(ts, q.tz, lo, q.to_ms, MS_PER_DAY, params)
    if q.unit == "day":
        return day
    return params.dialect.int_div(f"{day} - {_WEEK_BASE}", 7)


# --------------------------------------------------------------------------- SQL


def _event_cond(name: str, params: _Params) -> str:
    return "1 = 1" if name == ANY else f"event = {params.add(name, 'VARCHAR')}"


def compile_retention(
    appid: str,
    q: RetentionQuery,
    slots: FieldSlots,
    *,
    existing_columns: Collection[str] | None = None,
    dialect: Dialect = DUCKDB,
) -> CompiledReport:
    """Rows ``(cohort period, group, k, users)``; ``k = -1`` is the cohort's size."""
    columns = _Columns(slots, existing_columns, dialect)
    params = _Params(dialect)
    group = columns.resolve(q.group_by) if q.group_by is not None else None
    group_expr = group.expr if group is not None else "NULL"
    lo = max(q.from_ms, q.not_before_ms)
    ch = dialect.is_clickhouse
    if q.group_by is None:  # no ordered aggregate to pay for
        first_g = "NULL"
    elif ch:
        first_g = "tupleElement(argMin(tuple(gv), tuple(ts_ms, uid)), 1)"
    else:
        first_g = "first(gv ORDER BY ts_ms, uid)"
    if ch:
        sql = _clickhouse_sql(appid, q, params, columns, group_expr, first_g, lo)
    else:
        sql = _duckdb_sql(appid, q, params, columns, group_expr, first_g, lo)
    last = period_of(q.to_ms - 1, q.unit, q.tz)
    as_bool = group is not None and group.type == "bool"
    # the columns it reads: a store that lacks one (ClickHouse, a system property no event of
    # the app has carried yet) creates it first, as for the other reports
    return CompiledReport(
        sql, tuple(params.values), _shape(q, last, as_bool), tuple(columns.used)
    )


def _shape(q: RetentionQuery, last: int, as_bool: bool = False) -> _Shape:
    def shape(rows: Sequence[tuple[object, ...]]) -> list[dict[str, object]]:
        sizes: dict[tuple[int, object], int] = {}
        kept: dict[tuple[int, object, int], int] = {}
        for p, g, k, n in rows:
            key = (cast(int, p), g)
            if k == -1:
                sizes[key] = cast(int, n)
            else:
                kept[(*key, cast(int, k))] = cast(int, n)
        out: list[dict[str, object]] = []
        for p, g in sorted(sizes, key=lambda pg: (pg[0], _none_first(pg[1]))):
            item: dict[str, object] = {"cohort": period_label(p, q.unit)}
            if q.group_by is not None:  # ClickHouse keeps a bool as UInt8: 0/1 read back
                item[q.group_by] = _as_bool(g) if as_bool else g
            item["size"] = sizes[(p, g)]
            length = max(0, min(q.periods, last - p)) + 1
            item["retained"] = [kept.get((p, g, k), 0) for k in range(length)]
            out.append(item)
        return out

    return shape


def _new_starts(
    appid: str, q: RetentionQuery, params: _Params, columns: _Columns, group_expr: str,
    first_g: str, lo: int,
) -> str:
    """``user_id, p, t0, g`` of every user whose first event since ``not_before_ms`` falls in
    the window (start ``$new``)."""
    everything = _base_where(appid, q.not_before_ms, q.to_ms, q.not_before_ms, params)
    source = everything.source(params, columns)
    lo_p = params.add(lo, "BIGINT")
    firsts = (
        f"SELECT user_id, min(ts_ms) AS t0, {first_g} AS g FROM (SELECT user_id, ts_ms,"
        f" uid, {group_expr} AS gv FROM {source} WHERE {everything.sql})"
        f" GROUP BY user_id HAVING min(ts_ms) >= {lo_p}"
    )
    return f"SELECT user_id, {_period_sql('t0', q, lo, params)} AS p, t0, g FROM ({firsts})"


def _clickhouse_sql(
    appid: str, q: RetentionQuery, params: _Params, columns: _Columns, group_expr: str,
    first_g: str, lo: int,
) -> str:
    """ClickHouse 18.16: the start and return sets per (user, period), joined on the user."""
    base = _base_where(appid, q.from_ms, q.to_ms, q.not_before_ms, params)
    if q.start == NEW:
        starts = _new_starts(appid, q, params, columns, group_expr, first_g, lo)
    else:
        source = base.source(params, columns)
        cond = _event_cond(q.start, params)
        starts = (
            f"SELECT user_id, p, min(ts_ms) AS t0, {first_g} AS g FROM (SELECT user_id, ts_ms,"
            f" uid, {group_expr} AS gv, {_period_sql('ts_ms', q, lo, params)} AS p"
            f" FROM {source} WHERE {base.sql} AND {cond}) GROUP BY user_id, p"
        )
    rsource = base.source(params, columns)
    rcond = _event_cond(q.returning, params)
    rets = (
        f"SELECT user_id, {_period_sql('ts_ms', q, lo, params)} AS rp, max(ts_ms) AS tmax"
        f" FROM {rsource} WHERE {base.sql} AND {rcond} GROUP BY user_id, rp"
    )
    n = q.periods
    return (
        "SELECT p, g, rp - p AS k, count() AS n FROM"
        f" ({starts}) AS s ALL INNER JOIN ({rets}) AS r"
        f" USING user_id WHERE rp >= p AND rp <= p + {n} AND (rp > p OR tmax >= t0)"
        " GROUP BY p, g, k"
        " UNION ALL SELECT p, g, toInt64(-1) AS k, count() AS n"
        f" FROM ({starts}) GROUP BY p, g"
    )


_BLOCK: Final = 32  # periods per return bitmask word (two words cover p .. p + 30)


def _duckdb_sql(
    appid: str, q: RetentionQuery, params: _Params, columns: _Columns, group_expr: str,
    first_g: str, lo: int,
) -> str:
    """DuckDB: ONE pass over the start and return events gives per (user, period) the first
    start time, the last return time and the start's group value; the return periods of a
    user become 32-bit masks per block of 32 periods, and each cohort row reads periods
    ``p + 1 .. p + 30`` off the two blocks that hold them (two equality joins) instead of
    joining every start period of a user with every return period (30 x 30 rows per user,
    most of the time of the former SQL at 10M events)."""
    base = _base_where(appid, q.from_ms, q.to_ms, q.not_before_ms, params)
    source = base.source(params, columns)
    period = _period_sql("ts_ms", q, lo, params)
    rcond = _event_cond(q.returning, params)
    if q.start == NEW:
        starts = _new_starts(appid, q, params, columns, group_expr, first_g, lo)
        rets = (
            f"SELECT user_id, {period} AS p, max(ts_ms) AS tmax FROM {source}"
            f" WHERE {base.sql} AND {rcond} GROUP BY 1, 2"
        )
        ctes = (
            f"s0 AS ({starts}), r AS ({rets}), s AS (SELECT s0.user_id, s0.p, s0.g,"
            " (r.tmax >= s0.t0) AS k0 FROM s0 LEFT JOIN r"
            " ON r.user_id = s0.user_id AND r.p = s0.p)"
        )
    else:
        cond = _event_cond(q.start, params)
        first_start = "NULL"
        if q.group_by is not None:
            first_start = f"first(gv ORDER BY ts_ms, uid) FILTER (WHERE {cond})"
        per_period = (
            f"SELECT user_id, p, min(ts_ms) FILTER (WHERE {cond}) AS t0,"
            f" max(ts_ms) FILTER (WHERE {rcond}) AS tmax, {first_start} AS g"
            f" FROM (SELECT user_id, ts_ms, uid, event, {group_expr} AS gv, {period} AS p"
            f" FROM {source} WHERE {base.sql} AND (({cond}) OR ({rcond}))) GROUP BY user_id, p"
        )
        ctes = (
            f"d AS ({per_period}),"
            " r AS (SELECT user_id, p FROM d WHERE tmax IS NOT NULL),"
            " s AS (SELECT user_id, p, g, (tmax >= t0) AS k0 FROM d WHERE t0 IS NOT NULL)"
        )
    b = _BLOCK
    masks = (
        f"rb AS (SELECT user_id, p // {b} AS blk,"
        f" bit_or(CAST(1 AS UBIGINT) << CAST(p % {b} AS UTINYINT)) AS m FROM r GROUP BY 1, 2)"
    )
    words = (
        f"SELECT s.p, s.g, s.k0, (coalesce(b0.m, CAST(0 AS UBIGINT))"
        f" | (coalesce(b1.m, CAST(0 AS UBIGINT)) << {b})) >> CAST(s.p % {b} AS UTINYINT) AS w"
        f" FROM s LEFT JOIN rb b0 ON b0.user_id = s.user_id AND b0.blk = s.p // {b}"
        f" LEFT JOIN rb b1 ON b1.user_id = s.user_id AND b1.blk = s.p // {b} + 1"
    )
    n = q.periods
    # sums of bits, not n FILTERed counts: a FILTER splits every vector once per aggregate
    counts = ", ".join(
        ["count(*)", "CAST(count(*) FILTER (WHERE k0) AS BIGINT)"]
        + [f"CAST(sum(CAST((w >> {k}) & 1 AS INTEGER)) AS BIGINT)" for k in range(1, n + 1)]
    )
    return (
        f"WITH {ctes}, {masks}, x AS ({words}), a AS (SELECT p, g, [{counts}] AS ns"
        " FROM x GROUP BY p, g)"
        f" SELECT p, g, unnest(range(-1, {n + 1})) AS k, unnest(ns) AS n FROM a"
    )
