"""Retention and paths reports: validation, and the DuckDB store checked against a plain
Python computation on random events (time zones with DST changes included).

The references below are written from the definitions in the modules' docstrings, with
``datetime``/``zoneinfo`` for local days and weeks (not the modules' own period code)."""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miniport.analytics.event_store import DuckDBEventStore, StoredEvent
from miniport.analytics.paths import SESSION_GAP_MS, PathsQuery
from miniport.analytics.reports import ReportQueryError
from miniport.analytics.retention import RetentionQuery, compile_retention
from miniport.analytics.sql_dialects import CLICKHOUSE
from tests.analytics.test_reports import SLOTS, T0, assert_rows_equal, none_first, value_of

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY = 86_400_000
MINUTE = 60_000
TZS = ["UTC", "Asia/Shanghai", "America/New_York", "Asia/Kathmandu", "Europe/Berlin"]
Rows = list[dict[str, object]]


# --------------------------------------------------------------------------- references


def visible(rows: list[StoredEvent], synced: set[str]) -> list[StoredEvent]:
    return [r for r in rows if r.test_id is None or r.test_id in synced]


def local_period(ts_ms: int, unit: str, tz: str) -> date:
    day = (EPOCH + timedelta(milliseconds=ts_ms)).astimezone(ZoneInfo(tz)).date()
    return day if unit == "day" else day - timedelta(days=day.weekday())


def periods_between(a: date, b: date, unit: str) -> int:
    days = (b - a).days
    return days if unit == "day" else days // 7


def ref_retention(rows: list[StoredEvent], q: RetentionQuery, synced: set[str]) -> Rows:
    seen = visible(rows, synced)
    lo = max(q.from_ms, q.not_before_ms)
    window = sorted((r for r in seen if lo <= r.ts_ms < q.to_ms), key=lambda r: (r.ts_ms, r.uid))
    cohorts: dict[tuple[str, date], StoredEvent] = {}  # (user, period) -> first start event
    if q.start == "$new":
        kept = sorted(
            (r for r in seen if q.not_before_ms <= r.ts_ms < q.to_ms),
            key=lambda r: (r.ts_ms, r.uid),
        )
        firsts: dict[str, StoredEvent] = {}
        for r in kept:
            firsts.setdefault(r.user, r)
        for user, r in firsts.items():
            if r.ts_ms >= lo:
                cohorts[(user, local_period(r.ts_ms, q.unit, q.tz))] = r
    else:
        for r in window:
            if q.start in ("$any", r.event):
                cohorts.setdefault((r.user, local_period(r.ts_ms, q.unit, q.tz)), r)
    returns: dict[str, list[tuple[date, int]]] = defaultdict(list)
    for r in window:
        if q.returning in ("$any", r.event):
            returns[r.user].append((local_period(r.ts_ms, q.unit, q.tz), r.ts_ms))
    last = local_period(q.to_ms - 1, q.unit, q.tz)
    table: dict[tuple[date, object], list[int]] = {}
    for (user, period), first in cohorts.items():
        g = value_of(first, q.group_by) if q.group_by else None
        length = min(q.periods, periods_between(period, last, q.unit)) + 1
        counts = table.setdefault((period, g), [0] * (length + 1))
        counts[0] += 1
        for k in range(length):
            if any(
                periods_between(period, p, q.unit) == k and (k > 0 or ts >= first.ts_ms)
                for p, ts in returns[user]
            ):
                counts[k + 1] += 1
    out: Rows = []
    for (period, g), counts in sorted(table.items(), key=lambda x: (x[0][0], none_first(x[0][1]))):
        item: dict[str, object] = {"cohort": period.isoformat()}
        if q.group_by:
            item[q.group_by] = g
        item["size"] = counts[0]
        item["retained"] = counts[1:]
        out.append(item)
    return out


def ref_paths(rows: list[StoredEvent], q: PathsQuery, synced: set[str]) -> dict[str, object]:
    lo = max(q.from_ms, q.not_before_ms)
    by_user: dict[str, list[StoredEvent]] = defaultdict(list)
    for r in visible(rows, synced):
        step = r.event if q.by == "event" else r.page
        if step is not None and lo <= r.ts_ms < q.to_ms:
            by_user[r.user].append(r)
    links: dict[tuple[int, str, str], int] = defaultdict(int)
    users = 0
    for events in by_user.values():
        events.sort(key=lambda r: (r.ts_ms, r.uid))
        sequences: list[list[str]] = []
        prev: int | None = None
        for r in events:
            step = r.event if q.by == "event" else r.page
            assert step is not None
            if prev is None or r.ts_ms - prev > SESSION_GAP_MS:
                sequences.append([step])
            elif sequences[-1][-1] != step:
                sequences[-1].append(step)
            prev = r.ts_ms
        for seq in sequences:
            if q.start in seq:
                path = seq[seq.index(q.start) :][: q.depth + 1]
                users += 1
                for d in range(1, len(path)):
                    links[(d, path[d - 1], path[d])] += 1
                break
    into: dict[tuple[int, str], int] = defaultdict(int)
    out_of: dict[tuple[int, str], int] = defaultdict(int)
    for (d, a, b), n in links.items():
        into[(d, b)] += n
        out_of[(d - 1, a)] += n
    if users:
        into[(0, q.start)] = users
    nodes = [
        {"depth": d, "name": name, "users": n, "ended": n - out_of[(d, name)]}
        for (d, name), n in sorted(into.items(), key=lambda x: (x[0][0], -x[1], x[0][1]))
    ]
    return {
        "start": q.start,
        "by": q.by,
        "depth": q.depth,
        "users": users,
        "nodes": nodes,
        "links": [
            {"depth": d, "from": a, "to": b, "users": n}
            for (d, a, b), n in sorted(links.items(), key=lambda x: (x[0][0], -x[1], x[0][1:]))
        ],
    }


# --------------------------------------------------------------------------- strategies


@st.composite
def retention_events(draw: st.DrawFn) -> list[StoredEvent]:
    """Up to 60 events of 6 users over ~5 weeks around New York's and Berlin's DST ends."""
    out = []
    for i in range(draw(st.integers(0, 60))):
        ts = (
            T0
            + draw(st.integers(-10, 35)) * DAY
            + draw(st.integers(0, DAY - 1) | st.sampled_from([0, 1, 4 * 3_600_000, DAY - 1]))
        )
        strs = {1: draw(st.sampled_from(["red", "blue"]))} if draw(st.booleans()) else {}
        ints = {0: draw(st.integers(0, 2))} if draw(st.booleans()) else {}
        out.append(
            StoredEvent(
                "placeholder", f"r{i}", draw(st.sampled_from(["view", "view", "buy", "share"])),
                draw(st.sampled_from([f"u{k}" for k in range(6)])), ts, ts, False,
                draw(st.sampled_from(["pages/a", "pages/b", None])), None, None, ints, strs,
                draw(st.sampled_from([None, None, None, "t1", "t2"])),
            )
        )  # fmt: skip
    return out


@st.composite
def retention_queries(draw: st.DrawFn) -> RetentionQuery:
    a = T0 + draw(st.integers(-12, 30)) * DAY + draw(st.integers(-DAY, DAY))
    b = a + draw(st.integers(1, 40 * DAY))
    nb = draw(st.sampled_from([0, 0, a - 2 * DAY, a + (b - a) // 3]))
    return RetentionQuery(
        start=draw(st.sampled_from(["view", "buy", "$any", "$new"])),
        returning=draw(st.sampled_from(["view", "buy", "share", "$any"])),
        from_ms=a,
        to_ms=b,
        not_before_ms=max(nb, 0),
        unit=draw(st.sampled_from(["day", "week"])),
        periods=draw(st.integers(1, 30)),
        group_by=draw(st.sampled_from([None, None, "color", "price", "page", "unused"])),
        tz=draw(st.sampled_from(TZS)),
    )


@st.composite
def path_events(draw: st.DrawFn) -> list[StoredEvent]:
    """Up to 50 events of 4 users within a few hours, gaps around the 30-minute cut."""
    out = []
    clock = {f"u{k}": T0 for k in range(4)}
    for i in range(draw(st.integers(0, 50))):
        user = draw(st.sampled_from(sorted(clock)))
        clock[user] += draw(
            st.sampled_from([0, 1, MINUTE, 29 * MINUTE, SESSION_GAP_MS, SESSION_GAP_MS + 1])
            | st.integers(0, 3 * SESSION_GAP_MS)
        )
        ts = clock[user]
        out.append(
            StoredEvent(
                "placeholder", f"p{i}", draw(st.sampled_from(["view", "buy", "share", "open"])),
                user, ts, ts, False, draw(st.sampled_from(["a", "b", "c", "d", None])),
                None, None, {}, {}, draw(st.sampled_from([None, None, None, "t1", "t2"])),
            )
        )  # fmt: skip
    return out


@st.composite
def path_queries(draw: st.DrawFn) -> PathsQuery:
    by = draw(st.sampled_from(["page", "event"]))
    start = draw(st.sampled_from(["a", "b", "zz"] if by == "page" else ["view", "buy", "open"]))
    a = T0 + draw(st.sampled_from([-1, 0, 20 * MINUTE, 2 * 3_600_000]))
    b = a + draw(st.sampled_from([1, 3 * 3_600_000, 40 * 3_600_000]))
    return PathsQuery(
        start=start,
        by=by,
        depth=draw(st.integers(1, 5)),
        from_ms=a,
        to_ms=b,
        not_before_ms=draw(st.sampled_from([0, 0, T0 + 40 * MINUTE])),
    )


# --------------------------------------------------------------------------- DuckDB vs reference

_appids = (f"rp{i}" for i in itertools.count())
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBEventStore]:
    path: Path = tmp_path_factory.mktemp("retention") / "analytics.duckdb"
    s = DuckDBEventStore(path, threads=1)
    try:
        yield s
    finally:
        s.close()


def load(store: DuckDBEventStore, events: list[StoredEvent]) -> tuple[str, list[StoredEvent]]:
    appid = next(_appids)
    rows = [dataclasses.replace(e, appid=appid) for e in events]
    store.append(rows)
    store.sync_test(appid, "t1")
    return appid, rows


@PROPERTY
@given(events=retention_events(), query=retention_queries())
def test_retention_matches_reference(
    store: DuckDBEventStore, events: list[StoredEvent], query: RetentionQuery
) -> None:
    appid, rows = load(store, events)
    assert_rows_equal(store.retention(appid, query, SLOTS), ref_retention(rows, query, {"t1"}))


@PROPERTY
@given(events=path_events(), query=path_queries())
def test_paths_match_reference(
    store: DuckDBEventStore, events: list[StoredEvent], query: PathsQuery
) -> None:
    appid, rows = load(store, events)
    assert store.paths(appid, query, SLOTS) == ref_paths(rows, query, {"t1"})


# --------------------------------------------------------------------------- fixed examples


def ev(uid: str, user: str, event: str, ts: int, page: str | None = None) -> StoredEvent:
    return StoredEvent("fixed", uid, event, user, ts, ts, False, page, None, None, {}, {})


def test_retention_by_local_day_and_week(store: DuckDBEventStore) -> None:
    # Shanghai: 2026-10-31T20:00Z is Nov 1 04:00 local. u1 starts on Nov 1 and comes back
    # Nov 2 and Nov 9 (a week later); u2 is new on Nov 2 and never comes back.
    nov1 = T0 + 20 * 3_600_000
    appid, _ = load(
        store,
        [
            ev("a", "u1", "view", nov1),
            ev("b", "u1", "buy", nov1 + DAY),
            ev("c", "u1", "buy", nov1 + 8 * DAY),
            ev("d", "u2", "view", nov1 + DAY),
        ],
    )
    q = RetentionQuery(
        start="$new", returning="$any", from_ms=T0, to_ms=T0 + 10 * DAY, not_before_ms=0,
        periods=3, tz="Asia/Shanghai",
    )  # fmt: skip
    assert store.retention(appid, q, SLOTS) == [
        {"cohort": "2026-11-01", "size": 1, "retained": [1, 1, 0, 0]},
        {"cohort": "2026-11-02", "size": 1, "retained": [1, 0, 0, 0]},
    ]
    weekly = dataclasses.replace(q, unit="week", start="view", returning="buy")
    # Nov 1 2026 is a Sunday: u1's cohort is the week of Monday Oct 26, u2's the next one;
    # the window ends in the week of Nov 9, so the cohorts have 2 and 1 periods observed.
    assert store.retention(appid, weekly, SLOTS) == [
        {"cohort": "2026-10-26", "size": 1, "retained": [0, 1, 1]},
        {"cohort": "2026-11-02", "size": 1, "retained": [0, 0]},
    ]


def test_retention_reads_returns_across_period_blocks(store: DuckDBEventStore) -> None:
    # DuckDB keeps a user's return periods as 32-bit masks per block of 32 periods: starts on
    # 40 consecutive days (every offset within a block, both sides of a block edge) with
    # returns 1, 2, 17, 29 and 30 days later, a return earlier the same day (not counted at
    # k = 0) and one later that day (counted), against the reference.
    events: list[StoredEvent] = []
    for d in range(40):
        user = f"u{d}"
        start = T0 + d * DAY + 12 * 3_600_000
        events.append(ev(f"s{d}", user, "view", start))
        events.append(ev(f"e{d}", user, "buy", start - (d % 2) * 3_600_000 + (d % 3) * 60_000))
        for k in (1, 2, 17, 29, 30, 31):
            events.append(ev(f"r{d}-{k}", user, "buy", start + k * DAY))
    appid, rows = load(store, events)
    q = RetentionQuery(
        start="view", returning="buy", from_ms=T0, to_ms=T0 + 75 * DAY, not_before_ms=0,
        periods=30, tz="UTC",
    )  # fmt: skip
    got = store.retention(appid, q, SLOTS)
    assert len(got) == 40
    assert_rows_equal(got, ref_retention(rows, q, set()))
    assert got[0]["retained"] == [1, 1, 1] + [0] * 14 + [1] + [0] * 11 + [1, 1]


def test_paths_cut_at_thirty_minutes_and_fold_repeats(store: DuckDBEventStore) -> None:
    appid, _ = load(
        store,
        [
            ev("1", "u1", "view", T0, "home"),
            ev("2", "u1", "view", T0 + MINUTE, "home"),
            ev("3", "u1", "view", T0 + 2 * MINUTE, "list"),
            ev("4", "u1", "view", T0 + 2 * MINUTE + SESSION_GAP_MS + 1, "item"),
            ev("5", "u2", "view", T0, "home"),
            ev("6", "u2", "view", T0 + SESSION_GAP_MS, "item"),
        ],
    )
    q = PathsQuery(start="home", from_ms=T0, to_ms=T0 + DAY, not_before_ms=0, depth=3)
    got = store.paths(appid, q, SLOTS)
    assert got["users"] == 2
    assert got["links"] == [
        {"depth": 1, "from": "home", "to": "item", "users": 1},
        {"depth": 1, "from": "home", "to": "list", "users": 1},
    ]
    assert got["nodes"] == [
        {"depth": 0, "name": "home", "users": 2, "ended": 0},
        {"depth": 1, "name": "item", "users": 1, "ended": 1},
        {"depth": 1, "name": "list", "users": 1, "ended": 1},
    ]


# --------------------------------------------------------------------------- bad input


def _retention(**kw: object) -> RetentionQuery:
    args: dict[str, object] = {
        "start": "view", "returning": "view", "from_ms": T0, "to_ms": T0 + DAY,
        "not_before_ms": 0,
    }  # fmt: skip
    args.update(kw)
    return RetentionQuery(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"periods": 0}, "periods is 1 to 30"),
        ({"periods": 31}, "periods is 1 to 30"),
        ({"unit": "month"}, "unit is day or week"),
        ({"tz": "Mars/Base"}, "unknown time zone"),
        ({"from_ms": T0 + DAY, "to_ms": T0}, "from_ms must be before to_ms"),
        ({"start": "Bad Name"}, "start event"),
        ({"returning": "$new"}, r"not \$new"),
        ({"group_by": "size"}, "clashes"),
    ],
)
def test_retention_rejects_bad_input(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ReportQueryError, match=message):
        _retention(**kw)


def test_retention_rejects_unknown_group_by() -> None:
    with pytest.raises(ReportQueryError, match="unknown field 'nope'"):
        compile_retention("x", _retention(group_by="nope"), SLOTS, dialect=CLICKHOUSE)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"depth": 6}, "depth is 1 to 5"),
        ({"depth": 0}, "depth is 1 to 5"),
        ({"by": "screen"}, "page or event"),
        ({"start": " "}, "give a start"),
        ({"by": "event", "start": "Not An Event"}, "not a valid event name"),
        ({"from_ms": T0 + DAY, "to_ms": T0}, "from_ms must be before to_ms"),
    ],
)
def test_paths_reject_bad_input(kw: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"start": "home", "from_ms": T0, "to_ms": T0 + DAY}
    args.update(kw)
    with pytest.raises(ReportQueryError, match=message):
        PathsQuery(not_before_ms=0, **args)  # type: ignore[arg-type]
