"""One report suite over every event store: DuckDB, ClickHouse server (the oldest the tests
reach: Debian's 18.16, see scripts/clickhouse/start.sh) and chDB (the current ClickHouse
engine in-process).

Each hypothesis example loads the same generated events into the store under test and into
DuckDB (then retries part of the batch with other contents, which must change nothing),
and checks that every report kind gives exactly the rows of the plain-Python reference AND
of DuckDB: event analysis (hour/day/all buckets in time zones with a DST change in the
window, and a :45 offset), funnels, CSV export and counts."""

from __future__ import annotations

import dataclasses
import io
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miniport.analytics.clickhouse_store import ClickHouseEventStore
from miniport.analytics.event_store import DuckDBEventStore, EventStore, StoredEvent
from miniport.analytics.reports import EventQuery, FunnelQuery
from tests.analytics.test_reports import (
    FUNNEL_EXAMPLE,
    SLOTS,
    T0,
    assert_rows_equal,
    event_queries,
    events_strategy,
    funnel_example_events,
    funnel_queries,
    ref_event_analysis,
    ref_funnel,
)
from tests.conftest import clickhouse_database_url, drop_clickhouse_database, event_keys_at

KINDS = ["duckdb", "clickhouse", "chdb"]
pytestmark = pytest.mark.timeout(900)  # a few hundred examples against a real server
_appids = (f"par{i}" for i in itertools.count())

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def duck(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBEventStore]:
    s = DuckDBEventStore(tmp_path_factory.mktemp("parity") / "analytics.duckdb", threads=1)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module", params=KINDS)
def store(
    request: pytest.FixtureRequest,
    duck: DuckDBEventStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EventStore]:
    kind = request.param
    if kind == "duckdb":
        yield duck
        return
    if kind == "chdb":
        path: Path = tmp_path_factory.mktemp("chdb")
        s = ClickHouseEventStore.in_process(str(path))
        try:
            yield s
        finally:
            s.close()
        return
    url = clickhouse_database_url(f"miniport_parity_{os.getpid()}")
    drop_clickhouse_database(url)
    s = ClickHouseEventStore.from_url(
        url, event_keys_at(tmp_path_factory.mktemp("keys") / "keys.db")
    )
    try:
        yield s
    finally:
        s.close()
        drop_clickhouse_database(url)


def load(
    stores: list[EventStore], events: list[StoredEvent], retry: list[int]
) -> tuple[str, list[StoredEvent]]:
    """Append the events to each store (once per distinct store), then a retry of some of
    them received later with other contents; sync test t1."""
    appid = next(_appids)
    rows = [dataclasses.replace(e, appid=appid) for e in events]
    again = [
        dataclasses.replace(rows[i], received_ms=rows[i].received_ms + 1, event="buy", user="u9")
        for i in retry
        if i < len(rows)
    ]
    for s in {id(s): s for s in stores}.values():
        first = s.append(rows)
        assert first.inserted == len(rows)
        assert s.append(again).inserted == 0
        s.sync_test(appid, "t1")
    return appid, rows


retries = st.lists(st.integers(0, 39), max_size=8)


@PROPERTY
@given(events=events_strategy(), retry=retries, query=event_queries())
def test_event_analysis_parity(
    store: EventStore,
    duck: DuckDBEventStore,
    events: list[StoredEvent],
    retry: list[int],
    query: EventQuery,
) -> None:
    appid, rows = load([store, duck], events, retry)
    got = store.event_analysis(appid, query, SLOTS)
    assert_rows_equal(got, ref_event_analysis(rows, query, {"t1"}))
    assert got == duck.event_analysis(appid, query, SLOTS)


@PROPERTY
@given(events=events_strategy(), retry=retries, query=funnel_queries())
def test_funnel_parity(
    store: EventStore,
    duck: DuckDBEventStore,
    events: list[StoredEvent],
    retry: list[int],
    query: FunnelQuery,
) -> None:
    appid, rows = load([store, duck], events, retry)
    got = store.funnel(appid, query, SLOTS)
    assert_rows_equal(got, ref_funnel(rows, query, {"t1"}))
    assert got == duck.funnel(appid, query, SLOTS)


@settings(PROPERTY, max_examples=30)
@given(
    events=events_strategy(),
    retry=retries,
    event=st.sampled_from(["view", "buy"]),
    window=st.tuples(st.integers(-3, 60), st.integers(1, 80), st.sampled_from([0, 10])),
)
def test_export_and_counts_parity(
    store: EventStore,
    duck: DuckDBEventStore,
    events: list[StoredEvent],
    retry: list[int],
    event: str,
    window: tuple[int, int, int],
) -> None:
    appid, rows = load([store, duck], events, retry)
    hour = 3_600_000
    lo, hi, nb = T0 + window[0] * hour, T0 + (window[0] + window[1]) * hour, T0 + window[2] * hour
    got, want = io.StringIO(), io.StringIO()
    n = store.export_csv(appid, event, lo, hi, SLOTS, got, not_before_ms=nb)
    assert n == duck.export_csv(appid, event, lo, hi, SLOTS, want, not_before_ms=nb)
    assert got.getvalue() == want.getvalue()
    visible = [r for r in rows if r.test_id in (None, "t1")]
    assert n == sum(1 for r in visible if r.event == event and max(lo, nb) <= r.ts_ms < hi)
    assert store.count(appid) == len(visible) == duck.count(appid)
    assert store.count(appid, event) == sum(1 for r in visible if r.event == event)
    assert store.count(appid, include_tests=True) == len(rows)


def test_odd_strings_round_trip(store: EventStore, duck: DuckDBEventStore) -> None:
    odd = ["tab\there", "line\nbreak", "back\\slash", "quote'", "cr\r", "nul\0", "é😀", "\\N", ""]
    events = [
        StoredEvent(
            "x", f"o{i}", "view", f"u{i}", T0 + i, T0 + i, False, text, None, None, {}, {1: text}
        )
        for i, text in enumerate(odd)
    ]
    appid, _ = load([store, duck], events, [])
    got, want = io.StringIO(), io.StringIO()
    store.export_csv(appid, "view", T0, T0 + 100, SLOTS, got, not_before_ms=0)
    duck.export_csv(appid, "view", T0, T0 + 100, SLOTS, want, not_before_ms=0)
    assert got.getvalue() == want.getvalue()
    assert all(text in want.getvalue() for text in odd)


def test_forget_user_parity(store: EventStore, duck: DuckDBEventStore) -> None:
    events = [
        StoredEvent(
            "x", f"f{i}", "view", f"u{i % 3}", T0 + i, T0 + i, False, None, None, None, {}, {}
        )
        for i in range(12)
    ]
    appid, _ = load([store, duck], events, [1, 2])
    for s in {id(s): s for s in (store, duck)}.values():
        assert s.forget_user(appid, "u1") >= 4  # ClickHouse counts the retried copies too
    assert store.count(appid) == duck.count(appid) == 8
    assert store.forget_user(appid, "u1") == 0


def test_funnel_example_parity(store: EventStore, duck: DuckDBEventStore) -> None:
    appid, rows = load([store, duck], funnel_example_events(), [])
    for kw, users, medians in FUNNEL_EXAMPLE:
        q = FunnelQuery.parse(
            steps=["view", "buy", "share"],
            from_ms=T0,
            to_ms=T0 + 3 * 86_400_000,
            not_before_ms=0,
            **kw,  # type: ignore[arg-type]
        )
        got = store.funnel(appid, q, SLOTS)
        assert [r["users"] for r in got] == users, kw
        assert [r["median_s"] for r in got] == medians, kw
        assert_rows_equal(got, ref_funnel(rows, q, {"t1"}))
