"""The DuckDB funnel scan (analytics.funnel_scan) on the edges of its algorithm: rows of the
same ms ordered by event id, an event matching two steps, anchors that share their next
step-2 row (strict order follows one chain per group), a step exactly one window after
the anchor, rows taken by an earlier step (any order), group values; and dense random
events against the plain-Python reference of test_reports."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miniport.analytics import funnel_scan
from miniport.analytics.event_store import DuckDBEventStore, StoredEvent
from miniport.analytics.reports import FunnelQuery
from tests.analytics.test_reports import SLOTS, T0, assert_rows_equal, ev, ref_funnel

_appids = (f"scan{i}" for i in itertools.count())
MINUTE = 60_000


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBEventStore]:
    s = DuckDBEventStore(tmp_path_factory.mktemp("scan") / "analytics.duckdb", threads=1)
    try:
        yield s
    finally:
        s.close()


def _load(store: DuckDBEventStore, events: list[StoredEvent]) -> tuple[str, list[StoredEvent]]:
    appid = next(_appids)
    rows = [dataclasses.replace(e, appid=appid) for e in events]
    store.append(rows)
    return appid, rows


def _q(steps: list[object], wide: bool = False, **kw: object) -> FunnelQuery:
    # wide: a range over 2^32 ms (~50 days): times are fetched as BIGINT, not UINTEGER
    return FunnelQuery.parse(
        steps=steps,  # type: ignore[arg-type]
        from_ms=T0 - (60 if wide else 1) * 86_400_000,
        to_ms=T0 + 86_400_000,
        not_before_ms=0,
        **kw,  # type: ignore[arg-type]
    )


def _check(
    store: DuckDBEventStore, events: list[StoredEvent], q: FunnelQuery
) -> list[dict[str, object]]:
    appid, rows = _load(store, events)
    got = store.funnel(appid, q, SLOTS)
    assert_rows_equal(got, ref_funnel(rows, q, set()))
    return got


def test_same_ms_rows_are_ordered_by_event_id(store: DuckDBEventStore) -> None:
    # both views match step 1; only the price>=5 one matches step 2 too. u1: the cheap view
    # has the smaller id (first), the dear one follows it: converted. u2: the dear one
    # first, then nothing after it matches step 2: not converted (strict)
    events = [
        ev("a1", T0, user="u1", price=1),
        ev("b1", T0, user="u1", price=9),
        ev("a2", T0, user="u2", price=9),
        ev("b2", T0, user="u2", price=1),
    ]
    steps: list[object] = ["view", ("view", ["price>=5"])]
    strict = _check(store, events, _q(steps, window="1m"))
    assert [r["users"] for r in strict] == [2, 1]
    # any order: u2's cheap view (b2) is an anchor, and a2 of the same ms (before it in
    # the order, not taken) is its step 2
    anyo = _check(store, events, _q(steps, window="1m", order="any"))
    assert [r["users"] for r in anyo] == [2, 2]


def test_anchors_sharing_their_next_step_and_window_edges(store: DuckDBEventStore) -> None:
    events = [
        # u1: three views before one buy 70 s after the first: 70 - 60 = 10 s, so the view
        # at 15 s is the earliest anchor that converts (55 s to the buy)
        ev("a1", T0, user="u1"),
        ev("a2", T0 + 15_000, user="u1"),
        ev("a3", T0 + 30_000, user="u1"),
        ev("a4", T0 + 70_000, user="u1", event="buy"),
        # u2: a buy exactly one window after the view counts, the share 1 ms later does not
        ev("b1", T0, user="u2"),
        ev("b2", T0 + MINUTE, user="u2", event="buy"),
        ev("b3", T0 + MINUTE + 1, user="u2", event="share"),
        # u3: the second view's chain goes further (buy and share within its minute)
        ev("c1", T0, user="u3"),
        ev("c2", T0 + 30_000, user="u3"),
        ev("c3", T0 + 70_000, user="u3", event="buy"),
        ev("c4", T0 + 80_000, user="u3", event="share"),
    ]
    for order in ("strict", "any"):
        got = _check(store, events, _q(["view", "buy", "share"], window="1m", order=order))
        assert [r["users"] for r in got] == [3, 3, 1], order
        assert [r["median_s"] for r in got] == [55.0, 10.0, None], order


def test_any_order_rows_taken_by_an_earlier_step(store: DuckDBEventStore) -> None:
    events = [
        ev("a1", T0, user="u1"),
        ev("a2", T0 + 1000, user="u1", event="buy"),  # one buy is not two steps
        ev("b1", T0, user="u2"),
        ev("b2", T0, user="u2", event="buy"),  # same ms as the view
        ev("b3", T0 + 2000, user="u2", event="buy"),
        ev("c1", T0 + 5000, user="u3", event="buy"),  # before the view: any order still
        ev("c2", T0 + 5000, user="u3"),  # needs steps at or after the anchor's time
    ]
    got = _check(store, events, _q(["view", "buy", "buy"], window="1m", order="any"))
    assert [r["users"] for r in got] == [3, 3, 1]
    got = _check(store, events, _q(["view", "buy", "buy"], window="1m"))
    assert [r["users"] for r in got] == [3, 3, 1]


def test_any_order_a_row_shared_by_two_later_steps(store: DuckDBEventStore) -> None:
    # steps 2 and 4 are both matched by the dear buy (not by the anchor): any order must
    # not take it twice; only the pair (step 2, step 4) is compared (funnel_scan skips
    # the comparisons of steps no row matches together)
    events = [
        ev("a1", T0, user="u1"),
        ev("a2", T0 + 1000, user="u1", event="buy", price=9),
        ev("a3", T0 + 2000, user="u1", event="share"),
        ev("b1", T0, user="u2"),
        ev("b2", T0 + 1000, user="u2", event="buy", price=9),
        ev("b3", T0 + 2000, user="u2", event="share"),
        ev("b4", T0 + 3000, user="u2", event="buy", price=7),
    ]
    steps: list[object] = ["view", "buy", "share", ("buy", ["price>=5"])]
    got = _check(store, events, _q(steps, window="1m", order="any"))
    assert [r["users"] for r in got] == [2, 2, 2, 1]
    got = _check(store, events, _q(steps, window="1m"))
    assert [r["users"] for r in got] == [2, 2, 2, 1]


def test_anchors_after_long_runs_of_one_ms(store: DuckDBEventStore) -> None:
    # any order starts at the first row of the anchor's (user, ms) run: the dear view (the
    # smallest id: first of the run) is the step 2 of the cheap views after it, and of no
    # anchor in strict order. A run of 3 (a few steps back) and one of 41 (past the
    # walk's rounds: the one-pass fallback)
    steps: list[object] = ["view", ("view", ["price>=5"])]
    for cheap in (2, 40):
        events = [ev("a", T0 + 5, user="u1", price=9)]
        events += [ev(f"b{i:02}", T0 + 5, user="u1", price=1) for i in range(cheap)]
        events.append(ev("c", T0, user="u2", price=1))  # another user's run before
        for order, users in (("any", [2, 1]), ("strict", [2, 0])):
            got = _check(store, events, _q(steps, window="1m", order=order))
            assert [r["users"] for r in got] == users, (cheap, order)
    anchors = np.array([2, 40, 43], dtype=np.intp)
    rows = funnel_scan.OrderedRows(
        np.array([0] * 3 + [1] * 41, dtype=np.int32),
        np.array([0] * 3 + [5] * 40 + [6], dtype=np.uint32),
        np.ones(44, dtype=np.uint16),
        [],
    )
    assert funnel_scan._run_starts(rows, anchors).tolist() == [0, 3, 43]
    assert funnel_scan._run_starts_scan(rows, anchors).tolist() == [0, 3, 43]


def test_group_value_of_the_first_anchor_by_time_then_id(store: DuckDBEventStore) -> None:
    events = [
        ev("b1", T0, user="u1", color="blue"),
        ev("a1", T0, user="u1", color="red"),  # same ms, smaller id: u1 is red
        ev("c1", T0 + 1000, user="u1", event="buy"),
        ev("a2", T0 - 5, user="u2", event="buy", color="green"),  # not an anchor
        ev("b2", T0, user="u2"),  # no color: the None group
        ev("a3", T0, user="u3", color="blue"),
    ]
    got = _check(store, events, _q(["view", "buy"], window="1m", group_by="color"))
    assert [(r["color"], r["users"]) for r in got] == [
        (None, 1),
        (None, 0),
        ("blue", 1),
        ("blue", 0),
        ("red", 1),
        ("red", 1),
    ]


def test_order_rows_finds_tie_runs_and_sorts_packed() -> None:
    user = np.array([1, 0, 1, 1, 0], dtype=np.int32)
    t = np.array([5, 9, 5, 5, 2], dtype=np.int64)
    mask = np.array([0b01, 0b10, 0b11, 0b01, 0b01], dtype=np.uint16)
    rows = funnel_scan.order_rows(user.copy(), t.copy(), mask.copy(), 2, 2)
    assert rows.user.tolist() == [0, 0, 1, 1, 1]
    assert rows.t.tolist() == [2, 9, 5, 5, 5]
    assert rows.mask.tolist() == [0b01, 0b10, 0b01, 0b01, 0b11]
    assert rows.ties == [(2, 5)]  # same user, ms and first step, not the same steps
    fixed = funnel_scan.apply_tie_order(rows, [[0b11, 0b01, 0b01]])
    assert fixed.mask.tolist() == [0b01, 0b10, 0b11, 0b01, 0b01]
    with pytest.raises(ValueError, match="tie"):
        funnel_scan.apply_tie_order(rows, [[0b11, 0b11, 0b01]])


def test_tie_runs_widen_both_ways_and_past_the_walk() -> None:
    def ties(masks: list[int], k: int, t0: int = 5) -> list[tuple[int, int]]:
        n = len(masks) + 2  # another user's rows around the run
        user = np.array([0] + [1] * len(masks) + [2], dtype=np.int32)
        t = np.array([t0] * n, dtype=np.int64)
        mask = np.array([1, *masks, 1], dtype=np.uint16)
        return funnel_scan.order_rows(user, t, mask, k, 3).ties

    # two pairs in one run (rows 1-5 after the other user's row 0): one run, both ways
    assert ties([0b101, 0b001, 0b011, 0b101, 0b001], 3) == [(1, 6)]
    # a run of 41 (past the walk's rounds: the runs of all rows)
    assert ties([0b01] * 40 + [0b11], 2) == [(1, 42)]
    assert ties([0b11] + [0b01] * 40, 2) == [(1, 42)]
    assert ties([0b01] * 40, 2) == []


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 128, 130, 1000])
def test_step_rank_across_word_edges(n: int) -> None:
    # the bitset rank of every row 0..n (n: after the last) against np.searchsorted
    mask = np.random.default_rng(n).integers(0, 8, n).astype(np.uint16)
    steps = funnel_scan._step_rows(mask, 3)
    every = np.arange(n + 1, dtype=np.intp)
    for s in (1, 2):
        want = np.searchsorted(np.flatnonzero(mask & (1 << s)), every)
        assert steps.rank(s, every).tolist() == want.tolist()
        assert steps.pos[s].tolist() == np.flatnonzero(mask & (1 << s)).tolist()


def test_user_codes_with_a_shared_bucket() -> None:
    users = np.array([5, 7, (1 << 63) + 1, (1 << 63) + 2], dtype=np.uint64)  # 2 buckets
    rows = np.array([(1 << 63) + 2, 5, 7, (1 << 63) + 1, 5], dtype=np.uint64)
    assert funnel_scan.user_codes(rows, users).tolist() == [3, 0, 1, 2, 0]
    with pytest.raises(ValueError, match="not among"):
        funnel_scan.user_codes(np.array([1 << 62], dtype=np.uint64), users)


@st.composite
def dense_events(draw: st.DrawFn) -> list[StoredEvent]:
    """Many events of few users in a few minutes: ties, shared next steps, window edges."""
    n = draw(st.integers(1, 120))
    out = []
    for i in range(n):
        ts = T0 + draw(st.integers(0, 240)) * 1000 + draw(st.sampled_from([0, 0, 1, 999]))
        out.append(
            ev(
                f"e{draw(st.integers(0, 10**6))}-{i}",
                ts,
                event=draw(st.sampled_from(["view", "view", "buy", "share"])),
                user=draw(st.sampled_from(["u1", "u2", "u3"])),
                price=draw(st.sampled_from([None, 1, 9])),
                color=draw(st.sampled_from([None, "red", "blue"])),
            )
        )
    return out


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    events=dense_events(),
    steps=st.lists(
        st.sampled_from(["view", "buy", "share", ("view", ["price>=5"]), ("buy", ["price<5"])]),
        min_size=2,
        max_size=5,
    ),
    window=st.sampled_from(["1s", "30s", "1m", "2m"]),
    order=st.sampled_from(["strict", "any"]),
    group_by=st.sampled_from([None, "color"]),
    wide=st.booleans(),
)
def test_dense_events_match_the_reference(
    store: DuckDBEventStore,
    events: list[StoredEvent],
    steps: list[object],
    window: str,
    order: str,
    group_by: str | None,
    wide: bool,
) -> None:
    _check(store, events, _q(steps, wide, window=window, order=order, group_by=group_by))
