"""One user's events (lookup for support) and forgetting them, on every event store: DuckDB,
chDB (ClickHouse in-process) and a ClickHouse server. Pages put together are exactly the
user's events in (time, id) order, checked against a plain computation on random events."""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miniport.analytics.clickhouse_store import ClickHouseEventStore
from miniport.analytics.event_store import DuckDBEventStore, EventStore, StoredEvent
from miniport.analytics.user_events import compile_user_events, parse_cursor
from miniport.errors import ReportQueryError
from tests.conftest import clickhouse_database_url, drop_clickhouse_database, event_keys_at

KINDS = ["duckdb", "chdb", "clickhouse"]
SLOTS = {"price": ("int", 0), "color": ("string", 0), "size": ("int", 1)}
T0 = 1_767_225_600_000
_appids = (f"ue{i}" for i in itertools.count())


@pytest.fixture(scope="module", params=KINDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EventStore]:
    kind = request.param
    path: Path = tmp_path_factory.mktemp(kind)
    if kind == "duckdb":
        duck = DuckDBEventStore(path / "analytics.duckdb", threads=1)
        yield duck
        duck.close()
        return
    if kind == "chdb":
        chdb = ClickHouseEventStore.in_process(str(path))
        yield chdb
        chdb.close()
        return
    url = clickhouse_database_url(f"miniport_users_{os.getpid()}")
    drop_clickhouse_database(url)
    server = ClickHouseEventStore.from_url(url, event_keys_at(path / "keys.db"))
    try:
        yield server
    finally:
        server.close()
        drop_clickhouse_database(url)


def ev(
    appid: str,
    uid: str,
    user: str,
    ts: int,
    *,
    event: str = "buy",
    ints: dict[int, int] | None = None,
    strs: dict[int, str] | None = None,
    test_id: str | None = None,
) -> StoredEvent:
    return StoredEvent(
        appid, uid, event, user, ts, ts + 5, False, "pages/a", None, None,
        ints or {}, strs or {}, test_id,
    )  # fmt: skip


def test_events_in_time_order_with_fields_decoded(store: EventStore) -> None:
    appid = next(_appids)
    store.append(
        [
            ev(appid, "b", "u1", T0 + 2000, ints={0: 30}, strs={0: "red"}),
            ev(appid, "a", "u1", T0 + 1000, event="view", ints={1: 2}),
            ev(appid, "c", "u2", T0 + 1500, ints={0: 99}),
            ev(appid, "d", "u1", T0 + 3000, event="tap", test_id="t_1"),
            ev(appid, "z", "u1", T0 - 10_000),  # before the retention cut-off
        ]
    )
    page = store.user_events(appid, "u1", SLOTS, limit=10, before=None, not_before_ms=T0)
    assert [(e["id"], e["event"], e["data"]) for e in page.events] == [
        ("a", "view", {"size": 2}),
        ("b", "buy", {"price": 30, "color": "red"}),
        ("d", "tap", {}),
    ]
    assert page.events[0]["time"] == "2026-01-01T00:00:01.000Z"
    assert page.events[0]["page"] == "pages/a"
    assert page.events[2]["test_id"] == "t_1" and page.events[2]["visible"] is False
    assert page.before is None
    none = store.user_events(appid, "nobody", SLOTS, limit=10, before=None, not_before_ms=T0)
    assert none.events == [] and none.before is None


def test_bool_and_float_fields_read_the_same_on_every_store(store: EventStore) -> None:
    """A bool field is true/false on ClickHouse too, whose bool slots are UInt8 (it gave 0/1)."""
    appid = next(_appids)
    slots = {"gift": ("bool", 0), "wrapped": ("bool", 1), "weight": ("float", 0)}
    row = ev(appid, "g", "u1", T0)
    row.bools, row.floats = {0: True, 1: False}, {0: 1.5}
    store.append([row, ev(appid, "h", "u1", T0 + 1)])
    page = store.user_events(appid, "u1", slots, limit=10, before=None, not_before_ms=0)
    data = [e["data"] for e in page.events]
    assert data == [{"gift": True, "wrapped": False, "weight": 1.5}, {}]
    assert [type(v) for v in data[0].values()] == [bool, bool, float]


def test_float_fields_read_back_as_the_very_doubles_stored(store: EventStore) -> None:
    """ClickHouse 18.16 read some floats' text one unit in the last place off (about one in
    ten: below 1e-3, above 1e17, and some between 1 and 10), so its stored doubles and
    DuckDB's differed; RowBinary carries their bytes."""
    appid = next(_appids)
    rng = random.Random(7)
    values = [1.23456e-05, 9.87654321012345e-05, 5e-324, 0.1, 3.3, -2.5e300]
    values += [rng.uniform(0, 10) for _ in range(60)]
    values += [rng.uniform(-1, 1) * 10.0 ** rng.randint(-20, 20) for _ in range(60)]
    rows = []
    for i, value in enumerate(values):
        row = ev(appid, f"f{i:03d}", "u1", T0 + i)
        row.floats = {0: value}
        rows.append(row)
    store.append(rows)
    slots = {"weight": ("float", 0)}
    page = store.user_events(appid, "u1", slots, limit=1000, before=None, not_before_ms=0)
    assert [e["data"]["weight"] for e in page.events] == values


def test_pages_walk_back_through_ties(store: EventStore) -> None:
    appid = next(_appids)
    # five events in one millisecond, three in the next
    rows = [ev(appid, f"k{i}", "u1", T0 + (i // 5)) for i in range(8)]
    store.append(rows)
    seen: list[str] = []
    before = None
    pages = 0
    while True:
        page = store.user_events(appid, "u1", {}, limit=3, before=before, not_before_ms=0)
        seen = [str(e["id"]) for e in page.events] + seen
        pages += 1
        if page.before is None:
            break
        before = page.before
    assert pages == 3
    assert seen == [f"k{i}" for i in range(8)]


def test_forget_then_lookup_is_empty(store: EventStore) -> None:
    appid = next(_appids)
    store.append([ev(appid, f"f{i}", "gone", T0 + i) for i in range(3)])
    store.append([ev(appid, "f3", "gone", T0 + 3, test_id="t_9")])
    assert store.sync_test(appid, "t_9") == 1  # on ClickHouse: a second, visible copy
    store.append([ev(appid, "stay", "kept", T0)])
    assert store.forget_user(appid, "gone") == 4
    page = store.user_events(appid, "gone", SLOTS, limit=10, before=None, not_before_ms=0)
    assert page.events == []
    kept = store.user_events(appid, "kept", SLOTS, limit=10, before=None, not_before_ms=0)
    assert [e["id"] for e in kept.events] == ["stay"]


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u/3"]),
        st.integers(0, 20),  # ms after T0: many ties
        st.one_of(st.none(), st.integers(-5, 5)),
    ),
    max_size=25,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=EVENTS, limit=st.integers(1, 6), user=st.sampled_from(["u1", "u/3"]))
def test_pages_match_a_plain_computation(
    store: EventStore, events: list[tuple[str, int, int | None]], limit: int, user: str
) -> None:
    appid = next(_appids)
    rows = [
        ev(appid, f"e{i:02d}", u, T0 + dt, ints={} if v is None else {0: v})
        for i, (u, dt, v) in enumerate(events)
    ]
    if rows:
        store.append(rows)
    expected = sorted((r.ts_ms, r.uid, r.ints.get(0)) for r in rows if r.user == user)
    got: list[tuple[int, str, object]] = []
    before = None
    while True:
        page = store.user_events(appid, user, SLOTS, limit=limit, before=before, not_before_ms=0)
        assert len(page.events) <= limit
        data = [cast(dict[str, object], e["data"]) for e in page.events]
        shown = [(cast(int, e["ts_ms"]), str(e["id"])) for e in page.events]
        got = [(ts, uid, d.get("price")) for (ts, uid), d in zip(shown, data, strict=True)] + got
        if page.before is None:
            break
        before = page.before
    assert got == expected


def test_bad_input_is_refused() -> None:
    with pytest.raises(ReportQueryError, match="a user id is needed"):
        compile_user_events("a", " ", {}, not_before_ms=0)
    with pytest.raises(ReportQueryError, match="limit must be"):
        compile_user_events("a", "u", {}, limit=0, not_before_ms=0)
    with pytest.raises(ReportQueryError, match="limit must be"):
        compile_user_events("a", "u", {}, limit=1001, not_before_ms=0)
    with pytest.raises(ReportQueryError, match="cursor"):
        compile_user_events("a", "u", {}, before="yesterday", not_before_ms=0)
    with pytest.raises(ReportQueryError, match="at most 128"):
        compile_user_events("a", "u" * 129, {}, not_before_ms=0)
    assert parse_cursor("12:a:b") == (12, "a:b")
    assert parse_cursor(None) is None
