"""SQL dialects of the report compiler (pure: no I/O): DuckDB and ClickHouse.

:mod:`miniport.analytics.reports` builds every report from the same query objects; a
:class:`Dialect` supplies the pieces that differ between the two engines. The ClickHouse
dialect is written for the oldest server the tests reach (18.16: no CTE subqueries, no
non-equality JOIN conditions, no positional ``GROUP BY``, ``uniqExact`` of only NULLs is
NULL) and runs unchanged on the current engine (chDB).

Invariants:

* User values never reach the SQL text the compiler returns: DuckDB gets ``CAST($n AS T)``
  placeholders, ClickHouse gets ``{pN:T}`` placeholders (the syntax of ClickHouse's own
  query parameters). :func:`render_clickhouse` replaces them in ONE pass by escaped
  literals just before execution (18.16 has no server-side parameters), so a value that
  looks like a placeholder is never substituted again.
* On ClickHouse, reports read through :meth:`Dialect.source`: one row per ``(appid, uid)``,
  the copy received first (ties: the smallest content), whatever merges have or have not
  happened; see :mod:`miniport.analytics.clickhouse_store` for why.
* ``visible`` means the same on both: on ClickHouse, syncing a test inserts a visible copy
  of each of its invisible events, and a visible copy wins over an invisible one (one
  insert, exact at once, instead of an asynchronous ``ALTER TABLE UPDATE``); events that
  arrive after the sync stay invisible until the next one, as on DuckDB.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "CLICKHOUSE",
    "DUCKDB",
    "DUPS_TABLE",
    "Dialect",
    "clickhouse_literal",
    "render_clickhouse",
]

DialectName = Literal["duckdb", "clickhouse"]
# Columns every report may read (besides slot columns) through the deduplicated source.
SOURCE_CORE: Final = (
    "event",
    "user_id",
    "ts_ms",
    "page",
    "trigger",
    "action",
    "test_id",
    "visible",
)

DUPS_TABLE: Final = "event_dups"
"""ClickHouse: the ``(appid, uid)`` of every event id that has (or had) more than one copy."""

_CH_TYPES: Final = {
    "VARCHAR": "String",
    "BIGINT": "Int64",
    "INTEGER": "Int32",
    "BOOLEAN": "UInt8",
    "DOUBLE": "Float64",
}
_PLACEHOLDER_RE: Final = re.compile(r"\{p([0-9]+):(String|Int64|Int32|UInt8|Float64)\}")
_INT_BOUNDS: Final = {
    "Int64": (-(2**63), 2**63 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "UInt8": (0, 255),
}


@dataclass(frozen=True, slots=True)
class Dialect:
    name: DialectName

    @property
    def is_clickhouse(self) -> bool:
        return self.name == "clickhouse"

    def placeholder(self, index: int, sql_type: str) -> str:
        """The placeholder of parameter ``index`` (1-based) of ``sql_type`` (a DuckDB type
        name: VARCHAR, BIGINT or INTEGER)."""
        if self.is_clickhouse:
            return f"{{p{index}:{_CH_TYPES[sql_type]}}}"
        return f"CAST(${index} AS {sql_type})"

    def null_of(self, sql_type: str) -> str:
        if self.is_clickhouse:
            return f"CAST(NULL AS Nullable({_CH_TYPES[sql_type]}))"
        return f"CAST(NULL AS {sql_type})"

    def int_div(self, expr: str, width: int) -> str:
        return f"intDiv({expr}, {width})" if self.is_clickhouse else f"({expr}) // {width}"

    def count_distinct(self, expr: str) -> str:
        return f"ifNull(uniqExact({expr}), 0)" if self.is_clickhouse else f"count(DISTINCT {expr})"

    def count_values(self, expr: str) -> str:
        return f"ifNull(count({expr}), 0)" if self.is_clickhouse else f"count({expr})"

    def convert(self, expr: str, from_type: str, to_type: str) -> str:
        """A slot column of ``from_type`` read as ``to_type``, for the exact conversions of
        :data:`miniport.analytics.field_history.EXACT_CONVERSIONS` (NULL stays NULL; bools
        are ``"true"``/``"false"`` as text on both engines, ClickHouse storing them as 0/1)."""
        pair = (from_type, to_type)
        if pair in (("int", "float"), ("bool", "float")):
            return f"toFloat64({expr})" if self.is_clickhouse else f"CAST({expr} AS DOUBLE)"
        if pair == ("bool", "int"):
            return f"toInt32({expr})" if self.is_clickhouse else f"CAST({expr} AS INTEGER)"
        if pair == ("int", "string"):
            return f"toString({expr})" if self.is_clickhouse else f"CAST({expr} AS VARCHAR)"
        if pair == ("bool", "string"):
            return f"CASE WHEN {expr} = 1 THEN 'true' WHEN {expr} = 0 THEN 'false' END"
        raise ValueError(f"no exact conversion from {from_type} to {to_type}")

    def visible(self) -> str:
        return "visible"

    def group_order(self, aliases: Sequence[str]) -> str:
        """``GROUP BY``/``ORDER BY`` of the key columns (aliases on ClickHouse 18.16, which
        has no positional arguments; positions on DuckDB)."""
        keys = list(aliases) if self.is_clickhouse else [str(i + 1) for i in range(len(aliases))]
        order = ", ".join(f"{k} NULLS FIRST" for k in keys)
        return f" GROUP BY {', '.join(keys)} ORDER BY {order}"

    def source(
        self,
        table: str,
        appid: str,
        window: tuple[str, str] | None,
        slot_columns: Sequence[str],
    ) -> str:
        """What a report reads FROM. ``appid``/``window`` are placeholders already in the
        query; ``slot_columns`` the slot columns it uses (or any other columns to carry)."""
        if not self.is_clickhouse:
            return table
        return dedup_source(table, appid, window, slot_columns)


DUCKDB: Final = Dialect("duckdb")
CLICKHOUSE: Final = Dialect("clickhouse")


def dedup_source(
    table: str, appid: str, window: tuple[str, str] | None, slot_columns: Sequence[str]
) -> str:
    """One row per event id of one app: a visible copy before an invisible one, then the
    copy with the smallest ``(received_ms, content)``.

    Only event ids listed in :data:`DUPS_TABLE` can have more than one stored copy (the store
    lists an id there before acknowledging a second copy, see ``clickhouse_store``), so the
    rows of every other id are read as they are, and only the listed ids go through the
    ``GROUP BY uid`` that picks one copy. For
    those, every copy takes part wherever its time, so a copy outside ``window`` can still be
    the one that wins (and then the outer filter drops the event), exactly as a store holding
    only the first copy."""
    carried = [*SOURCE_CORE, *slot_columns]
    # ids are compared by their 64-bit hash (a column computed at insert): 8 bytes to read
    # and compare per row instead of the id's string. A row whose hash is listed goes to the
    # grouping branch, which groups by the id itself, so a collision costs time, never a row.
    dups = f"(SELECT uid_hash FROM {DUPS_TABLE} WHERE appid = {appid})"
    in_window = ""
    if window is not None:
        lo, hi = window
        in_window = f" AND ts_ms >= {lo} AND ts_ms < {hi}"
    single = (
        f"SELECT appid, uid, {', '.join(carried)} FROM {table}"
        f" WHERE appid = {appid}{in_window} AND uid_hash NOT IN {dups}"
    )
    picked = ", ".join(f"tupleElement(w, {i + 3}) AS {c}" for i, c in enumerate(carried))
    # one app: grouping by uid alone is ~30% cheaper than by (appid, uid) on 18.16
    one_copy = (
        f"SELECT w_appid AS appid, uid, {picked} FROM (SELECT any(appid) AS w_appid, uid,"
        f" min(tuple(toUInt8(1 - visible), received_ms, {', '.join(carried)})) AS w"
        f" FROM {table} WHERE appid = {appid} AND uid_hash IN {dups} GROUP BY uid)"
    )
    return f"({single} UNION ALL {one_copy})"


_LISTED_TEST: Final = re.compile(
    rf"uid_hash (NOT )?IN \(SELECT uid_hash FROM {DUPS_TABLE} WHERE appid = ([^()]*)\)"
)


def reads_listed(sql: str) -> bool:
    """Whether ``sql`` reads through :func:`dedup_source`."""
    return _LISTED_TEST.search(sql) is not None


def listed_apps(sql: str) -> list[str]:
    """The app id expressions (placeholders or literals, as in ``sql``) whose listed ids the
    :func:`dedup_source` in ``sql`` read."""
    return sorted({m.group(2).strip() for m in _LISTED_TEST.finditer(sql)})


def grouping_every_id(sql: str) -> str:
    """``sql`` with every :func:`dedup_source` in it grouping all of the app's ids, listed or
    not: the single-copy branch reads nothing and the grouping branch every row. The rows are
    the same (an unlisted id has one copy, which its group keeps), whatever ``event_dups``
    holds or gains during the query, at the cost of grouping every event (~35x the plain
    scan, see ``bench/clickhouse_report.py``)."""
    return _LISTED_TEST.sub(lambda m: "0" if m.group(1) else "1", sql)


def clickhouse_funnel(
    source: str,
    where: str,
    group_expr: str,
    step_conds: Sequence[str],
    window: str,
    order: Literal["strict", "any"],
) -> str:
    """A funnel on ClickHouse 18.16 (no CTEs, no window functions, no ``b.t > p.t`` joins),
    with the rules of ``reports.compile_funnel``: one row per user with their events sorted
    by ``(time, first step matched, id)`` in arrays, ``ARRAY JOIN`` over the step-1 events
    (anchors), each later step's index found with ``arrayFirstIndex``, then per user the
    anchor that goes furthest (``argMax``). Returns one row per group:
    ``g, n1..nK, m1..m(K-1)`` (users who reached each step, median ms to the next step).

    Known limit: the work and memory of one user grow with (step-1 events) x (their events in
    the range); one user with tens of thousands of events in the range (a bot) can pass the
    server's per-query memory limit."""
    k = len(step_conds)
    conds = ", ".join(f"ifNull(({c}), 0) AS c{i}" for i, c in enumerate(step_conds))
    rank = "multiIf(" + ", ".join(f"c{i}, {i}" for i in range(k)) + f", {k})"
    tuple_cs = ", ".join(f"c{i}" for i in range(k))
    per_user = (
        "SELECT user_id, tupleElement(argMinIf(tuple(g), tuple(ts_ms, uid), c0), 1) AS g,"
        f" arraySort(groupArray(tuple(ts_ms, r, uid, {tuple_cs}))) AS e"
        f" FROM (SELECT user_id, ts_ms, uid, {group_expr} AS g, {conds}, {rank} AS r"
        f" FROM {source} WHERE {where}) WHERE r < {k} GROUP BY user_id HAVING countIf(c0) > 0"
    )
    arrays = "".join(f", arrayMap(x -> tupleElement(x, {i + 4}), e) AS a{i}" for i in range(k))
    unpacked = (
        f"SELECT user_id, g, arrayMap(x -> tupleElement(x, 1), e) AS ts{arrays},"
        " arrayEnumerate(ts) AS ix"
        f" FROM ({per_user})"
    )

    # the lambdas capture only columns computed in the same SELECT (p1.., t1, lim): 18.16
    # prunes a SUBQUERY column that is used only inside a lambda
    steps = ["ts[p1] AS t1", f"t1 + {window} AS lim", "t1 AS c1"]
    for i in range(1, k):
        if order == "strict":  # after the previous step's event in the sorted order
            hit = f"(x_t, x_c, x_i) -> x_c AND x_i > p{i} AND x_t <= lim"
        else:  # at or after the anchor's time, not an event an earlier step took
            not_used = "".join(f" AND x_i != p{j}" for j in range(1, i + 1))
            hit = f"(x_t, x_c, x_i) -> x_c AND x_t >= t1 AND x_t <= lim{not_used}"
        steps.append(f"if(p{i} > 0, arrayFirstIndex({hit}, ts, a{i}, ix), 0) AS p{i + 1}")
        steps.append(f"if(p{i + 1} > 0, greatest(c{i}, ts[p{i + 1}]), 0) AS c{i + 1}")
    level = " + ".join(f"(p{i + 1} > 0)" for i in range(k))
    deltas = ", ".join(f"c{i + 2} - c{i + 1}" for i in range(k - 1))
    per_anchor = (
        f"SELECT user_id, g, p1, {', '.join(steps)}, {level} AS lv, tuple(lv, {deltas}) AS dd"
        f" FROM ({unpacked}) ARRAY JOIN arrayFilter((x_i, x_c) -> x_c, ix, a0) AS p1"
    )
    per_user_best = (
        "SELECT g, argMax(dd, tuple(lv, -p1)) AS best, tupleElement(best, 1) AS level"
        f"{''.join(f', tupleElement(best, {i + 2}) AS d{i + 1}' for i in range(k - 1))}"
        f" FROM ({per_anchor}) GROUP BY user_id, g"
    )
    sums = ", ".join(f"toUInt64(countIf(level >= {i + 1})) AS n{i + 1}" for i in range(k))
    medians = "".join(
        f", if(countIf(level >= {i + 2}) > 0, (quantileExactIf(0.5)(d{i + 1}, level >= {i + 2})"
        f" - quantileExactIf(0.5)(-d{i + 1}, level >= {i + 2})) / 2, NULL) AS m{i + 1}"
        for i in range(k - 1)
    )
    # the ARRAY JOIN copies a user's arrays to each of their anchors: two-level aggregation
    # hands the per-user rows on in 256 blocks instead of one, so that copy stays small
    # (one block of 10k users x 40 anchors x 100 events went over 2 GB on 18.16)
    settings = " SETTINGS group_by_two_level_threshold = 1, group_by_two_level_threshold_bytes = 1"
    return f"SELECT g, {sums}{medians} FROM ({per_user_best}) GROUP BY g{settings}"


def clickhouse_literal(value: object, ch_type: str) -> str:
    """A ClickHouse literal of ``value`` (strings escaped, ints range-checked and typed)."""
    if ch_type == "String":
        if not isinstance(value, str):
            raise TypeError(f"a String parameter must be str, not {type(value).__name__}")
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if ch_type == "UInt8" and isinstance(value, bool):
        return f"toUInt8({int(value)})"
    if ch_type == "Float64":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"a Float64 parameter must be a number, not {type(value).__name__}")
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"{value} is not a finite number")
        return f"toFloat64({number!r})"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"an {ch_type} parameter must be int, not {type(value).__name__}")
    lo, hi = _INT_BOUNDS[ch_type]
    if not lo <= value <= hi:
        raise ValueError(f"{value} is out of range for {ch_type}")
    return f"to{ch_type}({value})"


def render_clickhouse(sql: str, params: Sequence[object]) -> str:
    """Replace ``{pN:T}`` placeholders by literals of ``params[N-1]`` (one pass)."""

    def literal(match: re.Match[str]) -> str:
        index = int(match.group(1))
        if not 1 <= index <= len(params):
            raise ValueError(f"placeholder p{index} has no parameter")
        return clickhouse_literal(params[index - 1], match.group(2))

    return _PLACEHOLDER_RE.sub(literal, sql)
