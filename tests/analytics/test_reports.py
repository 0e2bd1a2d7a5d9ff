"""Report engine: parsing, SQL building, and reports checked against a pure-Python reference.

The property tests run the real DuckDB store (one file per module, one appid per example)
and compare every report with a straightforward computation over the same events."""

from __future__ import annotations

import dataclasses
import itertools
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miniport.analytics.event_store import DuckDBEventStore, StoredEvent
from miniport.analytics.reports import (
    EventQuery,
    FieldSlots,
    Filter,
    FunnelQuery,
    Metric,
    ReportQueryError,
    compile_event_analysis,
    compile_funnel,
    compile_funnel_scan,
    offset_segments,
    parse_filter,
    parse_metric,
)
from miniport.analytics.system_props import DIMENSIONS

SLOTS: FieldSlots = {
    "price": ("int", 0),
    "qty": ("int", 3),
    "color": ("string", 1),
    "brand": ("string", 4),
    "unused": ("int", 7),  # defined, never reported: its column does not exist
    "label": ("string", 9),  # idem
    "amount": ("float", 2),
    "vip": ("bool", 5),
    "rating": ("float", 6),  # defined, never reported
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# 2026-10-31T00:00Z: the window spans New York's DST end (2026-11-01 06:00Z) and several
# local midnights in Shanghai (UTC+8) and New York.
T0 = 1_793_404_800_000
SPAN = 3 * 86_400_000
HOUR = 3_600_000


# --------------------------------------------------------------------------- parsing


def test_parse_metric_forms() -> None:
    assert parse_metric("count") == Metric("count")
    assert parse_metric(" users ") == Metric("users")
    assert parse_metric("sum:price") == Metric("sum", "price")
    assert parse_metric("per_user:price").name == "per_user:price"
    assert parse_metric("distinct:color").name == "distinct:color"
    for bad in [
        "",
        "sum",
        "avg",
        "distinct",
        "count:price",
        "users:x",
        "median:price",
        "sum:Price",
        "sum:1x",
        "sum:price;drop",
        "sum:" + "a" * 33,
    ]:
        with pytest.raises(ReportQueryError):
            parse_metric(bad)


def test_parse_filter_forms() -> None:
    assert parse_filter("color=red") == Filter("color", "=", "red")
    assert parse_filter("color!=blue") == Filter("color", "!=", "blue")
    assert parse_filter("price>=100") == Filter("price", ">=", "100")
    assert parse_filter("price>5") == Filter("price", ">", "5")
    assert parse_filter("price<=9") == Filter("price", "<=", "9")
    assert parse_filter("price<3") == Filter("price", "<", "3")
    assert parse_filter(" price >= 100 ") == Filter("price", ">=", "100")
    assert parse_filter("color=a=b") == Filter("color", "=", "a=b")
    assert parse_filter("color=") == Filter("color", "=", "")
    for bad in ["", "color", "=red", "Color=red", "color~red", "1a=3", "color red"]:
        with pytest.raises(ReportQueryError):
            parse_filter(bad)


def _query(**kw: object) -> EventQuery:
    base: dict[str, object] = {
        "event": "view",
        "from_ms": T0,
        "to_ms": T0 + SPAN,
        "not_before_ms": 0,
        "metrics": ["count"],
    }
    base.update(kw)
    return EventQuery.parse(**base)  # type: ignore[arg-type]


def test_metric_must_fit_field_type() -> None:
    for metric in ["sum:color", "avg:brand", "max:color", "min:color", "per_user:color"]:
        with pytest.raises(ReportQueryError, match="needs an int or float field"):
            compile_event_analysis("a", _query(metrics=[metric]), SLOTS)
    with pytest.raises(ReportQueryError, match="needs a string field"):
        compile_event_analysis("a", _query(metrics=["distinct:price"]), SLOTS)
    with pytest.raises(ReportQueryError, match="unknown field"):
        compile_event_analysis("a", _query(metrics=["sum:nope"]), SLOTS)
    with pytest.raises(ReportQueryError, match="unknown field"):
        compile_event_analysis("a", _query(metrics=["sum:page"]), SLOTS)  # built-ins: no metrics


def test_filter_values_typed_by_field() -> None:
    with pytest.raises(ReportQueryError, match="not an integer"):
        compile_event_analysis("a", _query(filters=["price=abc"]), SLOTS)
    with pytest.raises(ReportQueryError, match="not an integer"):
        compile_event_analysis("a", _query(filters=["price=1.5"]), SLOTS)
    for op in [">=", ">", "<=", "<"]:
        with pytest.raises(ReportQueryError, match="only takes = or !="):
            compile_event_analysis("a", _query(filters=[f"color{op}red"]), SLOTS)
    with pytest.raises(ReportQueryError, match="unknown field"):
        compile_event_analysis("a", _query(filters=["nope=1"]), SLOTS)
    compiled = compile_event_analysis("a", _query(filters=["price=-12", "page=pages/a"]), SLOTS)
    assert -12 in compiled.params and "pages/a" in compiled.params


def test_query_limits_and_validation() -> None:
    ok = ["count", "users", "per_user", "sum:price", "distinct:color"]
    _query(metrics=ok)
    with pytest.raises(ReportQueryError):
        _query(metrics=[*ok, "max:price"])
    with pytest.raises(ReportQueryError):
        _query(metrics=[])
    with pytest.raises(ReportQueryError, match="twice"):
        _query(metrics=["count", "count"])
    _query(group_by=["color", "price", "qty", "brand", "page"])
    with pytest.raises(ReportQueryError):
        _query(group_by=["color", "price", "qty", "brand", "page", "trigger"])
    with pytest.raises(ReportQueryError, match="twice"):
        _query(group_by=["color", "color"])
    _query(filters=["price>1"] * 5)
    with pytest.raises(ReportQueryError):
        _query(filters=["price>1"] * 6)
    with pytest.raises(ReportQueryError, match="granularity"):
        _query(granularity="week")
    with pytest.raises(ReportQueryError, match="time zone"):
        _query(tz="Mars/Olympus")
    with pytest.raises(ReportQueryError, match="time zone"):
        _query(tz="../../etc/passwd")
    with pytest.raises(ReportQueryError, match="before"):
        _query(from_ms=T0, to_ms=T0)
    with pytest.raises(ReportQueryError, match="clashes"):
        _query(metrics=["count"], group_by=["count"])
    with pytest.raises(ReportQueryError, match="clashes"):
        _query(group_by=["bucket"])
    with pytest.raises(ReportQueryError):
        _query(event="view'; DROP TABLE events; --")
    with pytest.raises(ReportQueryError):
        FunnelQuery.parse(steps=["view"], from_ms=0, to_ms=1, not_before_ms=0)
    with pytest.raises(ReportQueryError):
        FunnelQuery.parse(steps=["view"] * 11, from_ms=0, to_ms=1, not_before_ms=0)


def test_user_values_never_reach_the_sql_text() -> None:
    evil = "x' OR 1=1; DROP TABLE events; --"
    q = _query(filters=[f"color={evil}", f"brand!={evil}"], group_by=["color"], tz="Asia/Shanghai")
    compiled = compile_event_analysis("app'--", q, SLOTS)
    assert evil not in compiled.sql and "app'--" not in compiled.sql
    assert evil in compiled.params and "app'--" in compiled.params
    assert "DROP" not in compiled.sql
    funnel = FunnelQuery.parse(
        steps=[("view", [f"color={evil}"]), "buy"], from_ms=0, to_ms=1, not_before_ms=0
    )
    compiled = compile_funnel("a", funnel, SLOTS)
    assert evil not in compiled.sql and evil in compiled.params
    scan = compile_funnel_scan("a", funnel, SLOTS)
    for sql in (scan.rows_sql, scan.users_sql, scan.ties_sql):
        assert evil not in sql and "DROP" not in sql
    assert evil in scan.params
    for name in ["color; DROP TABLE events", "color)", "i0 --", "Color", 'color"']:
        with pytest.raises(ReportQueryError, match="not a valid name"):
            compile_event_analysis("a", _query(group_by=[name]), SLOTS)
    with pytest.raises(ReportQueryError, match="unknown field"):  # raw columns are not fields
        compile_event_analysis("a", _query(group_by=["s1"]), SLOTS)


def test_identifiers_come_from_the_slot_mapping_only() -> None:
    q = _query(metrics=["sum:price", "distinct:color"], group_by=["brand"], filters=["qty>1"])
    sql = compile_event_analysis("a", q, SLOTS).sql
    for column in ["i0", "s1", "s4", "i3"]:
        assert column in sql
    bad_slots: FieldSlots = {"price": ("int", 32)}
    with pytest.raises(ReportQueryError, match="slot"):
        compile_event_analysis("a", _query(metrics=["sum:price"]), bad_slots)
    # a field whose column was never created reads as NULL, not as an unknown column
    sql = compile_event_analysis(
        "a", _query(metrics=["sum:unused"]), SLOTS, existing_columns={"i0"}
    ).sql
    assert "i7" not in sql and "CAST(NULL AS INTEGER)" in sql


def test_offset_segments_find_dst_transitions() -> None:
    ny_end = int(datetime(2026, 11, 1, 6, tzinfo=UTC).timestamp() * 1000)
    segs = offset_segments("America/New_York", T0, T0 + SPAN)
    assert segs == [(T0, -4 * HOUR), (ny_end, -5 * HOUR)]
    assert offset_segments("Asia/Shanghai", T0, T0 + SPAN) == [(T0, 8 * HOUR)]
    assert offset_segments("UTC", T0, T0 + 1) == [(T0, 0)]
    # spring forward too, at the exact millisecond
    ny_start = int(datetime(2026, 3, 8, 7, tzinfo=UTC).timestamp() * 1000)
    segs = offset_segments("America/New_York", ny_start - 5 * 86_400_000, ny_start + 1)
    assert segs[1] == (ny_start, -4 * HOUR)


# --------------------------------------------------------------------------- reference


BOOLS = {"true": True, "false": False, "1": True, "0": False}


def value_of(e: StoredEvent, name: str) -> object:
    if name.startswith("$"):
        return e.extra.get(DIMENSIONS[name].column)
    if name in SLOTS:
        ftype, slot = SLOTS[name]
        by_type: dict[str, dict[int, object]] = {
            "int": e.ints,  # type: ignore[dict-item]
            "string": e.strs,  # type: ignore[dict-item]
            "float": e.floats,  # type: ignore[dict-item]
            "bool": e.bools,  # type: ignore[dict-item]
        }
        return by_type[ftype].get(slot)
    return {"page": e.page, "trigger": e.trigger}[name]


def matches(e: StoredEvent, f: Filter) -> bool:
    v = value_of(e, f.field)
    if v is None:
        return False
    target: object = f.value
    if isinstance(v, bool):
        target = BOOLS[f.value]
    elif isinstance(v, int):
        target = int(f.value)
    elif isinstance(v, float):
        target = float(f.value)
    if f.op == "=":
        return v == target
    if f.op == "!=":
        return v != target
    assert isinstance(v, int | float) and isinstance(target, int | float)
    return {">=": v >= target, ">": v > target, "<=": v <= target, "<": v < target}[f.op]


def bucket_of(ts_ms: int, granularity: str, tz: str) -> str:
    if granularity == "all":
        return "all"
    local = (EPOCH + timedelta(milliseconds=ts_ms)).astimezone(ZoneInfo(tz))
    if granularity == "day":
        return local.date().isoformat()
    return local.strftime("%Y-%m-%dT%H:00")


def none_first(v: object) -> tuple[bool, object]:
    return (v is not None, v)


def ref_event_analysis(
    events: Sequence[StoredEvent], q: EventQuery, visible_tests: set[str]
) -> list[dict[str, object]]:
    lo = max(q.from_ms, q.not_before_ms)
    chosen = [
        e
        for e in events
        if (e.test_id is None or e.test_id in visible_tests)
        and e.event == q.event
        and lo <= e.ts_ms < q.to_ms
        and (not q.filters or (any if q.any else all)(matches(e, f) for f in q.filters))
    ]
    groups: dict[tuple[object, ...], list[StoredEvent]] = defaultdict(list)
    for e in chosen:
        key = (bucket_of(e.ts_ms, q.granularity, q.tz), *(value_of(e, g) for g in q.group_by))
        groups[key].append(e)
    out = []
    for key in sorted(groups, key=lambda k: (k[0], *(none_first(v) for v in k[1:]))):
        rows = groups[key]
        users = len({e.user for e in rows})
        item: dict[str, object] = {"bucket": key[0]}
        item.update(zip(q.group_by, key[1:], strict=True))
        for m in q.metrics:
            if m.field is None:
                item[m.name] = {"count": len(rows), "users": users, "per_user": len(rows) / users}[
                    m.kind
                ]
                continue
            vals = [v for v in (value_of(e, m.field) for e in rows) if v is not None]
            if m.kind == "distinct":
                item[m.name] = len(set(vals))
                continue
            ints = [v for v in vals if isinstance(v, int | float) and not isinstance(v, bool)]
            is_float = m.field in SLOTS and SLOTS[m.field][0] == "float"
            total = float(sum(ints)) if is_float else sum(ints)
            item[m.name] = {
                "sum": total,
                "max": max(ints) if ints else None,
                "min": min(ints) if ints else None,
                "avg": total / len(ints) if ints else None,
                "per_user": total / users,
            }[m.kind]
        out.append(item)
    return out


def _ref_funnel_path(
    evs: list[StoredEvent], anchor: int, q: FunnelQuery, is_step: Callable[[StoredEvent, int], bool]
) -> list[int]:
    """Completion times of steps 1..level from one anchor (``evs`` in funnel order)."""
    t0 = evs[anchor].ts_ms
    used = [anchor]
    done = [t0]
    for k in range(1, len(q.steps)):
        found = None
        for i, e in enumerate(evs):
            if not is_step(e, k) or e.ts_ms > t0 + q.window_ms or i in used:
                continue
            if (i > used[-1]) if q.order == "strict" else (e.ts_ms >= t0):
                found = i
                break
        if found is None:
            break
        used.append(found)
        done.append(max(done[-1], evs[found].ts_ms))
    return done


def ref_funnel(
    events: Sequence[StoredEvent], q: FunnelQuery, visible_tests: set[str]
) -> list[dict[str, object]]:
    """Plain Python funnel with the rules of ``compile_funnel``, written independently."""
    lo = max(q.from_ms, q.not_before_ms)
    by_user: dict[str, list[StoredEvent]] = defaultdict(list)
    for e in events:
        if (e.test_id is None or e.test_id in visible_tests) and lo <= e.ts_ms < q.to_ms:
            by_user[e.user].append(e)

    def is_step(e: StoredEvent, k: int) -> bool:
        step = q.steps[k]
        return e.event == step.event and all(matches(e, f) for f in step.filters)

    def first_step(e: StoredEvent) -> int:
        return next((k for k in range(len(q.steps)) if is_step(e, k)), len(q.steps))

    counts: dict[tuple[object, int], int] = defaultdict(int)
    deltas: dict[tuple[object, int], list[int]] = defaultdict(list)
    groups: set[object] = set()
    for all_evs in by_user.values():
        evs = sorted(
            (e for e in all_evs if first_step(e) < len(q.steps)),
            key=lambda e: (e.ts_ms, first_step(e), e.uid),
        )
        anchors = [i for i, e in enumerate(evs) if is_step(e, 0)]
        if not anchors:
            continue
        g = value_of(evs[anchors[0]], q.group_by) if q.group_by else None
        groups.add(g)
        best: list[int] = []
        for i in anchors:  # earliest anchor first: a later one must go strictly further
            path = _ref_funnel_path(evs, i, q, is_step)
            if len(path) > len(best):
                best = path
        for k, done in enumerate(best, start=1):
            counts[(g, k)] += 1
            if k > 1:
                deltas[(g, k - 1)].append(done - best[k - 2])
    if q.group_by is None:
        groups = {None}
    out = []
    for g in sorted(groups, key=none_first):
        first = counts[(g, 1)]
        for k, step in enumerate(q.steps, start=1):
            item: dict[str, object] = {"step": k, "event": step.event}
            if q.group_by is not None:
                item[q.group_by] = g
            users = counts[(g, k)]
            prev = counts[(g, k - 1)] if k > 1 else users
            item["users"] = users
            item["conversion"] = users / first if first else 0.0
            item["step_conversion"] = users / prev if prev else 0.0
            item["drop_off"] = prev - users
            ds = deltas.get((g, k))
            item["median_s"] = float(statistics.median(ds)) / 1000 if ds else None
            out.append(item)
    return out


def assert_rows_equal(got: list[dict[str, object]], want: list[dict[str, object]]) -> None:
    assert [list(r) for r in got] == [list(r) for r in want]
    for g, w in zip(got, want, strict=True):
        for key, value in w.items():
            if isinstance(value, float):
                assert g[key] == pytest.approx(value, rel=1e-12), key
            else:
                assert g[key] == value, key
                assert type(g[key]) is type(value), key


# --------------------------------------------------------------------------- strategies

_appids = (f"app{i}" for i in itertools.count())


@st.composite
def events_strategy(draw: st.DrawFn) -> list[StoredEvent]:
    n = draw(st.integers(0, 40))
    out = []
    for i in range(n):
        ints: dict[int, int] = {}
        strs: dict[int, str] = {}
        if draw(st.booleans()):
            ints[0] = draw(st.integers(-(2**31), 2**31 - 1) | st.integers(-5, 20))
        if draw(st.integers(0, 3)) == 0:
            ints[3] = draw(st.integers(0, 3))
        if draw(st.booleans()):
            strs[1] = draw(st.sampled_from(["red", "blue", "green", "", "Red", "é"]))
        if draw(st.integers(0, 3)) == 0:
            strs[4] = draw(st.sampled_from(["acme", "zeta"]))
        floats: dict[int, float] = {}
        bools: dict[int, bool] = {}
        if draw(st.booleans()):
            # eighths: exact in a double, so every summation order gives the same sum
            floats[2] = draw(st.integers(-8000, 80_000).map(lambda n: n / 8))
        if draw(st.booleans()):
            bools[5] = draw(st.booleans())
        # a few popular instants make equal timestamps (funnels need strict order) common
        minute = draw(st.integers(-120, SPAN // 60_000 + 120) | st.sampled_from([0, 1, 1440]))
        ts = T0 + minute * 60_000 + draw(st.sampled_from([0, 0, 1, 59_999]))
        event = draw(st.sampled_from(["view", "view", "buy", "share", "$pageleave"]))
        out.append(
            StoredEvent(
                appid="placeholder",  # set per example
                uid=f"e{i}",
                event=event,
                user=draw(st.sampled_from(["u1", "u2", "u3", "u4", "u5"])),
                ts_ms=ts,
                received_ms=ts,
                time_estimated=False,
                page=draw(st.sampled_from(["pages/a", "pages/b", None])),
                trigger=draw(st.sampled_from(["click", "launch", None])),
                action=None,
                ints=ints,
                strs=strs,
                test_id=draw(st.sampled_from([None, None, None, None, "t1", "t2"])),
                extra=draw(system_properties(event)),
                floats=floats,
                bools=bools,
            )
        )
    return out


@st.composite
def system_properties(draw: st.DrawFn, event: str) -> dict[str, object]:
    """System properties as the ingestion stores them (columns of DIMENSIONS), some absent;
    a built-in event's data. ``$model`` is never set: its column does not exist."""
    extra: dict[str, object] = {}
    platform = draw(st.sampled_from(["ios", "android", "web", None]))
    if platform is not None:
        extra["sys_platform"] = platform
    scene = draw(st.sampled_from([1001, 1001, 1007, 1089, None]))
    if scene is not None:
        extra["sys_scene"] = scene
    extra["sys_new_user"] = draw(st.booleans())
    if draw(st.booleans()):
        extra["sys_session"] = draw(st.sampled_from(["s-1", "s-2"]))
    if event == "$pageleave":
        extra["ev_path"] = draw(st.sampled_from(["pages/a", "pages/b"]))
        if draw(st.integers(0, 4)):
            extra["ev_duration_ms"] = draw(st.integers(0, 2**40) | st.integers(0, 9))
    return extra


METRICS = [
    "count",
    "users",
    "per_user",
    "sum:price",
    "max:price",
    "min:price",
    "avg:price",
    "per_user:price",
    "sum:qty",
    "distinct:color",
    "distinct:brand",
    "avg:unused",
    "distinct:label",
    "sum:unused",
    "sum:$duration_ms",
    "avg:$duration_ms",
    "max:$scene",
    "distinct:$session",
    "distinct:$model",
    "sum:amount",
    "avg:amount",
    "max:amount",
    "min:amount",
    "per_user:amount",
    "sum:rating",
]
GROUPS = [
    "color",
    "price",
    "qty",
    "brand",
    "page",
    "trigger",
    "unused",
    "$platform",
    "$scene",
    "$new_user",
    "$model",
    "$path",
    "vip",
    "amount",
    "rating",
]
FILTERS = [
    "color=red",
    "color!=blue",
    "color=",
    "brand=acme",
    "price>=5",
    "price>0",
    "price<=3",
    "price<10",
    "price=7",
    "price!=7",
    "qty>=1",
    "page=pages/a",
    "trigger!=click",
    "unused>0",
    "label!=x",
    "$scene=1001",
    "$scene>=1005",
    "$platform!=ios",
    "$new_user=true",
    "$new_user!=1",
    "$duration_ms>5",
    "$model=x",
    "amount>=10",
    "amount<0.5",
    "amount=19.75",
    "amount!=-1e1",
    "vip=true",
    "vip!=false",
    "rating>0",
]
TZS = ["UTC", "Asia/Shanghai", "America/New_York", "Asia/Kathmandu"]


@st.composite
def window(draw: st.DrawFn) -> tuple[int, int, int]:
    a = draw(st.integers(T0 - 3 * HOUR, T0 + SPAN))
    b = draw(st.integers(a + 1, T0 + SPAN + 3 * HOUR))
    nb = draw(st.sampled_from([0, 0, a - HOUR, a + (b - a) // 2]))
    return a, b, max(nb, 0)


@st.composite
def event_queries(draw: st.DrawFn) -> EventQuery:
    a, b, nb = draw(window())
    return EventQuery.parse(
        event=draw(st.sampled_from(["view", "buy", "$pageleave"])),
        from_ms=a,
        to_ms=b,
        not_before_ms=nb,
        metrics=draw(st.lists(st.sampled_from(METRICS), min_size=1, max_size=5, unique=True)),
        group_by=draw(st.lists(st.sampled_from(GROUPS), max_size=3, unique=True)),
        filters=draw(st.lists(st.sampled_from(FILTERS), max_size=3)),
        any=draw(st.booleans()),
        granularity=draw(st.sampled_from(["hour", "day", "all"])),
        tz=draw(st.sampled_from(TZS)),
    )


@st.composite
def funnel_queries(draw: st.DrawFn) -> FunnelQuery:
    a, b, nb = draw(window())
    n = draw(st.integers(2, 4))
    steps = [
        (
            draw(st.sampled_from(["view", "buy", "share", "$pageleave"])),
            draw(st.lists(st.sampled_from(FILTERS), max_size=2)),
        )
        for _ in range(n)
    ]
    return FunnelQuery.parse(
        steps=steps,
        from_ms=a,
        to_ms=b,
        not_before_ms=nb,
        group_by=draw(
            st.sampled_from(
                [None, "color", "price", "page", "unused", "$platform", "$new_user", "vip"]
            )
        ),
        window=draw(st.sampled_from(["1s", "1m", "30m", "1h", "1d", "90d", None])),
        order=draw(st.sampled_from(["strict", "any", None])),
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBEventStore]:
    path: Path = tmp_path_factory.mktemp("reports") / "analytics.duckdb"
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


PROPERTY = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(events=events_strategy(), query=event_queries())
def test_event_analysis_matches_reference(
    store: DuckDBEventStore, events: list[StoredEvent], query: EventQuery
) -> None:
    appid, rows = load(store, events)
    got = store.event_analysis(appid, query, SLOTS)
    assert_rows_equal(got, ref_event_analysis(rows, query, {"t1"}))


@PROPERTY
@given(events=events_strategy(), query=funnel_queries())
def test_funnel_matches_reference(
    store: DuckDBEventStore, events: list[StoredEvent], query: FunnelQuery
) -> None:
    appid, rows = load(store, events)
    got = store.funnel(appid, query, SLOTS)
    assert_rows_equal(got, ref_funnel(rows, query, {"t1"}))


# --------------------------------------------------------------------------- fixed examples


def ev(
    uid: str,
    ts: int,
    *,
    event: str = "view",
    user: str = "u1",
    price: int | None = None,
    color: str | None = None,
    page: str | None = "pages/a",
) -> StoredEvent:
    return StoredEvent(
        "shop",
        uid,
        event,
        user,
        ts,
        ts,
        False,
        page,
        "click",
        None,
        {} if price is None else {0: price},
        {} if color is None else {1: color},
    )


def test_day_buckets_follow_the_time_zone(tmp_path: Path) -> None:
    with DuckDBEventStore(tmp_path / "a.duckdb") as s:
        s.append(
            [
                ev("a", T0 + 16 * HOUR - 1),  # Shanghai 2026-10-31 23:59:59.999
                ev("b", T0 + 16 * HOUR),  # Shanghai 2026-11-01 00:00
                ev("c", T0 + 29 * HOUR + 30 * 60_000),  # NY 2026-11-01 01:30 EDT
                ev("d", T0 + 30 * HOUR + 30 * 60_000),  # NY 01:30 again, EST (repeated hour)
            ]
        )
        q = _query(tz="Asia/Shanghai")
        assert s.event_analysis("shop", q, SLOTS) == [
            {"bucket": "2026-10-31", "count": 1},
            {"bucket": "2026-11-01", "count": 3},
        ]
        q = _query(tz="America/New_York", granularity="hour", from_ms=T0 + 29 * HOUR)
        assert s.event_analysis("shop", q, SLOTS) == [{"bucket": "2026-11-01T01:00", "count": 2}]
        q = _query(tz="America/New_York", granularity="all")
        assert s.event_analysis("shop", q, SLOTS) == [{"bucket": "all", "count": 4}]


def test_report_output_shape(tmp_path: Path) -> None:
    with DuckDBEventStore(tmp_path / "a.duckdb") as s:
        s.append(
            [
                ev("1", T0 + HOUR, user="u1", price=100, color="red"),
                ev("2", T0 + HOUR, user="u1", price=50, color="red"),
                ev("3", T0 + HOUR, user="u2", price=7, color="blue"),
                ev("4", T0 + HOUR, user="u2", color="blue", event="buy"),
            ]
        )
        q = _query(
            metrics=["count", "users", "per_user", "sum:price", "per_user:price"],
            group_by=["color"],
            filters=["price>=50", "color=blue"],
            any=True,
        )
        assert s.event_analysis("shop", q, SLOTS) == [
            {
                "bucket": "2026-10-31",
                "color": "blue",
                "count": 1,
                "users": 1,
                "per_user": 1.0,
                "sum:price": 7,
                "per_user:price": 7.0,
            },
            {
                "bucket": "2026-10-31",
                "color": "red",
                "count": 2,
                "users": 1,
                "per_user": 2.0,
                "sum:price": 150,
                "per_user:price": 150.0,
            },
        ]
        assert s.event_analysis("nobody", q, SLOTS) == []
        f = FunnelQuery.parse(
            steps=["view", ("buy", ["color=blue"])], from_ms=T0, to_ms=T0 + SPAN, not_before_ms=0
        )
        # u2's buy has the same timestamp as their view: same millisecond, in step order
        assert s.funnel("shop", f, SLOTS) == [
            {
                "step": 1,
                "event": "view",
                "users": 2,
                "conversion": 1.0,
                "step_conversion": 1.0,
                "drop_off": 0,
                "median_s": 0.0,
            },
            {
                "step": 2,
                "event": "buy",
                "users": 1,
                "conversion": 0.5,
                "step_conversion": 0.5,
                "drop_off": 1,
                "median_s": None,
            },
        ]


def _funnel(steps: list[str], **kw: object) -> FunnelQuery:
    return FunnelQuery.parse(steps=steps, from_ms=T0, to_ms=T0 + SPAN, not_before_ms=0, **kw)  # type: ignore[arg-type]


def test_funnel_windows_orders_and_medians(tmp_path: Path) -> None:
    with DuckDBEventStore(tmp_path / "a.duckdb") as s:
        s.append(
            [
                # u1: view, then 2 views later a buy 50 min after the SECOND view only
                ev("a1", T0, user="u1"),
                ev("a2", T0 + 2 * HOUR, user="u1"),
                ev("a3", T0 + 2 * HOUR + 50 * 60_000, user="u1", event="buy"),
                ev("a4", T0 + 2 * HOUR + 51 * 60_000, user="u1", event="share"),
                # u2: share before buy (any order only), same ms as the view
                ev("b1", T0, user="u2"),
                ev("b2", T0, user="u2", event="share"),
                ev("b3", T0 + 30_000, user="u2", event="buy"),
                # u3: one view only; two views at one ms satisfy view -> view once
                ev("c1", T0 + HOUR, user="u3"),
            ]
        )
        hour = s.funnel("shop", _funnel(["view", "buy", "share"], window="1h"), SLOTS)
        assert [r["users"] for r in hour] == [3, 2, 1]
        # u1 starts at the second view (the one that goes furthest): 50 min, then 60 s
        assert [r["median_s"] for r in hour] == [(3000 + 30) / 2, 60.0, None]
        assert [r["drop_off"] for r in hour] == [0, 1, 1]
        short = s.funnel("shop", _funnel(["view", "buy"], window="30m"), SLOTS)
        assert [r["users"] for r in short] == [3, 1]
        anyo = s.funnel("shop", _funnel(["view", "buy", "share"], window="1h", order="any"), SLOTS)
        assert [r["users"] for r in anyo] == [3, 2, 2]
        # any order: u2 has done buy and share by 30 s (share at 0 s)
        assert [r["median_s"] for r in anyo] == [(3000 + 30) / 2, (60 + 0) / 2, None]
        twice = s.funnel("shop", _funnel(["view", "view"]), SLOTS)
        assert [r["users"] for r in twice] == [3, 1]  # one event never counts as two steps
        s.append([ev("c2", T0 + HOUR, user="u3")])  # same ms: two events, two steps
        assert [r["users"] for r in s.funnel("shop", _funnel(["view", "view"]), SLOTS)] == [3, 2]


def test_funnel_window_edges_across_time_buckets(tmp_path: Path) -> None:
    # DuckDB joins a step to its anchor by time bucket (time // window, this one or the next):
    # a step exactly one window after its anchor counts, from a bucket's first ms or its last
    with DuckDBEventStore(tmp_path / "a.duckdb") as s:
        s.append(
            [
                ev("a1", T0, user="u1"),  # T0 is a whole hour
                ev("a2", T0 + HOUR, user="u1", event="buy"),
                ev("b1", T0 + HOUR - 1, user="u2"),
                ev("b2", T0 + 2 * HOUR - 1, user="u2", event="buy"),
                ev("c1", T0 + 1, user="u3"),
                ev("c2", T0 + HOUR + 2, user="u3", event="buy"),
            ]
        )
        for order in ("strict", "any"):
            rows = s.funnel("shop", _funnel(["view", "buy"], window="1h", order=order), SLOTS)
            assert [r["users"] for r in rows] == [3, 2], order
            assert rows[0]["median_s"] == 3600.0


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ("0m", "too short"),
        ("-1h", "not a duration"),
        ("abc", "not a duration"),
        ("1y", "not a duration"),
        ("", "not a duration"),
        ("91d", "too long"),
        ("13w", "too long"),
        (0, "too short"),
        (True, "duration"),
    ],
)
def test_bad_funnel_windows_are_refused(window: object, message: str) -> None:
    with pytest.raises(ReportQueryError, match=message):
        _funnel(["view", "buy"], window=window)


def test_funnel_window_and_order_parse() -> None:
    assert _funnel(["view", "buy"]).window_ms == 86_400_000
    assert _funnel(["view", "buy"], window="30m").window_ms == 30 * 60_000
    assert _funnel(["view", "buy"], window=" 90d ").window_ms == 90 * 86_400_000
    assert _funnel(["view", "buy"], window="2w").window_ms == 14 * 86_400_000
    assert _funnel(["view", "buy"], order="any").order == "any"
    with pytest.raises(ReportQueryError, match="strict or any"):
        _funnel(["view", "buy"], order="sideways")
    with pytest.raises(ReportQueryError, match="clashes"):
        _funnel(["view", "buy"], group_by="median_s")


def funnel_example_events() -> list[StoredEvent]:
    """Ties, windows and an even number of times for the median; used on every store."""
    return [
        ev("a1", T0, user="u1"),
        ev("a2", T0 + 2 * HOUR, user="u1"),
        ev("a3", T0 + 2 * HOUR + 50 * 60_000, user="u1", event="buy"),
        ev("a4", T0 + 2 * HOUR + 51 * 60_000, user="u1", event="share"),
        ev("b1", T0, user="u2"),
        ev("b2", T0, user="u2", event="share"),
        ev("b3", T0 + 30_000, user="u2", event="buy"),
        ev("c2", T0 + HOUR, user="u3"),
        ev("c1", T0 + HOUR, user="u3", event="buy"),  # same ms as the view, smaller id
        # a 1-day window is 24 h, also across New York's DST change (T0 + 30 h)
        ev("d1", T0 + 20 * HOUR, user="u4"),
        ev("d2", T0 + 44 * HOUR, user="u4", event="buy"),
        ev("e1", T0 + 20 * HOUR, user="u5"),
        ev("e2", T0 + 44 * HOUR + 1, user="u5", event="buy"),
    ]


FUNNEL_EXAMPLE: list[tuple[dict[str, object], list[int], list[float | None]]] = [
    ({"window": "1h"}, [5, 3, 1], [30.0, 60.0, None]),
    ({"window": "1d"}, [5, 4, 1], [(30 + 10_200) / 2, 60.0, None]),  # u1 from a1
    ({"window": "1h", "order": "any"}, [5, 3, 2], [30.0, 30.0, None]),
]


def test_funnel_example_and_dst(tmp_path: Path) -> None:
    with DuckDBEventStore(tmp_path / "a.duckdb") as s:
        s.append(funnel_example_events())
        for kw, users, medians in FUNNEL_EXAMPLE:
            got = s.funnel("shop", _funnel(["view", "buy", "share"], **kw), SLOTS)
            assert [r["users"] for r in got] == users, kw
            assert [r["median_s"] for r in got] == medians, kw
