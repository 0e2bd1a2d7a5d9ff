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
from tests.analytics.test_reports import SLOTS, T0, assert_rows_equal
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


def test_retention_by_a_bool_field_or_a_property_no_event_carried_yet(
    store: EventStore, duck: DuckDBEventStore
) -> None:
    """On ClickHouse a retention grouped by a system property no event of the app had carried
    failed (its column did not exist: the other reports create it first), and a bool group
    came back as 0/1. Every store gives DuckDB's rows."""
    day = 86_400_000
    events = [
        StoredEvent("placeholder", f"b{i}", "view", user, T0 + d * day, T0 + d * day, False,
                    "pages/a", None, None, {}, {}, bools={5: vip})
        for i, (user, d, vip) in enumerate([("u1", 0, True), ("u1", 1, True), ("u2", 0, False)])
    ]  # fmt: skip
    appid, _ = load([store, duck], events, [])
    for group_by in ("vip", "$platform", "$cold", "$new_user"):
        query = RetentionQuery(start="view", returning="view", from_ms=T0, to_ms=T0 + 3 * day,
                               not_before_ms=0, periods=2, group_by=group_by)
        got = store.retention(appid, query, SLOTS)
        assert got == duck.retention(appid, query, SLOTS), group_by
        if group_by == "vip":
            assert [type(r["vip"]) for r in got] == [bool] * len(got)  # not 0/1
