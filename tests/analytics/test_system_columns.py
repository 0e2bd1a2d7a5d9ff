"""System-property and built-in data columns on every event store (DuckDB, ClickHouse server,
chDB): a store made before them is upgraded on open and keeps its events, each user's first
day is recorded once, forgetting a user forgets it too, and a column added by one ClickHouse
node is read (not taken for NULL) by another."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from miniport.analytics.clickhouse_store import ClickHouseEventStore
from miniport.analytics.event_store import DuckDBEventStore, EventStore, StoredEvent
from miniport.analytics.reports import EventQuery, FieldSlots, FunnelQuery, ReportQueryError
from tests.conftest import clickhouse_database_url, drop_clickhouse_database, event_keys_at

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
DAY = 86_400_000
KINDS = ["duckdb", "chdb", "clickhouse"]


def ev(uid: str, *, event: str = "view", user: str = "u1", **extra: object) -> StoredEvent:
    return StoredEvent(
        "shop", uid, event, user, T0, T0, False, None, None, None, {}, {}, None, extra
    )


def report(store: EventStore, event: str = "view", **kw: object) -> list[dict[str, object]]:
    query = EventQuery.parse(
        event=event,
        from_ms=T0 - DAY,
        to_ms=T0 + DAY,
        not_before_ms=0,
        granularity="all",
        **{"metrics": ["count"], **kw},  # type: ignore[arg-type]
    )
    return store.event_analysis("shop", query, {})


class Opener:
    """Opens the same store again (a restart) for one kind."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind, self.tmp = kind, tmp
        self.url = ""
        if kind == "clickhouse":
            self.url = clickhouse_database_url("miniport_syscols")
            drop_clickhouse_database(self.url)

    def open(self) -> EventStore:
        if self.kind == "duckdb":
            return DuckDBEventStore(self.tmp / "analytics.duckdb")
        if self.kind == "chdb":
            return ClickHouseEventStore.in_process(str(self.tmp / "chdb"))
        return ClickHouseEventStore.from_url(self.url, event_keys_at(self.tmp / "keys.db"))

    def drop_first_seen(self) -> None:
        """Make the store look like one made before system properties existed."""
        if self.kind == "duckdb":
            con = duckdb.connect(str(self.tmp / "analytics.duckdb"))
            con.execute("DROP TABLE first_seen")
            con.close()
        else:
            store = self.open()
            assert isinstance(store, ClickHouseEventStore)
            store._exec("DROP TABLE first_seen")
            store.close()

    def close(self) -> None:
        if self.url:
            drop_clickhouse_database(self.url)


@pytest.fixture(params=KINDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    o = Opener(request.param, tmp_path)
    try:
        yield o
    finally:
        o.close()


def test_an_old_store_is_upgraded_on_open_and_keeps_its_events(opener: Opener) -> None:
    old = opener.open()
    old.append([ev("old-1"), ev("old-2", user="u2")])
    old.close()
    opener.drop_first_seen()
    new = opener.open()
    try:
        assert new.first_days("shop", {"u1": 5}) == {"u1": 5}
        new.append(
            [
                ev("new-1", sys_platform="ios", sys_scene=1001, sys_new_user=True),
                ev("new-2", event="$pageleave", ev_path="p", ev_duration_ms=2**40),
            ]
        )
        assert report(new, group_by=["$platform"]) == [
            {"bucket": "all", "$platform": None, "count": 2},
            {"bucket": "all", "$platform": "ios", "count": 1},
        ]
        assert report(new, filters=["$scene=1001"], group_by=["$new_user"]) == [
            {"bucket": "all", "$new_user": True, "count": 1}
        ]
        assert report(new, "$pageleave", metrics=["sum:$duration_ms"], group_by=["$path"]) == [
            {"bucket": "all", "$path": "p", "sum:$duration_ms": 2**40}
        ]
        assert new.count("shop") == 4
    finally:
        new.close()


def test_first_days_are_set_once_and_forgotten_with_the_user(opener: Opener) -> None:
    store = opener.open()
    try:
        assert store.first_days("shop", {"u1": 100, "u2": 101}) == {"u1": 100, "u2": 101}
        assert store.first_days("shop", {"u1": 99, "u3": 7}) == {"u1": 100, "u3": 7}
        assert store.first_days("other", {"u1": 3}) == {"u1": 3}  # per app
        assert store.first_days("shop", {}) == {}
        store.append([ev("a", user="u1", sys_platform="web")])
        assert store.forget_user("shop", "u1", at_ms=150 * 86_400_000) == 1  # on day 150
        assert store.first_days("shop", {"u1": 120}) == {}  # only erased events are that old
        assert store.first_days("shop", {"u1": 200}) == {"u1": 200}  # new again
        assert store.first_days("other", {"u1": 9}) == {"u1": 3}
    finally:
        store.close()


def test_a_column_added_by_another_node_is_read(clickhouse_url: str, tmp_path: Path) -> None:
    a, b = (
        ClickHouseEventStore.from_url(clickhouse_url, event_keys_at(tmp_path / "keys.db")),
        ClickHouseEventStore.from_url(clickhouse_url, event_keys_at(tmp_path / "keys.db")),
    )
    try:
        b.append([ev("x")])  # b has seen the table without the column
        a.append([ev("y", sys_platform="android", sys_new_user=False)])
        assert report(b, group_by=["$platform"]) == [
            {"bucket": "all", "$platform": None, "count": 1},
            {"bucket": "all", "$platform": "android", "count": 1},
        ]
        funnel = FunnelQuery.parse(
            steps=["view", "view"],
            from_ms=T0 - DAY,
            to_ms=T0 + DAY,
            not_before_ms=0,
            group_by="$new_user",
        )
        assert b.funnel("shop", funnel, {})[0] == {
            "step": 1,
            "event": "view",
            "$new_user": None,
            "users": 1,
            "conversion": 1.0,
            "step_conversion": 1.0,
            "drop_off": 0,
            "median_s": 0.0,  # both views are the same user's, in the same millisecond
        }
    finally:
        a.close()
        b.close()


def test_stored_event_refuses_unknown_or_mistyped_columns() -> None:
    with pytest.raises(ValueError, match="not a system-property"):
        ev("a", sys_nope="x")
    with pytest.raises(ValueError, match="not a system-property"):
        ev("a", i0=3)
    with pytest.raises(TypeError, match="sys_scene"):
        ev("a", sys_scene="1001")
    with pytest.raises(TypeError, match="sys_scene"):
        ev("a", sys_scene=2**31)
    with pytest.raises(TypeError, match="sys_new_user"):
        ev("a", sys_new_user=1)
    with pytest.raises(TypeError, match="sys_platform"):
        ev("a", sys_platform=None)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"group_by": ["$nope"]}, "unknown system property '\\$nope'"),
        ({"filters": ["$platform>=ios"]}, "only takes = or !="),
        ({"filters": ["$scene=home"]}, "not an integer"),
        ({"filters": ["$new_user=maybe"]}, "true or false"),
        ({"filters": ["$new_user>=1"]}, "true or false"),
        ({"metrics": ["sum:$platform"]}, "needs an int or float field"),
        ({"metrics": ["sum:$new_user"]}, "'\\$new_user' is a bool field"),
        ({"metrics": ["distinct:$scene"]}, "needs a string field"),
        ({"group_by": ["$Platform"]}, "not a valid name"),
        ({"event": "$crash"}, "unknown built-in event '\\$crash'"),
    ],
)
def test_bad_system_property_queries_are_clear_errors(
    kw: dict[str, object], message: str, tmp_path: Path
) -> None:
    with (
        DuckDBEventStore(tmp_path / "a.duckdb") as store,
        pytest.raises(ReportQueryError, match=message),
    ):
        report(store, **kw)  # type: ignore[arg-type]


def test_float_and_bool_fields_round_trip(opener: Opener) -> None:
    slots: FieldSlots = {"amount": ("float", 0), "vip": ("bool", 3), "late": ("float", 9)}
    store = opener.open()
    try:
        rows = [
            dataclasses.replace(ev(f"p{i}", user=f"u{i % 2}"), floats={0: a}, bools=b)
            for i, (a, b) in enumerate(
                [(19.99, {3: True}), (0.1, {3: True}), (1e-05, {3: False}), (2.5e20, {})]
            )
        ]
        store.append(rows)
        query = EventQuery.parse(
            event="view", from_ms=T0 - DAY, to_ms=T0 + DAY, not_before_ms=0, granularity="all",
            metrics=["count", "sum:amount", "min:amount", "sum:late"], group_by=["vip"],
        )  # fmt: skip
        got = store.event_analysis("shop", query, slots)
        assert got == [
            {"bucket": "all", "vip": None, "count": 1, "sum:amount": 2.5e20,
             "min:amount": 2.5e20, "sum:late": 0.0},
            {"bucket": "all", "vip": False, "count": 1, "sum:amount": 1e-05,
             "min:amount": 1e-05, "sum:late": 0.0},
            {"bucket": "all", "vip": True, "count": 2, "sum:amount": pytest.approx(20.09),
             "min:amount": 0.1, "sum:late": 0.0},
        ]  # fmt: skip
        out = io.StringIO()
        store.export_csv("shop", "view", T0 - DAY, T0 + DAY, slots, out, not_before_ms=0)
        lines = out.getvalue().splitlines()
        assert lines[0] == "time,user,page,trigger,action,amount,vip,late"
        assert sorted(line.split(",", 5)[5] for line in lines[1:]) == [
            "0.1,true,", "19.99,true,", "1e-05,false,", "2.5e+20,,",
        ]  # fmt: skip
    finally:
        store.close()
