"""Retention and paths on every event store (DuckDB, ClickHouse 18.16, chDB): each
hypothesis example loads the same events (and a retry of some of them with other
contents, which must change nothing) and checks the store against the plain-Python
reference of test_retention_paths AND against DuckDB."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miniport.analytics.event_store import DuckDBEventStore, EventStore, StoredEvent
from miniport.analytics.paths import PathsQuery
from miniport.analytics.retention import RetentionQuery
from tests.analytics.test_reports import SLOTS, assert_rows_equal
from tests.analytics.test_retention_paths import (
    path_events,
    path_queries,
    ref_paths,
    ref_retention,
    retention_events,
    retention_queries,
)
from tests.analytics.test_store_parity import PROPERTY, duck, load, store

__all__ = ["duck", "store"]  # the parametrised store fixtures, shared with the parity suite
pytestmark = pytest.mark.timeout(900)
retries = st.lists(st.integers(0, 59), max_size=8)


@settings(PROPERTY, max_examples=50)
@given(events=retention_events(), retry=retries, query=retention_queries())
def test_retention_parity(
    store: EventStore,
    duck: DuckDBEventStore,
    events: list[StoredEvent],
    retry: list[int],
    query: RetentionQuery,
) -> None:
    appid, rows = load([store, duck], events, retry)
    got = store.retention(appid, query, SLOTS)
    assert_rows_equal(got, ref_retention(rows, query, {"t1"}))
    assert got == duck.retention(appid, query, SLOTS)


@settings(PROPERTY, max_examples=50)
@given(events=path_events(), retry=retries, query=path_queries())
def test_paths_parity(
    store: EventStore,
    duck: DuckDBEventStore,
    events: list[StoredEvent],
    retry: list[int],
    query: PathsQuery,
) -> None:
    appid, rows = load([store, duck], events, retry)
    got = store.paths(appid, query, SLOTS)
    assert got == ref_paths(rows, query, {"t1"})
    assert got == duck.paths(appid, query, SLOTS)
