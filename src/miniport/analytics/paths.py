"""Paths report: query model and SQL for both event stores (pure: no I/O).

What is counted, over the app's visible events in ``[max(from_ms, not_before_ms), to_ms)``:

* **Steps.** With ``by="page"`` a step is the ``page`` of an event (events without a page
  are left out); with ``by="event"`` it is the event's name.
* **Sequences.** A user's steps in time order (ties: the event id) are cut into sequences
  wherever more than :data:`SESSION_GAP_MS` (30 minutes) passes between two consecutive
  steps of that user, like a web analytics session. Within a sequence a step equal to the
  one before it is folded into it (three events on one page are one page visit; no
  self-loops in the chart).
* **One path per user.** A user's path starts at their FIRST occurrence of the start step
  (the earliest in the window, whatever the sequence) and follows the next ``depth`` steps
  of the same sequence, or fewer when the sequence ends before.

So the counts form a flow: ``users`` is the number of users with a path; a link
``{"depth": d, "from": A, "to": B, "users": n}`` says n users had A as step d-1 and B as
step d (step 0 is the start); a node ``{"depth": d, "name": B, "users": n, "ended": e}``
says n users reached B at step d and e of them had no next step (the path ended there:
the sequence ended, or depth was reached). Links into a node sum to its ``users``, links
out of it to ``users - ended``: a Sankey chart draws the nodes ``"{d}:{name}"`` and the
links as they are; a tree chart can follow them depth by depth. Links are sorted by depth,
then users (most first), then names; nodes by depth, then users (most first), then name.

Output::

    {"start": S, "by": "page", "depth": N, "users": n,
     "nodes": [{"depth", "name", "users", "ended"}...],
     "links": [{"depth", "from", "to", "users"}...]}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, cast

from miniport.errors import ReportQueryError

from .limits import MAX_DEPTH
from .reports import FieldSlots, _base_where, _check_window, _Columns, _Params
from .sql_dialects import DUCKDB, Dialect

__all__ = [
    "MAX_DEPTH",
    "SESSION_GAP_MS",
    "CompiledPaths",
    "PathBy",
    "PathsQuery",
    "compile_paths",
    "shape_paths",
]

PathBy = Literal["page", "event"]
SESSION_GAP_MS: Final = 30 * 60_000
MAX_START_CHARS: Final = 256
_EVENT_RE: Final = re.compile(r"\$?[a-z][a-z0-9_]{0,31}")

Row = tuple[object, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class PathsQuery:
    start: str
    from_ms: int
    to_ms: int
    not_before_ms: int
    by: PathBy = "page"
    depth: int = 3

    def __post_init__(self) -> None:
        if self.by not in ("page", "event"):
            raise ReportQueryError(f"paths go by page or event, not {self.by!r}")
        if not isinstance(self.start, str) or not self.start.strip():
            raise ReportQueryError("give a start page or event")
        if len(self.start) > MAX_START_CHARS:
            raise ReportQueryError(f"the start is at most {MAX_START_CHARS} characters")
        if self.by == "event" and not _EVENT_RE.fullmatch(self.start):
            raise ReportQueryError(f"start event {self.start!r} is not a valid event name")
        if isinstance(self.depth, bool) or not isinstance(self.depth, int):
            raise ReportQueryError("depth must be an integer")
        if not 1 <= self.depth <= MAX_DEPTH:
            raise ReportQueryError(f"depth is 1 to {MAX_DEPTH}, got {self.depth}")
        _check_window(self.from_ms, self.to_ms, self.not_before_ms)


@dataclass(frozen=True, slots=True)
class CompiledPaths:
    """SQL giving rows ``(depth, from, to, users)`` (depth 0: ``('', start, users)``)."""

    sql: str
    params: tuple[object, ...]
    shape: Callable[[Sequence[Row]], dict[str, object]] = field(repr=False)


def compile_paths(
    appid: str,
    q: PathsQuery,
    slots: FieldSlots,
    *,
    existing_columns: Collection[str] | None = None,
    dialect: Dialect = DUCKDB,
) -> CompiledPaths:
    columns = _Columns(slots, existing_columns, dialect)
    params = _Params(dialect)
    base = _base_where(appid, q.from_ms, q.to_ms, q.not_before_ms, params)
    step = "event" if q.by == "event" else "page"
    where = base.sql + (" AND page IS NOT NULL" if q.by == "page" else "")
    source = base.source(params, columns)
    start = params.add(q.start, "VARCHAR")
    if dialect.is_clickhouse:
        sql = _clickhouse(source, where, step, start, q.depth)
    else:
        sql = _duckdb(source, where, step, start, q.depth)
    return CompiledPaths(sql, tuple(params.values), lambda rows: shape_paths(q, rows))


def _duckdb(source: str, where: str, step: str, start: str, depth: int) -> str:
    order = "PARTITION BY user_id ORDER BY ts_ms, uid"
    ctes = [
        f"ev AS (SELECT user_id, ts_ms, uid, {step} AS s, lag(ts_ms) OVER ({order}) AS pt,"
        f" lag({step}) OVER ({order}) AS ps FROM {source} WHERE {where})",
        f"marked AS (SELECT user_id, ts_ms, uid, s, ps,"
        f" (pt IS NULL OR ts_ms - pt > {SESSION_GAP_MS}) AS brk FROM ev)",
        f"sess AS (SELECT user_id, ts_ms, uid, s, ps, brk, sum(CAST(brk AS INTEGER))"
        f" OVER ({order} ROWS UNBOUNDED PRECEDING) AS sid FROM marked)",
        f"steps AS (SELECT user_id, sid, s, row_number() OVER ({order}) AS pos"
        " FROM sess WHERE brk OR s <> ps)",
        # no joins (DuckDB planned the join of steps to their path heads as a range join
        # and spilled tens of GB on 100k events): windows over each user's steps only
        f"marked0 AS (SELECT user_id, sid, s, pos, min(CASE WHEN s = {start} THEN pos END)"
        " OVER (PARTITION BY user_id) AS pos0 FROM steps)",
        "heads AS (SELECT user_id, sid, s, pos, pos0, max(CASE WHEN pos = pos0 THEN sid END)"
        " OVER (PARTITION BY user_id) AS sid0 FROM marked0 WHERE pos0 IS NOT NULL)",
        "path AS (SELECT user_id, pos - pos0 AS d, s FROM heads"
        f" WHERE sid = sid0 AND pos >= pos0 AND pos <= pos0 + {depth})",
        "pairs AS (SELECT d, lag(s) OVER (PARTITION BY user_id ORDER BY d) AS f, s AS t FROM path)",
    ]
    return (
        f"WITH {', '.join(ctes)} SELECT d, f, t, count(*) FROM pairs WHERE d > 0"
        f" GROUP BY 1, 2, 3 UNION ALL SELECT 0, '', {start}, count(*) FROM path WHERE d = 0"
    )


def _clickhouse(source: str, where: str, step: str, start: str, depth: int) -> str:
    """ClickHouse 18.16 has no window functions: each user's steps go into sorted arrays.
    (Lambdas take every array they use as an argument: 18.16 prunes subquery columns that
    are only captured by a lambda.)"""
    s = "event" if step == "event" else "assumeNotNull(page)"
    by_user = (
        "SELECT user_id, arraySort(x -> (tupleElement(x, 1), tupleElement(x, 2)),"
        " groupArray((ts_ms, uid, s))) AS evs"
        f" FROM (SELECT user_id, ts_ms, uid, {s} AS s FROM {source} WHERE {where})"
        " GROUP BY user_id"
    )
    split = (
        "SELECT user_id, arrayMap(x -> tupleElement(x, 3), evs) AS ss,"
        " arrayMap(x -> tupleElement(x, 1), evs) AS ts,"
        " arrayMap((t, pt, i) -> toUInt32(i = 1 OR t - pt > "
        f"{SESSION_GAP_MS}), ts, arrayPushFront(arrayPopBack(ts), toInt64(0)),"
        f" arrayEnumerate(ts)) AS brk FROM ({by_user})"
    )
    folded = (
        "SELECT user_id, arrayMap((b, x, px) -> toUInt8(b = 1 OR x != px), brk, ss,"
        " arrayPushFront(arrayPopBack(ss), '')) AS keep,"
        " arrayFilter((x, k) -> k = 1, ss, keep) AS s2,"
        " arrayFilter((x, k) -> k = 1, arrayCumSum(brk), keep) AS sid2,"
        f" indexOf(s2, {start}) AS idx FROM ({split})"
    )
    sliced = (
        f"SELECT user_id, arraySlice(s2, idx, {depth + 1}) AS ps,"
        f" arraySlice(sid2, idx, {depth + 1}) AS pid, sid2[idx] AS sid0"
        f" FROM ({folded}) WHERE idx > 0"
    )
    paths = (
        "SELECT user_id, arrayFilter((x, y, z) -> y = z, ps, pid,"
        " arrayResize([sid0], length(pid), sid0)) AS path FROM ({sliced})"
    ).replace("{sliced}", sliced)
    links = (
        "SELECT arrayJoin(arrayMap((a, b, i) -> (i, a, b), arrayPopBack(path),"
        " arrayPopFront(path), arrayEnumerate(arrayPopFront(path)))) AS l"
        f" FROM ({paths})"
    )
    return (
        "SELECT toUInt32(tupleElement(l, 1)) AS d, tupleElement(l, 2) AS f,"
        f" tupleElement(l, 3) AS t, count() AS n FROM ({links}) GROUP BY d, f, t"
        f" UNION ALL SELECT toUInt32(0) AS d, '' AS f, {start} AS t, count() AS n"
        f" FROM ({paths})"
    )


def shape_paths(q: PathsQuery, rows: Sequence[Row]) -> dict[str, object]:
    """The report object from rows ``(depth, from, to, users)``."""
    users = 0
    links: list[dict[str, object]] = []
    into: dict[tuple[int, str], int] = {}
    out_of: dict[tuple[int, str], int] = {}
    for d, a, b, n in rows:
        depth, count = int(cast(int, d)), int(cast(int, n))
        if depth == 0:
            users = count
            continue
        frm, to = str(a), str(b)
        links.append({"depth": depth, "from": frm, "to": to, "users": count})
        into[(depth, to)] = into.get((depth, to), 0) + count
        out_of[(depth - 1, frm)] = out_of.get((depth - 1, frm), 0) + count
    links.sort(key=lambda x: (x["depth"], -cast(int, x["users"]), x["from"], x["to"]))
    if users:
        into[(0, q.start)] = users
    nodes = [
        {"depth": d, "name": name, "users": n, "ended": n - out_of.get((d, name), 0)}
        for (d, name), n in into.items()
    ]
    nodes.sort(key=lambda x: (x["depth"], -cast(int, x["users"]), x["name"]))
    return {
        "start": q.start,
        "by": q.by,
        "depth": q.depth,
        "users": users,
        "nodes": nodes,
        "links": links,
    }
