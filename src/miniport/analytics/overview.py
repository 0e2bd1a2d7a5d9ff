"""The Overview and Real-time reports: query objects and SQL (pure: no I/O).

Both read the events table of :mod:`miniport.analytics.event_store` (DuckDB) or
:mod:`miniport.analytics.clickhouse_store` (ClickHouse 18.16 and later: no window functions,
no CTEs; through :meth:`Dialect.source`, one row per event id), visible events only, never
before the retention cut-off ``not_before_ms``. Every value is a query parameter; identifiers
come from :data:`miniport.analytics.system_props.DIMENSIONS` only.

**Overview** (:class:`OverviewQuery`): the events with ``ts_ms`` in ``[max(from, not_before),
to)``, bucketed by local hour, local day (IANA zone, DST-aware, as the event analysis) or
``all``, optionally split by one system property ``P`` (``--group-by '$platform'``; the value
of ``P`` on each event; ``None`` when absent). Figures of a row ``(bucket, P value)``:

* ``active_users``: distinct ``user_id`` among the row's events (any event, custom or built-in);
* ``new_users``: distinct users among the row's events that carry ``$new_user`` = true
  (derived by the platform: the user's first UTC day for the app);
* ``launches``: number of ``$launch`` events; ``page_views``: number of ``$pageview`` events;
* ``avg_page_s``: mean ``duration_ms`` / 1000 of the row's ``$pageleave`` events that carry
  a duration (``None`` when there is none);
* a **session** is the set of events (in the window) of one user sharing one ``$session``
  id (the pair ``(user_id, $session)``: ids are made per user by the runtime); events without
  ``$session`` belong to no session. A session belongs to the bucket and to the ``P`` value of
  its first event (time order, ties by event id), even if it runs into the next bucket.
  ``sessions``: the number of sessions of the row; ``avg_session_s``: their mean length in
  seconds, length = last event time - first event time (a one-event session lasts 0 s);
  ``pages_per_session``: the mean number of ``$pageview`` events per session of the row
  (``None`` for both when the row has no session).

Rows come sorted by bucket, then by the ``P`` value (``None`` first); only buckets with at
least one event appear (a chart fills the gaps with zeros). Keys: ``bucket``, then ``P`` when
grouped, then the figures above.

``top_pages`` (the whole window, per ``P`` value): for each ``path`` of a ``$pageview``,
``views`` (its ``$pageview`` events), ``visitors`` (distinct users among them), ``avg_time_s``
(mean duration / 1000 of ``$pageleave`` events with that path, ``None`` when none) and
``exit_rate`` = the share of its views that were the last ``$pageview`` of their session
(views without a ``$session`` are never exits). Pages sorted by views (most first), then
path; at most ``top_pages`` per ``P`` value. ``scenes``: for each ``$scene`` value (``None``
when the event had none), ``users`` = distinct users with a ``$launch`` event from that scene
in the window (a user launched from two scenes counts in both); sorted by users (most first),
then scene.

**Real time** (:class:`RealtimeQuery`): the ``minutes`` most recent minutes by the clock
(``now_ms``, the platform's injectable clock; the current minute included), each with
``active_users`` (distinct users) and ``events`` (count) of the events whose ``ts_ms`` (the
time the event happened, skew-corrected) lies in that minute; every minute is listed, zero
when empty. ``latest``: the most recently *received* events (``received_ms`` newest first,
then ``ts_ms``, then id), at most ``latest``, received within the same minutes (so an event
reported late after a day offline shows there when it arrives). Minute labels are local
wall-clock times ``"2026-11-29T23:41"`` in the query's zone.

Bad input raises :class:`miniport.errors.ReportQueryError` with a message that says what to
give instead.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, cast

from miniport.errors import ReportQueryError

from .reports import (
    TABLE,
    Granularity,
    _as_bool,
    _base_where,
    _bucket_label,
    _check_window,
    _Columns,
    _none_first,
    _Params,
    _zone,
    local_number_sql,
)
from .sql_dialects import DUCKDB, Dialect
from .system_props import SYSTEM_PROPERTIES

__all__ = [
    "LATEST_PROPS",
    "MAX_LATEST",
    "MAX_MINUTES",
    "MAX_TOP_PAGES",
    "CompiledMulti",
    "OverviewQuery",
    "RealtimeQuery",
    "Statement",
    "compile_overview",
    "compile_realtime",
    "iso_utc",
]

MAX_TOP_PAGES: Final = 100
MAX_MINUTES: Final = 180
MAX_LATEST: Final = 200
_MS_PER_MINUTE: Final = 60_000
_MS_PER_HOUR: Final = 3_600_000
_MS_PER_DAY: Final = 86_400_000
_SHIFT_DAYS: Final = 100_000  # as in reports: keeps integer division on positive numbers
_EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=UTC)
LAUNCH, PAGEVIEW, PAGELEAVE = "$launch", "$pageview", "$pageleave"

Row = tuple[object, ...]


def _check_int(label: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ReportQueryError(f"{label} must be a whole number from {lo} to {hi}, not {value!r}")
    return value


def _check_group(name: str | None) -> None:
    if name is None:
        return
    if not isinstance(name, str) or name not in SYSTEM_PROPERTIES:
        raise ReportQueryError(
            f"overview group-by {name!r} is not a system property "
            f"(one of {', '.join(SYSTEM_PROPERTIES)})"
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class OverviewQuery:
    from_ms: int
    to_ms: int
    not_before_ms: int
    granularity: Granularity = "day"
    tz: str = "UTC"
    group_by: str | None = None
    top_pages: int = 20

    def __post_init__(self) -> None:
        _check_window(self.from_ms, self.to_ms, self.not_before_ms)
        if self.granularity not in ("hour", "day", "all"):
            raise ReportQueryError(f"granularity is hour, day or all, not {self.granularity!r}")
        _zone(self.tz)
        _check_group(self.group_by)
        _check_int("top_pages", self.top_pages, 1, MAX_TOP_PAGES)


@dataclass(frozen=True, kw_only=True, slots=True)
class RealtimeQuery:
    now_ms: int
    not_before_ms: int
    minutes: int = 30
    latest: int = 50
    tz: str = "UTC"
    received_before_ms: int | None = None
    """Only events received before this (the console adds what pushes say was received from
    then on: see :mod:`miniport.analytics.live`); None: every event stored."""

    def __post_init__(self) -> None:
        _check_int("now_ms", self.now_ms, _MS_PER_DAY, 10**15)
        if self.received_before_ms is not None:
            _check_int("received_before_ms", self.received_before_ms, 0, 10**15)
        _check_int("not_before_ms", self.not_before_ms, 0, 10**15)
        _check_int("minutes", self.minutes, 1, MAX_MINUTES)
        _check_int("latest", self.latest, 0, MAX_LATEST)
        _zone(self.tz)

    @property
    def window(self) -> tuple[int, int]:
        """``[first minute's start, current minute's end)``."""
        end = (self.now_ms // _MS_PER_MINUTE + 1) * _MS_PER_MINUTE
        return end - self.minutes * _MS_PER_MINUTE, end


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    params: tuple[object, ...]


@dataclass(frozen=True, slots=True)
class CompiledMulti:
    """Several statements (run in order) and the function that shapes their result rows."""

    statements: tuple[Statement, ...]
    shape: Callable[[Sequence[Sequence[Row]]], dict[str, object]] = field(repr=False)
    columns: tuple[str, ...] = ()
    """The system-property / built-in columns the SQL reads (a store must have them)."""


# --------------------------------------------------------------------------- SQL pieces


class _Sql:
    """Dialect-specific aggregate pieces (DuckDB ``FILTER``, ClickHouse ``-If``)."""

    def __init__(self, dialect: Dialect) -> None:
        self.d = dialect
        self.ch = dialect.is_clickhouse

    def cond(self, expr: str) -> str:
        """A condition that is false (never NULL) where ``expr`` is NULL."""
        return f"ifNull(({expr}), 0)" if self.ch else f"coalesce(({expr}), false)"

    def not_null(self, expr: str) -> str:
        return f"isNotNull({expr})" if self.ch else f"({expr}) IS NOT NULL"

    def is_true(self, expr: str) -> str:
        return f"(ifNull({expr}, 0) = 1)" if self.ch else f"coalesce({expr}, false)"

    def count_if(self, cond: str) -> str:
        return f"countIf({self.cond(cond)})" if self.ch else f"count(*) FILTER (WHERE {cond})"

    def uniq_if(self, expr: str, cond: str) -> str:
        if self.ch:
            return f"uniqExactIf({expr}, {self.cond(cond)})"
        return f"count(DISTINCT {expr}) FILTER (WHERE {cond})"

    def sum_if(self, expr: str, cond: str) -> str:
        if self.ch:
            return f"sumIf(ifNull({expr}, 0), {self.cond(cond)})"
        return f"sum({expr}) FILTER (WHERE {cond})"

    def pick(self, expr: str, which: str) -> str:
        """``expr`` on the first (``min``) or last (``max``) event by ``(ts_ms, uid)`` of a
        group, NULL included (each wrapped so that a NULL value is not skipped)."""
        if self.ch:
            fn = "argMin" if which == "min" else "argMax"
            return f"tupleElement({fn}(tuple({expr}), tuple(ts_ms, uid)), 1)"
        fn = "arg_min" if which == "min" else "arg_max"
        return f"{fn}({{'v': {expr}}}, (ts_ms, uid)).v"


def _bucket_expr(column: str, q: OverviewQuery, params: _Params) -> str:
    """The local bucket number of the time in ``column`` (hours/days, offsets per DST
    segment of the window: the same numbers as the event analysis)."""
    width = _MS_PER_HOUR if q.granularity == "hour" else _MS_PER_DAY
    lo = max(q.from_ms, q.not_before_ms)
    return local_number_sql(column, q.tz, lo, q.to_ms, width, params)


@dataclass(slots=True)
class _Ctx:
    q: OverviewQuery
    appid: str
    columns: _Columns
    sql: _Sql
    group: str | None  # the group column expression
    statements: list[Statement] = field(default_factory=list)

    def col(self, name: str) -> str:
        return self.columns.resolve(name).expr

    def start(self) -> tuple[_Params, str, str]:
        """New statement: its params, FROM source and base WHERE."""
        params = _Params(self.sql.d)
        q = self.q
        base = _base_where(self.appid, q.from_ms, q.to_ms, q.not_before_ms, params)
        return params, base.source(params, self.columns), base.sql

    def add(self, sql: str, params: _Params) -> None:
        self.statements.append(Statement(sql, tuple(params.values)))

    def keys(self, bucket: str | None, *, group: str | None = None) -> tuple[list[str], list[str]]:
        select: list[str] = []
        keys: list[str] = []
        if bucket is not None:
            select.append(f"{bucket} AS b")
            keys.append("b")
        g = group if group is not None else self.group
        if g is not None:
            select.append(f"{g} AS g")
            keys.append("g")
        return select, keys

    def grouped(self, select: list[str], keys: list[str], source: str, where: str) -> str:
        sql = f"SELECT {', '.join(select)} FROM {source} WHERE {where}"
        return sql + (self.sql.d.group_order(keys) if keys else " HAVING count(*) > 0")


def _events_statement(c: _Ctx) -> None:
    if not c.sql.ch:
        _fused_duckdb(c)
        return
    params, source, where = c.start()
    s = c.sql
    bucket = _bucket_expr("ts_ms", c.q, params) if c.q.granularity != "all" else None
    select, keys = c.keys(bucket)
    is_ = {e: f"event = {params.add(e, 'VARCHAR')}" for e in (LAUNCH, PAGEVIEW, PAGELEAVE)}
    duration = c.col("$duration_ms")
    timed = f"{is_[PAGELEAVE]} AND {s.not_null(duration)}"
    select += [
        s.d.count_distinct("user_id"),
        s.uniq_if("user_id", s.is_true(c.col("$new_user"))),
        s.count_if(is_[LAUNCH]),
        s.count_if(is_[PAGEVIEW]),
        s.sum_if(duration, timed),
        s.count_if(timed),
    ]
    c.add(c.grouped(select, keys, source, where), params)


def _sessions_statement(c: _Ctx) -> None:
    if not c.sql.ch:  # with the events (_fused_duckdb)
        c.statements.append(Statement("", ()))
        return
    params, source, where = c.start()
    s = c.sql
    session = c.col("$session")
    pageview = f"event = {params.add(PAGEVIEW, 'VARCHAR')}"
    group = f", {s.pick(c.group, 'min')} AS g" if c.group is not None else ""
    inner = (
        f"SELECT user_id, {session} AS sid, min(ts_ms) AS first_ms, max(ts_ms) AS last_ms"
        f"{group}, {s.count_if(pageview)} AS pv FROM {source}"
        f" WHERE {where} AND {s.not_null(session)} GROUP BY user_id, sid"
    )
    bucket = _bucket_expr("first_ms", c.q, params) if c.q.granularity != "all" else None
    select, keys = c.keys(bucket, group="g" if c.group is not None else None)
    select += ["count(*)", "sum(last_ms - first_ms)", "sum(pv)"]
    sql = f"SELECT {', '.join(select)} FROM ({inner})"
    sql += s.d.group_order(keys) if keys else " HAVING count(*) > 0"
    c.add(sql, params)


def _fused_rollups(
    c: _Ctx, params: _Params, source: str, where: str, pv: str
) -> tuple[str, str]:
    """The two aggregations of ``_fused_duckdb``: ``a`` by (user, session, bucket, group) over
    the events, and ``ss`` per session over ``a``."""
    s, q = c.sql, c.q
    session, path, duration = c.col("$session"), c.col("$path"), c.col("$duration_ms")
    launch, leave = (params.add(e, "VARCHAR") for e in (LAUNCH, PAGELEAVE))
    g = c.group if c.group is not None else "NULL"
    bucket = _bucket_expr("ts_ms", q, params) if q.granularity != "all" else "NULL"
    a = (
        f"SELECT user_id AS u, {session} AS s, {bucket} AS b, {g} AS g,"
        f" bool_or({s.is_true(c.col('$new_user'))}) AS nu,"
        f" count(*) FILTER (WHERE event = {launch}) AS l,"
        f" count(*) FILTER (WHERE event = {pv}) AS v,"
        f" sum({duration}) FILTER (WHERE event = {leave}) AS ds,"
        f" count({duration}) FILTER (WHERE event = {leave}) AS dn,"
        f" min(ts_ms) AS t0, max(ts_ms) AS t1,"
        f" max(ts_ms, 2) FILTER (WHERE event = {pv}) AS tv2,"
        f" arg_max_null({path}, ts_ms) FILTER (WHERE event = {pv}) AS lp"
        f" FROM {source} WHERE {where} GROUP BY 1, 2, 3, 4"
    )
    # per session: the first time and the row(s) at it, the last view time and the row(s) at
    # it (a row's own tie: its top two view times are equal)
    tied = "(len(tv2) = 2 AND tv2[1] = tv2[2])"
    ss = (
        "SELECT u AS s_user, s AS s_sid, min(t0) AS s_first, max(t1) AS s_last, sum(v) AS s_pv,"
        " min(t0, 2) AS s_f2, arg_min_null(g, t0) AS s_fg,"
        " max(tv2[1], 2) AS s_l2, arg_max_null(g, tv2[1]) AS s_lg,"
        f" arg_max_null(lp, tv2[1]) AS s_lp, arg_max({tied}, tv2[1]) AS s_ltied"
        " FROM a WHERE s IS NOT NULL GROUP BY u, s"
    )
    return a, ss


def _fused_duckdb(c: _Ctx) -> None:
    """DuckDB: the per-bucket event figures, the session figures and the page exits in ONE
    statement over ONE hash aggregation of the events, by ``(user, session, bucket, group)``
    (``a``: a few hundred thousand rows at 10M events); every figure is then computed from
    ``a``. Rows: ``(k, b, g, p, c1..c6)``, ``k`` = 0: ``b, g`` and the six event figures;
    ``k`` = 1: ``b, g`` and sessions, total length, page views; ``k`` = 2: ``g, p`` (the last
    view's group value and path) and exits.

    Exactness without ordering every event by ``(ts_ms, uid)`` (a struct key, ``uid`` a
    string: ~0.6 CPU s at 10M): a session's first event is in the ``a`` row with the smallest
    first time; when that row is the only one at that time, all the session's events at that
    time share its group value and no tie-break is needed. Only when two rows share it (two
    group values at the first time) are the events at that time read again and the smallest
    id picked (``f``). Likewise the last view: ``a`` keeps per row the last view's time, the
    top two view times (``max(ts_ms, 2)``) and a path at the last time; when one row alone
    holds the session's last view time and no two views share it, that path is the exit;
    otherwise the views at that time are read again and the largest id wins (``l``). Both
    re-reads join the events with the (usually empty) set of such sessions."""
    params, source, where = c.start()
    q = c.q
    session, path = c.col("$session"), c.col("$path")
    pv = params.add(PAGEVIEW, "VARCHAR")
    a, ss = _fused_rollups(c, params, source, where, pv)
    first_amb = "(len(s_f2) = 2 AND s_f2[1] = s_f2[2])"
    last_amb = "(len(s_l2) = 2 AND s_l2[1] = s_l2[2] OR s_ltied)"
    on = f"user_id = s_user AND {session} = s_sid"
    ctes = [f"a AS MATERIALIZED ({a})", f"ss AS MATERIALIZED ({ss})"]
    grouped = c.group is not None
    if grouped:
        ctes.append(
            f"f AS (SELECT s_user AS f_user, s_sid AS f_sid,"
            f" arg_min({{'v': {c.group}}}, uid).v AS f_g"
            f" FROM {source} JOIN ss ON {on} AND ts_ms = s_first"
            f" WHERE {where} AND {first_amb} GROUP BY s_user, s_sid)"
        )
    fields = f", 'g': {c.group}" if grouped else ""
    ctes.append(
        f"l AS (SELECT s_user AS l_user, s_sid AS l_sid,"
        f" max({{'u': uid, 'p': {path}{fields}}}) AS m"
        f" FROM {source} JOIN ss ON {on} AND ts_ms = s_l2[1]"
        f" WHERE {where} AND event = {pv} AND {last_amb} GROUP BY s_user, s_sid)"
    )
    events = (
        "SELECT 0 AS k, b, g, NULL AS p, count(*) AS c1, count(*) FILTER (WHERE nu) AS c2,"
        " sum(l) AS c3, sum(v) AS c4, sum(ds) AS c5, sum(dn) AS c6 FROM (SELECT b, g, u,"
        " bool_or(nu) AS nu, sum(l) AS l, sum(v) AS v, sum(ds) AS ds, sum(dn) AS dn"
        " FROM a GROUP BY b, g, u) GROUP BY b, g"
    )
    s_bucket = _bucket_expr("s_first", q, params) if q.granularity != "all" else "NULL"
    if grouped:
        first_g = f"CASE WHEN {first_amb} THEN f_g ELSE s_fg END"
        from_f = "ss LEFT JOIN f ON s_user = f_user AND s_sid = f_sid"
    else:
        first_g, from_f = "NULL", "ss"
    sessions = (
        f"SELECT 1, {s_bucket}, {first_g}, NULL, count(*), sum(s_last - s_first), sum(s_pv),"
        f" NULL, NULL, NULL FROM {from_f} GROUP BY 2, 3"
    )
    last_g = f"CASE WHEN {last_amb} THEN m.g ELSE s_lg END" if grouped else "NULL"
    last_p = f"CASE WHEN {last_amb} THEN m.p ELSE s_lp END"
    exits = (
        f"SELECT 2, NULL, g, p, count(*), NULL, NULL, NULL, NULL, NULL FROM (SELECT {last_g} AS g,"
        f" {last_p} AS p FROM ss LEFT JOIN l ON s_user = l_user AND s_sid = l_sid"
        " WHERE s_pv > 0) WHERE p IS NOT NULL GROUP BY 3, 4"
    )
    c.add(f"WITH {', '.join(ctes)} {events} UNION ALL {sessions} UNION ALL {exits}", params)


def _pages_statement(c: _Ctx) -> None:
    params, source, where = c.start()
    s = c.sql
    path, duration = c.col("$path"), c.col("$duration_ms")
    pv, leave = params.add(PAGEVIEW, "VARCHAR"), params.add(PAGELEAVE, "VARCHAR")
    select, keys = c.keys(None)
    select.append(f"{path} AS p")
    keys.append("p")
    is_pv, timed = f"event = {pv}", f"event = {leave} AND {s.not_null(duration)}"
    base = where
    where += f" AND event IN ({pv}, {leave}) AND {s.not_null(path)}"
    if s.ch:
        select += [
            s.count_if(is_pv),
            s.uniq_if("user_id", is_pv),
            s.sum_if(duration, timed),
            s.count_if(timed),
        ]
        c.add(c.grouped(select, keys, source, where), params)
        return
    # DuckDB: the views and visitors from the page views alone (one row per (group, page,
    # user), then count them), the times from the page leaves alone, per (group, page): two
    # narrower aggregations than one per (group, page, user) over both kinds
    views = (
        f"SELECT {', '.join(keys)}, sum(v) AS v, count(*) AS n, NULL AS ds, NULL AS dn"
        f" FROM (SELECT {', '.join(select)}, user_id, count(*) AS v FROM {source}"
        f" WHERE {base} AND {is_pv} AND {s.not_null(path)}"
        f" GROUP BY {', '.join([*keys, 'user_id'])}) GROUP BY {', '.join(keys)}"
    )
    times = (
        f"SELECT {', '.join(select)}, 0, 0, sum({duration}), count({duration}) FROM {source}"
        f" WHERE {base} AND event = {leave} AND {s.not_null(path)} GROUP BY {', '.join(keys)}"
    )
    sql = (
        f"SELECT {', '.join(keys)}, sum(v), sum(n), sum(ds), sum(dn)"
        f" FROM ({views} UNION ALL {times})"
    )
    c.add(sql + s.d.group_order(keys), params)


def _exits_statement(c: _Ctx) -> None:
    if not c.sql.ch:  # with the sessions (_sessions_and_exits_duckdb)
        c.statements.append(Statement("", ()))
        return
    params, source, where = c.start()
    s = c.sql
    session, path = c.col("$session"), c.col("$path")
    group = f", {s.pick(c.group, 'max')} AS g" if c.group is not None else ""
    last = f"{s.pick(path, 'max')} AS p{group}"
    inner = (
        f"SELECT user_id, {session} AS sid, {last} FROM {source}"
        f" WHERE {where} AND event = {params.add(PAGEVIEW, 'VARCHAR')}"
        f" AND {s.not_null(session)} GROUP BY user_id, sid"
    )
    select, keys = c.keys(None, group="g" if c.group is not None else None)
    select += ["p", "count(*)"]
    keys.append("p")
    sql = f"SELECT {', '.join(select)} FROM ({inner}) WHERE {s.not_null('p')}"
    c.add(sql + s.d.group_order(keys), params)


def _scenes_statement(c: _Ctx) -> None:
    params, source, where = c.start()
    select, keys = c.keys(None)
    select.append(f"{c.col('$scene')} AS sc")
    keys.append("sc")
    select.append(c.sql.d.count_distinct("user_id"))
    where += f" AND event = {params.add(LAUNCH, 'VARCHAR')}"
    c.add(c.grouped(select, keys, source, where), params)


def compile_overview(
    appid: str,
    q: OverviewQuery,
    *,
    existing_columns: Collection[str] | None = None,
    dialect: Dialect = DUCKDB,
) -> CompiledMulti:
    """Five statements: per-bucket event figures, per-bucket session figures, pages, page
    exits, scenes (on DuckDB the first statement also gives the session figures and the
    exits, and the session and exits statements are empty: their SQL is ``""``, no rows).
    ``existing_columns``: the table's columns (one not created yet reads as NULL); ``None``
    means all of them."""
    columns = _Columns({}, existing_columns, dialect)
    for name in ("$new_user", "$duration_ms", "$session", "$path", "$scene"):
        columns.resolve(name)  # every statement's source carries all of them (ClickHouse)
    group = columns.resolve(q.group_by) if q.group_by is not None else None
    c = _Ctx(q, appid, columns, _Sql(dialect), group.expr if group is not None else None)
    for build in (
        _events_statement,
        _sessions_statement,
        _pages_statement,
        _exits_statement,
        _scenes_statement,
    ):
        build(c)
    as_bool = group is not None and group.type == "bool"
    shape = _OverviewShape(q, as_bool, fused=not dialect.is_clickhouse)
    return CompiledMulti(tuple(c.statements), shape, tuple(columns.used))


# --------------------------------------------------------------------------- shaping


def _int(value: object) -> int:
    return int(cast(int, value)) if value is not None else 0


def _ratio(total: object, n: object, scale: float = 1.0) -> float | None:
    count = _int(n)
    return _int(total) / count / scale if count else None


class _OverviewShape:
    def __init__(self, q: OverviewQuery, as_bool: bool, *, fused: bool = False) -> None:
        self.q = q
        self.fused = fused  # events, sessions and exits from one statement (_fused_duckdb)
        self.grouped = q.group_by is not None
        self.as_bool = as_bool

    def _split(self, row: Row, bucket: bool) -> tuple[str, object, Row]:
        label, rest = "all", row
        if bucket:
            label = _bucket_label(self.q.granularity, cast(int, row[0]))
            rest = row[1:]
        g: object = None
        if self.grouped:
            g = _as_bool(rest[0]) if self.as_bool else rest[0]
            rest = rest[1:]
        return label, g, rest

    def _head(self, **items: object) -> dict[str, object]:
        out: dict[str, object] = {}
        if "bucket" in items:
            out["bucket"] = items.pop("bucket")
        if self.grouped:
            assert self.q.group_by is not None
            out[self.q.group_by] = items.pop("g")
        items.pop("g", None)
        out.update(items)
        return out

    def __call__(self, results: Sequence[Sequence[Row]]) -> dict[str, object]:
        events, sessions, pages, exits, scenes = results
        if self.fused:
            events, sessions, exits = self._unfuse(events)
        return {
            "rows": self._rows(events, sessions),
            "top_pages": self._pages(pages, exits),
            "scenes": self._scenes(scenes),
        }

    def _unfuse(self, rows: Sequence[Row]) -> tuple[list[Row], list[Row], list[Row]]:
        """The fused rows ``(k, b, g, p, c1..c6)`` as the separate event, session and exit
        statements give them."""
        head = (self.q.granularity != "all", self.grouped)
        events: list[Row] = []
        sessions: list[Row] = []
        exits: list[Row] = []
        for k, b, g, p, *figures in rows:
            keys = (b,) * head[0] + (g,) * head[1]
            if k == 0:
                events.append((*keys, *figures))
            elif k == 1:
                sessions.append((*keys, *figures[:3]))
            else:
                exits.append((*((g,) * head[1]), p, figures[0]))
        return events, sessions, exits

    def _rows(self, events: Sequence[Row], sessions: Sequence[Row]) -> list[dict[str, object]]:
        bucket = self.q.granularity != "all"
        by_key: dict[tuple[str, object], Row] = {}
        for row in sessions:
            label, g, rest = self._split(row, bucket)
            if _int(rest[0]):
                by_key[(label, g)] = rest
        out: list[dict[str, object]] = []
        keys: dict[tuple[str, object], Row] = {}
        for row in events:
            label, g, rest = self._split(row, bucket)
            keys[(label, g)] = rest
        for key in by_key:
            keys.setdefault(key, (0, 0, 0, 0, None, 0))
        for label, g in sorted(keys, key=lambda k: (k[0], _none_first(k[1]))):
            active, new, launches, views, dur_sum, dur_n = keys[(label, g)]
            n, length, pv = by_key.get((label, g), (0, 0, 0))
            out.append(
                self._head(
                    bucket=label,
                    g=g,
                    active_users=_int(active),
                    new_users=_int(new),
                    launches=_int(launches),
                    sessions=_int(n),
                    avg_session_s=_ratio(length, n, 1000.0),
                    page_views=_int(views),
                    avg_page_s=_ratio(dur_sum, dur_n, 1000.0),
                    pages_per_session=_ratio(pv, n),
                )
            )
        return out

    def _pages(self, pages: Sequence[Row], exits: Sequence[Row]) -> list[dict[str, object]]:
        exit_counts: dict[tuple[object, object], int] = {}
        for row in exits:
            _, g, rest = self._split(row, False)
            exit_counts[(g, rest[0])] = _int(rest[1])
        per_group: dict[object, list[dict[str, object]]] = {}
        for row in pages:
            _, g, rest = self._split(row, False)
            path, views, visitors, dur_sum, dur_n = rest
            if not _int(views):
                continue
            per_group.setdefault(g, []).append(
                self._head(
                    g=g,
                    path=path,
                    views=_int(views),
                    visitors=_int(visitors),
                    avg_time_s=_ratio(dur_sum, dur_n, 1000.0),
                    exit_rate=exit_counts.get((g, path), 0) / _int(views),
                )
            )
        out: list[dict[str, object]] = []
        for g in sorted(per_group, key=_none_first):
            items = sorted(per_group[g], key=lambda r: (-cast(int, r["views"]), r["path"]))
            out += items[: self.q.top_pages]
        return out

    def _scenes(self, scenes: Sequence[Row]) -> list[dict[str, object]]:
        items: list[tuple[object, dict[str, object]]] = []
        for row in scenes:
            _, g, rest = self._split(row, False)
            items.append((g, self._head(g=g, scene=rest[0], users=_int(rest[1]))))
        items.sort(
            key=lambda t: (_none_first(t[0]), -cast(int, t[1]["users"]), _none_first(t[1]["scene"]))
        )
        return [item for _, item in items]


# --------------------------------------------------------------------------- real time

LATEST_PROPS: Final = ("$path", "$platform", "$scene", "$session")
"""The system properties shown with each of the latest events (also in the console's pushes)."""


def _minute_label(minute_ms: int, tz: str) -> str:
    local = (_EPOCH_UTC + timedelta(milliseconds=minute_ms)).astimezone(_zone(tz))
    return local.strftime("%Y-%m-%dT%H:%M")


def iso_utc(ts_ms: int) -> str:
    moment = _EPOCH_UTC + timedelta(milliseconds=ts_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def compile_realtime(
    appid: str,
    q: RealtimeQuery,
    *,
    existing_columns: Collection[str] | None = None,
    dialect: Dialect = DUCKDB,
) -> CompiledMulti:
    """Two statements: users and events per minute, and the latest events received."""
    columns = _Columns({}, existing_columns, dialect)
    start, end = q.window
    lo = max(start, q.not_before_ms)
    statements: list[Statement] = []
    if lo < end:
        params = _Params(dialect)
        base = _base_where(appid, lo, end, 0, params)
        minute = dialect.int_div("ts_ms", _MS_PER_MINUTE)
        select = f"{minute} AS m, {dialect.count_distinct('user_id')}, count(*)"
        where = base.sql
        carried = list(columns.used)
        if q.received_before_ms is not None:
            where += f" AND received_ms < {params.add(q.received_before_ms, 'BIGINT')}"
            carried.append("received_ms")
        source = dialect.source(TABLE, base.appid, (base.lo, base.hi), carried)
        sql = f"SELECT {select} FROM {source} WHERE {where}"
        statements.append(Statement(sql + dialect.group_order(["m"]), tuple(params.values)))
    else:
        statements.append(Statement("", ()))
    params = _Params(dialect)
    props = [columns.resolve(name) for name in LATEST_PROPS]
    app = params.add(appid, "VARCHAR")
    source = dialect.source(TABLE, app, None, [*columns.used, "received_ms"])
    select = ", ".join(
        ["ts_ms", "received_ms", "event", "user_id", "page", "uid", *(p.expr for p in props)]
    )
    where = (
        f"appid = {app} AND {dialect.visible()} AND received_ms >= {params.add(start, 'BIGINT')}"
        f" AND ts_ms >= {params.add(q.not_before_ms, 'BIGINT')}"
    )
    if q.received_before_ms is not None:
        where += f" AND received_ms < {params.add(q.received_before_ms, 'BIGINT')}"
    limit = int(q.latest)  # checked: a whole number 0..MAX_LATEST
    sql = (
        f"SELECT {select} FROM {source} WHERE {where}"
        f" ORDER BY received_ms DESC, ts_ms DESC, uid DESC LIMIT {limit}"
    )
    statements.append(Statement(sql, tuple(params.values)))

    def shape(results: Sequence[Sequence[Row]]) -> dict[str, object]:
        per_minute = {cast(int, r[0]): (_int(r[1]), _int(r[2])) for r in results[0]}
        minutes: list[dict[str, object]] = []
        for m in range(start // _MS_PER_MINUTE, end // _MS_PER_MINUTE):
            users, count = per_minute.get(m, (0, 0))
            label = _minute_label(m * _MS_PER_MINUTE, q.tz)
            minutes.append({"minute": label, "active_users": users, "events": count})
        latest = [
            {
                "time": iso_utc(cast(int, r[0])),
                "ts_ms": r[0],
                "received_ms": r[1],
                "event": r[2],
                "user": r[3],
                "page": r[4],
                **dict(zip(LATEST_PROPS, r[6:], strict=True)),
            }
            for r in results[1]
        ]
        return {"minutes": minutes, "latest": latest}

    return CompiledMulti(tuple(statements), shape, tuple(columns.used))
