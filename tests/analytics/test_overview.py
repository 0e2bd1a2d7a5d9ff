"""Overview and real-time reports against a plain-Python computation of the definitions in
:mod:`miniport.analytics.overview`, on every event store (DuckDB, ClickHouse 18.16 server,
chDB): random built-in and custom events with sessions, paths, scenes and system properties,
windows across New York's DST end, zones with a :45 offset; worked examples of each figure;
bad queries."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miniport.analytics.event_store import DuckDBEventStore, EventStore, StoredEvent
from miniport.analytics.overview import (
    OverviewQuery,
    RealtimeQuery,
    compile_overview,
    compile_realtime,
)
from miniport.analytics.sql_dialects import CLICKHOUSE
from miniport.analytics.system_props import DIMENSIONS
from miniport.errors import ReportQueryError
from tests.analytics.test_reports import HOUR, SPAN, T0, TZS, bucket_of, none_first
from tests.analytics.test_store_parity import PROPERTY, duck, load, retries, store

__all__ = ["duck", "store"]  # fixtures shared with the parity suite

SYNCED = {"t1"}
MINUTE = 60_000
Out = dict[str, object]


# --------------------------------------------------------------------------- reference


def _visible(e: StoredEvent) -> bool:
    return e.test_id is None or e.test_id in SYNCED


def _prop(e: StoredEvent, name: str | None) -> object:
    return None if name is None else e.extra.get(DIMENSIONS[name].column)


def _order(e: StoredEvent) -> tuple[int, str]:
    return (e.ts_ms, e.uid)


def _ratio(total: int, n: int, scale: float = 1.0) -> float | None:
    return total / n / scale if n else None


def _sessions(events: list[StoredEvent]) -> dict[tuple[str, object], list[StoredEvent]]:
    out: dict[tuple[str, object], list[StoredEvent]] = {}
    for e in events:
        sid = e.extra.get("sys_session")
        if sid is not None:
            out.setdefault((e.user, sid), []).append(e)
    return {k: sorted(v, key=_order) for k, v in out.items()}


def ref_rows(events: list[StoredEvent], q: OverviewQuery) -> list[Out]:
    def key(e: StoredEvent) -> tuple[str, object]:
        return (bucket_of(e.ts_ms, q.granularity, q.tz), _prop(e, q.group_by))

    by_key: dict[tuple[str, object], list[StoredEvent]] = {}
    for e in events:
        by_key.setdefault(key(e), []).append(e)
    sessions: dict[tuple[str, object], list[list[StoredEvent]]] = {}
    for s in _sessions(events).values():
        sessions.setdefault(key(s[0]), []).append(s)
    out: list[Out] = []
    for k in sorted(by_key, key=lambda k: (k[0], none_first(k[1]))):
        evs, ss = by_key[k], sessions.get(k, [])
        durations = [
            d
            for e in evs
            if e.event == "$pageleave" and (d := e.extra.get("ev_duration_ms")) is not None
        ]
        row: Out = {"bucket": k[0]}
        if q.group_by is not None:
            row[q.group_by] = k[1]
        row |= {
            "active_users": len({e.user for e in evs}),
            "new_users": len({e.user for e in evs if e.extra.get("sys_new_user") is True}),
            "launches": sum(e.event == "$launch" for e in evs),
            "sessions": len(ss),
            "avg_session_s": _ratio(sum(s[-1].ts_ms - s[0].ts_ms for s in ss), len(ss), 1000.0),
            "page_views": sum(e.event == "$pageview" for e in evs),
            "avg_page_s": _ratio(sum(durations), len(durations), 1000.0),  # type: ignore[arg-type]
            "pages_per_session": _ratio(
                sum(e.event == "$pageview" for s in ss for e in s), len(ss)
            ),
        }
        out.append(row)
    return out


def ref_pages(events: list[StoredEvent], q: OverviewQuery) -> list[Out]:
    exits: dict[tuple[object, object], int] = {}
    for s in _sessions([e for e in events if e.event == "$pageview"]).values():
        last = s[-1]
        k = (_prop(last, q.group_by), last.extra.get("ev_path"))
        exits[k] = exits.get(k, 0) + 1
    groups: dict[object, dict[object, list[StoredEvent]]] = {}
    for e in events:
        path = e.extra.get("ev_path")
        if e.event in ("$pageview", "$pageleave") and path is not None:
            groups.setdefault(_prop(e, q.group_by), {}).setdefault(path, []).append(e)
    out: list[Out] = []
    for g in sorted(groups, key=none_first):
        items: list[Out] = []
        for path, evs in groups[g].items():
            views = [e for e in evs if e.event == "$pageview"]
            if not views:
                continue
            durations = [
                d
                for e in evs
                if e.event == "$pageleave" and (d := e.extra.get("ev_duration_ms")) is not None
            ]
            item: Out = {q.group_by: g} if q.group_by is not None else {}
            item |= {
                "path": path,
                "views": len(views),
                "visitors": len({e.user for e in views}),
                "avg_time_s": _ratio(sum(durations), len(durations), 1000.0),  # type: ignore[arg-type]
                "exit_rate": exits.get((g, path), 0) / len(views),
            }
            items.append(item)
        items.sort(key=lambda r: (-r["views"], r["path"]))  # type: ignore[operator]
        out += items[: q.top_pages]
    return out


def ref_scenes(events: list[StoredEvent], q: OverviewQuery) -> list[Out]:
    users: dict[tuple[object, object], set[str]] = {}
    for e in events:
        if e.event == "$launch":
            users.setdefault((_prop(e, q.group_by), e.extra.get("sys_scene")), set()).add(e.user)
    out = []
    for (g, scene), who in users.items():
        item: Out = {q.group_by: g} if q.group_by is not None else {}
        out.append((g, item | {"scene": scene, "users": len(who)}, scene))
    out.sort(key=lambda t: (none_first(t[0]), -len(users[(t[0], t[2])]), none_first(t[2])))
    return [item for _, item, _ in out]


def ref_overview(rows: list[StoredEvent], q: OverviewQuery) -> Out:
    lo = max(q.from_ms, q.not_before_ms)
    events = [e for e in rows if _visible(e) and lo <= e.ts_ms < q.to_ms]
    return {
        "rows": ref_rows(events, q),
        "top_pages": ref_pages(events, q),
        "scenes": ref_scenes(events, q),
    }


def ref_realtime(rows: list[StoredEvent], q: RealtimeQuery) -> Out:
    if q.received_before_ms is not None:  # only what was received before it
        rows = [e for e in rows if e.received_ms < q.received_before_ms]
    end = (q.now_ms // MINUTE + 1) * MINUTE
    start = end - q.minutes * MINUTE
    minutes = []
    for m in range(start, end, MINUTE):
        evs = [
            e
            for e in rows
            if _visible(e) and m <= e.ts_ms < m + MINUTE and e.ts_ms >= q.not_before_ms
        ]
        label = datetime.fromtimestamp(m / 1000, UTC).astimezone(ZoneInfo(q.tz))
        minutes.append(
            {
                "minute": label.strftime("%Y-%m-%dT%H:%M"),
                "active_users": len({e.user for e in evs}),
                "events": len(evs),
            }
        )
    latest = sorted(
        (e for e in rows if _visible(e) and e.received_ms >= start and e.ts_ms >= q.not_before_ms),
        key=lambda e: (e.received_ms, e.ts_ms, e.uid),
        reverse=True,
    )[: q.latest]
    return {
        "minutes": minutes,
        "latest": [
            {
                "event": e.event,
                "user": e.user,
                "ts_ms": e.ts_ms,
                "received_ms": e.received_ms,
                "$path": e.extra.get("ev_path"),
                "$platform": e.extra.get("sys_platform"),
                "$scene": e.extra.get("sys_scene"),
                "$session": e.extra.get("sys_session"),
            }
            for e in latest
        ],
    }


def assert_same(got: object, want: object) -> None:
    """Equal values of equal types (an int is not a float, a bool not an int)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), (got, want)
        for k in want:
            assert_same(got[k], want[k])
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (got, want)
        for g, w in zip(got, want, strict=True):
            assert_same(g, w)
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-12)
    else:
        assert got == want and type(got) is type(want), (got, want)


# --------------------------------------------------------------------------- strategies

EVENTS = ["$launch", "$pageview", "$pageview", "$pageleave", "$show", "$hide", "buy"]


@st.composite
def overview_events(draw: st.DrawFn) -> list[StoredEvent]:
    n = draw(st.integers(0, 40))
    out = []
    for i in range(n):
        event = draw(st.sampled_from(EVENTS))
        extra: dict[str, object] = {}
        for column, values in (
            ("sys_platform", ["ios", "android", None]),
            ("sys_scene", [1001, 1007, None]),
            ("sys_session", ["s-1", "s-2", "s-2", None]),
            ("sys_new_user", [True, False, None]),
        ):
            value = draw(st.sampled_from(values))
            if value is not None:
                extra[column] = value
        if event in ("$pageview", "$pageleave", "$launch"):
            path = draw(st.sampled_from(["p/a", "p/b", "p/c", None]))
            if path is not None:
                extra["ev_path"] = path
        if event == "$pageleave" and draw(st.integers(0, 3)):
            extra["ev_duration_ms"] = draw(st.integers(0, 2**40) | st.integers(0, 9_999))
        minute = draw(st.integers(-120, SPAN // MINUTE + 120) | st.sampled_from([0, 1, 1440]))
        ts = T0 + minute * MINUTE + draw(st.sampled_from([0, 0, 1, 59_999]))
        out.append(
            StoredEvent(
                appid="placeholder",
                uid=f"e{i}",
                event=event,
                user=draw(st.sampled_from(["u1", "u2", "u3", "u4"])),
                ts_ms=ts,
                received_ms=ts + draw(st.sampled_from([0, 0, 5, 90 * MINUTE])),
                time_estimated=False,
                page=None,
                trigger=None,
                action=None,
                ints={},
                strs={},
                test_id=draw(st.sampled_from([None, None, None, "t1", "t2"])),
                extra=extra,
            )
        )
    return out


@st.composite
def overview_queries(draw: st.DrawFn) -> OverviewQuery:
    a = draw(st.integers(T0 - 3 * HOUR, T0 + SPAN))
    b = draw(st.integers(a + 1, T0 + SPAN + 3 * HOUR))
    nb = draw(st.sampled_from([0, 0, a - HOUR, a + (b - a) // 2]))
    return OverviewQuery(
        from_ms=a,
        to_ms=b,
        not_before_ms=max(nb, 0),
        granularity=draw(st.sampled_from(["hour", "day", "all"])),
        tz=draw(st.sampled_from(TZS)),
        group_by=draw(st.sampled_from([None, None, "$platform", "$scene", "$new_user", "$model"])),
        top_pages=draw(st.sampled_from([1, 2, 20])),
    )


@st.composite
def realtime_queries(draw: st.DrawFn) -> RealtimeQuery:
    now = T0 + draw(st.integers(-60, SPAN // MINUTE + 60)) * MINUTE + draw(st.integers(0, MINUTE))
    return RealtimeQuery(
        now_ms=now,
        not_before_ms=draw(st.sampled_from([0, 0, now - 10 * MINUTE])),
        minutes=draw(st.sampled_from([1, 30, 30, 120])),
        latest=draw(st.sampled_from([0, 3, 50])),
        tz=draw(st.sampled_from(TZS)),
        received_before_ms=draw(
            st.one_of(st.none(), st.integers(T0 - MINUTE, T0 + SPAN + 2 * DAY))
        ),
    )


# --------------------------------------------------------------------------- properties


@PROPERTY
@given(events=overview_events(), retry=retries, query=overview_queries())
def test_overview_matches_reference(
    store: EventStore,
    duck: DuckDBEventStore,
    events: list[StoredEvent],
    retry: list[int],
    query: OverviewQuery,
) -> None:
    appid, rows = load([store, duck], events, retry)
    got = store.overview(appid, query)
    assert_same(got, ref_overview(rows, query))
    assert got == duck.overview(appid, query)


@PROPERTY
@given(events=overview_events(), retry=retries, query=realtime_queries())
def test_realtime_matches_reference(
    store: EventStore,
    duck: DuckDBEventStore,
    events: list[StoredEvent],
    retry: list[int],
    query: RealtimeQuery,
) -> None:
    appid, rows = load([store, duck], events, retry)
    got = store.realtime(appid, query)
    want = ref_realtime(rows, query)
    assert_same(got["minutes"], want["minutes"])
    latest = got["latest"]
    assert isinstance(latest, list)
    assert_same([{k: r[k] for k in want_keys()} for r in latest], want["latest"])
    assert got == duck.realtime(appid, query)


def want_keys() -> list[str]:
    return ["event", "user", "ts_ms", "received_ms", "$path", "$platform", "$scene", "$session"]


# --------------------------------------------------------------------------- worked examples


def ev(uid: str, event: str, user: str, ts: int, **extra: object) -> StoredEvent:
    return StoredEvent("x", uid, event, user, ts, ts, False, None, None, None, {}, {}, extra=extra)


DAY = 86_400_000
EXAMPLE = [
    ev("1", "$launch", "u1", T0, sys_session="s1", sys_scene=1001, sys_platform="ios",
       sys_new_user=True),
    ev("2", "$pageview", "u1", T0 + 1000, sys_session="s1", ev_path="p/a", sys_platform="ios"),
    ev("3", "$pageleave", "u1", T0 + 5000, sys_session="s1", ev_path="p/a", ev_duration_ms=4000),
    ev("4", "$pageview", "u1", T0 + 6000, sys_session="s1", ev_path="p/b"),
    ev("5", "$launch", "u2", T0 + DAY, sys_session="s1", sys_scene=1007, sys_platform="android"),
    ev("6", "$pageview", "u2", T0 + DAY + 10, sys_session="s1", ev_path="p/a"),
    ev("7", "buy", "u3", T0 + DAY + 20),
]  # fmt: skip


def test_worked_example(store: EventStore) -> None:
    appid, _ = load([store], EXAMPLE, [])
    q = OverviewQuery(from_ms=T0, to_ms=T0 + 2 * DAY, not_before_ms=0)
    got = store.overview(appid, q)
    assert got["rows"] == [
        {"bucket": "2026-10-31", "active_users": 1, "new_users": 1, "launches": 1, "sessions": 1,
         "avg_session_s": 6.0, "page_views": 2, "avg_page_s": 4.0, "pages_per_session": 2.0},
        {"bucket": "2026-11-01", "active_users": 2, "new_users": 0, "launches": 1, "sessions": 1,
         "avg_session_s": 0.01, "page_views": 1, "avg_page_s": None, "pages_per_session": 1.0},
    ]  # fmt: skip
    assert got["top_pages"] == [
        {"path": "p/a", "views": 2, "visitors": 2, "avg_time_s": 4.0, "exit_rate": 0.5},
        {"path": "p/b", "views": 1, "visitors": 1, "avg_time_s": None, "exit_rate": 1.0},
    ]
    assert got["scenes"] == [{"scene": 1001, "users": 1}, {"scene": 1007, "users": 1}]
    by_platform = store.overview(
        appid, dataclasses.replace(q, granularity="all", group_by="$platform")
    )
    assert [(r["$platform"], r["sessions"]) for r in by_platform["rows"]] == [  # type: ignore[union-attr,index]
        (None, 0),
        ("android", 1),
        ("ios", 1),
    ]
    live = store.realtime(appid, RealtimeQuery(now_ms=T0 + DAY + 30_000, not_before_ms=0))
    minutes = live["minutes"]
    assert isinstance(minutes, list) and len(minutes) == 30
    assert minutes[-1] == {"minute": "2026-11-01T00:00", "active_users": 2, "events": 3}
    assert [e["event"] for e in live["latest"]] == ["buy", "$pageview", "$launch"]  # type: ignore[union-attr,index]


def test_a_session_exits_on_its_last_view_by_time_then_id(store: EventStore) -> None:
    # two views in the same ms: the one with the larger event id is the session's last (its
    # path and platform), whatever the paths and platforms sort as
    appid, _ = load(
        [store],
        [
            ev("a", "$pageview", "u1", T0, sys_session="s", ev_path="p/z", sys_platform="web"),
            ev("b", "$pageview", "u1", T0, sys_session="s", ev_path="p/y", sys_platform="ios"),
        ],
        [],
    )
    q = OverviewQuery(from_ms=T0, to_ms=T0 + DAY, not_before_ms=0, group_by="$platform")
    pages = store.overview(appid, q)["top_pages"]
    assert [(r["$platform"], r["path"], r["exit_rate"]) for r in pages] == [  # type: ignore[union-attr,index]
        ("ios", "p/y", 1.0),
        ("web", "p/z", 0.0),
    ]


def test_a_session_belongs_to_its_first_event_by_time_then_id(store: EventStore) -> None:
    # s1: two first events in the same ms with different platforms: the smaller id ("a",
    # web) decides, whatever the platforms sort as; s2: its first event has no platform (None),
    # a later one has one; s3: one platform throughout
    appid, _ = load(
        [store],
        [
            ev("b", "$launch", "u1", T0, sys_session="s1", sys_platform="android"),
            ev("a", "$pageview", "u1", T0, sys_session="s1", sys_platform="web"),
            ev("c", "$pageview", "u1", T0 + 5, sys_session="s1", sys_platform="android"),
            ev("d", "$launch", "u2", T0 + 1, sys_session="s2"),
            ev("e", "$pageview", "u2", T0 + 9, sys_session="s2", sys_platform="ios"),
            ev("f", "$launch", "u3", T0 + 2, sys_session="s3", sys_platform="ios"),
            ev("g", "$pageview", "u3", T0 + 4, sys_session="s3", sys_platform="ios"),
        ],
        [],
    )
    q = OverviewQuery(
        from_ms=T0, to_ms=T0 + DAY, not_before_ms=0, granularity="all", group_by="$platform"
    )
    rows = store.overview(appid, q)["rows"]
    assert [(r["$platform"], r["sessions"], r["avg_session_s"]) for r in rows] == [  # type: ignore[union-attr,index]
        (None, 1, 0.008),
        ("android", 0, None),
        ("ios", 1, 0.002),
        ("web", 1, 0.005),
    ]


@pytest.mark.parametrize("group_by", [None, "$platform"])
def test_views_in_one_ms_on_one_platform_exit_by_id(
    store: EventStore, group_by: str | None
) -> None:
    # u1's session ends with two views in the same ms on the same platform (one row of
    # DuckDB's pass by user, session, bucket and group): the larger id ("c", p/b) is its exit
    # whatever the paths sort as; u2's last view is alone at its time, a later launch does
    # not count
    appid, _ = load(
        [store],
        [
            ev("c", "$pageview", "u1", T0 + 5, sys_session="s", ev_path="p/b", sys_platform="ios"),
            ev("b", "$pageview", "u1", T0 + 5, sys_session="s", ev_path="p/a", sys_platform="ios"),
            ev("a", "$pageview", "u1", T0, sys_session="s", ev_path="p/c", sys_platform="ios"),
            ev("d", "$pageview", "u2", T0 + 3, sys_session="s", ev_path="p/a", sys_platform="ios"),
            ev("e", "$launch", "u2", T0 + 9, sys_session="s", sys_platform="ios"),
        ],
        [],
    )
    q = OverviewQuery(from_ms=T0, to_ms=T0 + DAY, not_before_ms=0, group_by=group_by)
    pages = store.overview(appid, q)["top_pages"]
    assert [(r["path"], r["views"], r["exit_rate"]) for r in pages] == [  # type: ignore[union-attr,index]
        ("p/a", 2, 0.5),
        ("p/b", 1, 1.0),
        ("p/c", 1, 0.0),
    ]


def test_a_session_over_midnight_counts_in_its_first_day(store: EventStore) -> None:
    # the session starts on one day on ios and goes on the next on android: it counts once,
    # on its first day and platform, 25 h long; its user is active on both days
    appid, _ = load(
        [store],
        [
            ev("a", "$launch", "u1", T0 + DAY - 1000, sys_session="s", sys_platform="ios"),
            ev("b", "$pageview", "u1", T0 + DAY + HOUR, sys_session="s", sys_platform="android"),
        ],
        [],
    )
    q = OverviewQuery(from_ms=T0, to_ms=T0 + 2 * DAY, not_before_ms=0, group_by="$platform")
    rows = store.overview(appid, q)["rows"]
    assert [
        (r["bucket"], r["$platform"], r["active_users"], r["sessions"], r["avg_session_s"])  # type: ignore[index]
        for r in rows  # type: ignore[union-attr]
    ] == [("2026-10-31", "ios", 1, 1, 3601.0), ("2026-11-01", "android", 1, 0, None)]


def test_an_appended_event_is_in_the_next_realtime_answer(store: EventStore) -> None:
    appid, _ = load([store], EXAMPLE[:1], [])
    q = RealtimeQuery(now_ms=T0 + 1000, not_before_ms=0, latest=5)
    assert len(store.realtime(appid, q)["latest"]) == 1  # type: ignore[arg-type]
    store.append([dataclasses.replace(ev("n1", "buy", "u9", T0 + 500), appid=appid)])
    latest = store.realtime(appid, q)["latest"]
    assert [e["user"] for e in latest] == ["u9", "u1"]  # type: ignore[index,union-attr]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"group_by": "color"}, "is not a system property"),
        ({"group_by": "$path"}, "is not a system property"),
        ({"group_by": "$nope"}, "is not a system property"),
        ({"granularity": "week"}, "granularity is hour, day or all"),
        ({"tz": "Mars/Olympus"}, "unknown time zone"),
        ({"top_pages": 0}, "top_pages must be a whole number"),
        ({"top_pages": True}, "top_pages must be a whole number"),
        ({"from_ms": T0 + 1, "to_ms": T0}, "from_ms must be before to_ms"),
        ({"from_ms": "yesterday"}, "from_ms must be an integer"),
    ],
)
def test_bad_overview_queries(kw: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"from_ms": T0, "to_ms": T0 + DAY, "not_before_ms": 0} | kw
    with pytest.raises(ReportQueryError, match=message):
        OverviewQuery(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"minutes": 0}, "minutes must be a whole number from 1 to 180"),
        ({"minutes": 181}, "minutes must be"),
        ({"latest": -1}, "latest must be a whole number from 0 to 200"),
        ({"latest": 1.5}, "latest must be"),
        ({"now_ms": None}, "now_ms must be"),
        ({"tz": ""}, "unknown time zone"),
    ],
)
def test_bad_realtime_queries(kw: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"now_ms": T0, "not_before_ms": 0} | kw
    with pytest.raises(ReportQueryError, match=message):
        RealtimeQuery(**args)  # type: ignore[arg-type]


def test_values_never_reach_the_sql_text() -> None:
    appid = "app'; DROP TABLE events; --"
    for dialect in (None, CLICKHOUSE):
        kw = {} if dialect is None else {"dialect": dialect}
        q = OverviewQuery(from_ms=T0, to_ms=T0 + 3 * DAY, not_before_ms=0, tz="America/New_York")
        for compiled in (
            compile_overview(appid, q, **kw),
            compile_realtime(  # type: ignore[arg-type]
                appid,
                RealtimeQuery(now_ms=T0, not_before_ms=0),
                **kw,  # type: ignore[arg-type]
            ),
        ):
            for statement in compiled.statements:
                assert "DROP" not in statement.sql and "$pageview" not in statement.sql


@pytest.fixture
def empty_duck(tmp_path: Path) -> Iterator[DuckDBEventStore]:
    s = DuckDBEventStore(tmp_path / "a.duckdb", threads=1)
    yield s
    s.close()


def test_a_store_without_system_columns_reports_zeros(empty_duck: DuckDBEventStore) -> None:
    empty_duck.append([ev("1", "buy", "u1", T0)])
    got = empty_duck.overview("x", OverviewQuery(from_ms=T0, to_ms=T0 + DAY, not_before_ms=0))
    assert got["rows"] == [
        {"bucket": "2026-10-31", "active_users": 1, "new_users": 0, "launches": 0, "sessions": 0,
         "avg_session_s": None, "page_views": 0, "avg_page_s": None, "pages_per_session": None}
    ]  # fmt: skip
    assert got["top_pages"] == [] and got["scenes"] == []
