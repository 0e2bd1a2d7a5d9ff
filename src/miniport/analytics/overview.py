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
    params, source, where = c.start()
    s = c.sql
    bucket = _bucket_expr("ts_ms", c.q, params) if c.q.granularity != "all" else None
    select, keys = c.keys(bucket)
    is_ = {e: f"event = {params.add(e, 'VARCHAR')}" for e in (LAUNCH, PAGEVIEW, PAGELEAVE)}
    duration = c.col("$duration_ms")
    timed = f"{is_[PAGELEAVE]} AND {s.not_null(duration)}"
    if s.ch:
        select += [
            s.d.count_distinct("user_id"),
            s.uniq_if("user_id", s.is_true(c.col("$new_user"))),
            s.count_if(is_[LAUNCH]),
            s.count_if(is_[PAGEVIEW]),
            s.sum_if(duration, timed),
            s.count_if(timed),
        ]
        c.add(c.grouped(select, keys, source, where), params)
        return
    # DuckDB: one row per (bucket, group, user) first, then count those rows: two
    # count(DISTINCT) per group (each its own hash table over every event) cost ~2x at 10M
    inner = [
        *select,
        "user_id",
        f"bool_or({s.is_true(c.col('$new_user'))}) AS nu",
        f"sum(CAST({is_[LAUNCH]} AS INTEGER)) AS l",
        f"sum(CAST({is_[PAGEVIEW]} AS INTEGER)) AS v",
        f"sum(CASE WHEN {timed} THEN {duration} END) AS ds",
        f"count(CASE WHEN {timed} THEN {duration} END) AS dn",
    ]
    per_user = (
        f"SELECT {', '.join(inner)} FROM {source} WHERE {where}"
        f" GROUP BY {', '.join([*keys, 'user_id'])}"
    )
    outer = [*keys, "count(*)", "count(*) FILTER (WHERE nu)", "sum(l)", "sum(v)", "sum(ds)"]
    outer.append("sum(dn)")
    sql = f"SELECT {', '.join(outer)} FROM ({per_user})"
    c.add(sql + (s.d.group_order(keys) if keys else " HAVING count(*) > 0"), params)


def _sessions_statement(c: _Ctx) -> None:
    if not c.sql.ch:
        _sessions_and_exits_duckdb(c)
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


def _sessions_and_exits_duckdb(c: _Ctx) -> None:
    """DuckDB: the session figures and the page exits in ONE statement over ONE pass that
    groups the events by session (``k`` = 0: ``b, g, sessions, length, page views``;
    ``k`` = 1: ``g, path, exits``; the exits statement is then empty).

    The pass aggregates plain numbers only: the first/last event time, the last page view's
    time, and min/max/count of the group value. A session whose events all carry the same
    group value (or none) needs no tie-break; only for the others are the events at the
    session's first time read again (joined on ``(user, session, time)``) and the one with the
    smallest id picked. The last page view is read again the same way (a join on its time
    finds the one or few page views at it; the largest id wins). Ordering by ``(ts_ms, uid)``
    over every event (a struct key, ``uid`` a string) cost ~0.6 CPU s at 10M events."""
    params, source, where = c.start()
    session, path, g = c.col("$session"), c.col("$path"), c.group
    pv = params.add(PAGEVIEW, "VARCHAR")
    grouped = g is not None
    gstats = (
        f", count(*) AS s_n, count({g}) AS s_ng, min({g}) AS s_gmin, max({g}) AS s_gmax"
        if grouped
        else ""
    )
    per_session = (
        f"SELECT user_id AS s_user, {session} AS s_sid, min(ts_ms) AS s_first,"
        f" max(ts_ms) AS s_last, count(*) FILTER (WHERE event = {pv}) AS s_pv,"
        f" max(ts_ms) FILTER (WHERE event = {pv}) AS s_pv_ms{gstats}"
        f" FROM {source} WHERE {where} AND ({session}) IS NOT NULL GROUP BY user_id, {session}"
    )
    same = "(s_ng = 0 OR (s_ng = s_n AND s_gmin = s_gmax))"
    on = f"user_id = s_user AND {session} = s_sid"
    ctes = [f"s AS MATERIALIZED ({per_session})"]
    if grouped:
        ctes.append(
            f"f AS (SELECT s_user AS f_user, s_sid AS f_sid, arg_min({{'v': {g}}}, uid).v AS f_g"
            f" FROM {source} JOIN s ON {on} AND ts_ms = s_first"
            f" WHERE {where} AND NOT {same} GROUP BY s_user, s_sid)"
        )
    fields = f", 'g': {g}" if grouped else ""
    ctes.append(
        f"l AS (SELECT max({{'u': uid, 'p': {path}{fields}}}) AS m"
        f" FROM {source} JOIN s ON {on} AND ts_ms = s_pv_ms"
        f" WHERE {where} AND event = {pv} GROUP BY s_user, s_sid)"
    )
    bucket = _bucket_expr("s_first", c.q, params) if c.q.granularity != "all" else "NULL"
    if grouped:
        first_g = f"CASE WHEN s_ng = 0 THEN NULL WHEN {same} THEN s_gmin ELSE f_g END"
        from_s = "s LEFT JOIN f ON s_user = f_user AND s_sid = f_sid"
    else:
        first_g, from_s = "NULL", "s"
    sessions = (
        f"SELECT 0 AS k, {bucket} AS b, {first_g} AS g, NULL AS p, count(*) AS n,"
        f" sum(s_last - s_first) AS len, sum(s_pv) AS pv FROM {from_s} GROUP BY 2, 3"
    )
    last_g = "m.g" if grouped else "NULL"
    exits = (
        f"SELECT 1, NULL, {last_g}, m.p, count(*), NULL, NULL FROM l"
        " WHERE m.p IS NOT NULL GROUP BY 3, 4"
    )
    sql = f"WITH {', '.join(ctes)} {sessions} UNION ALL {exits}"
    c.add(sql, params)


def _pages_statement(c: _Ctx) -> None:
    params, source, where = c.start()
    s = c.sql
    path, duration = c.col("$path"), c.col("$duration_ms")
    pv, leave = params.add(PAGEVIEW, "VARCHAR"), params.add(PAGELEAVE, "VARCHAR")
    select, keys = c.keys(None)
    select.append(f"{path} AS p")
    keys.append("p")
    is_pv, timed = f"event = {pv}", f"event = {leave} AND {s.not_null(duration)}"
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
    # DuckDB: one row per (group, page, user) first, then count the users who viewed the
    # page (cheaper than a count(DISTINCT) per page)
    per_user = (
        f"SELECT {', '.join(select)}, user_id, sum(CAST({is_pv} AS INTEGER)) AS v,"
        f" sum(CASE WHEN {timed} THEN {duration} END) AS ds,"
        f" count(CASE WHEN {timed} THEN {duration} END) AS dn"
        f" FROM {source} WHERE {where} GROUP BY {', '.join([*keys, 'user_id'])}"
    )
    outer = [*keys, "sum(v)", "count(*) FILTER (WHERE v > 0)", "sum(ds)", "sum(dn)"]
    c.add(f"SELECT {', '.join(outer)} FROM ({per_user})" + s.d.group_order(keys), params)


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
    exits, scenes (on DuckDB the session statement also gives the exits, and the exits
    statement is empty: its SQL is ``""``, no rows). ``existing_columns``: the table's
    columns (one not created yet reads as NULL); ``None`` means all of them."""
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
        self.fused = fused  # sessions and exits from one statement (k, b, g, p, n, len, pv)
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
            sessions, exits = self._unfuse(sessions)
        return {
            "rows": self._rows(events, sessions),
            "top_pages": self._pages(pages, exits),
            "scenes": self._scenes(scenes),
        }

    def _unfuse(self, rows: Sequence[Row]) -> tuple[list[Row], list[Row]]:
        """The fused rows as the separate session and exit statements give them."""
        head = (self.q.granularity != "all", self.grouped)
        sessions: list[Row] = []
        exits: list[Row] = []
        for k, b, g, p, n, length, pv in rows:
            if k == 0:
                keys = (b,) * head[0] + (g,) * head[1]
                sessions.append((*keys, n, length, pv))
            else:
                exits.append((*((g,) * head[1]), p, n))
        return sessions, exits

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
