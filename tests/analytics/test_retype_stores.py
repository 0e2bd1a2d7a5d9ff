"""Reports across a field's type change on every event store (DuckDB, the ClickHouse 18.16
test server, chDB), checked against a plain-Python reading of the rule in
:mod:`miniport.analytics.field_history`: parts that convert exactly are read as the current
type; other parts are kept apart (own group-by rows, never matched by filters, not counted
by metrics); nothing stored is rewritten."""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import os
import random
from collections import Counter
from collections.abc import Iterator

import pytest

from miniport.analytics.clickhouse_store import ClickHouseEventStore
from miniport.analytics.event_store import DuckDBEventStore, EventStore, StoredEvent
from miniport.analytics.field_history import FieldHistory, FieldPart, SlotMap
from miniport.analytics.reports import EventQuery, FunnelQuery
from tests.conftest import clickhouse_database_url, drop_clickhouse_database, event_keys_at

KINDS = ["duckdb", "clickhouse", "chdb"]
_appids = (f"rt{i}" for i in itertools.count())

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
HOUR = 3_600_000
T_A = T0 + 10 * HOUR  # first publish with a change
T_B = T0 + 20 * HOUR  # second

HISTORY = {
    # string until T_A, then int: the string part is kept apart
    "price": FieldHistory("price", (FieldPart("string", 0), FieldPart("int", 0, T_A, 2))),
    # int then float: converted
    "qty": FieldHistory("qty", (FieldPart("int", 1), FieldPart("float", 0, T_A, 2))),
    # bool then string: converted to "true"/"false"
    "flag": FieldHistory("flag", (FieldPart("bool", 0), FieldPart("string", 1, T_A, 2))),
    # int, string, back to int in its old slot: the string part is kept apart
    "code": FieldHistory(
        "code", (FieldPart("int", 2), FieldPart("string", 2, T_A, 2), FieldPart("int", 2, T_B, 3))
    ),
}
SLOTS = SlotMap(
    {
        "price": ("int", 0),
        "qty": ("float", 0),
        "flag": ("string", 1),
        "code": ("int", 2),
        "color": ("string", 3),
    },
    HISTORY,
)


def stored_as(name: str, ts: int) -> FieldPart:
    """The part an event accepted at ``ts`` was written to."""
    return next(p for p, a, b in reversed(HISTORY[name].ranges()) if a is None or ts >= a)


def make_events(seed: int, n: int = 160) -> list[tuple[StoredEvent, dict[str, tuple[str, object]]]]:
    """Events over the three periods, each field (maybe) given in the type of its period;
    returned with the value each field holds and in which type."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        ts = T0 + rnd.randrange(30 * HOUR)
        values: dict[str, tuple[str, object]] = {}
        ints: dict[int, int] = {}
        strs: dict[int, str] = {}
        floats: dict[int, float] = {}
        bools: dict[int, bool] = {}
        for name in HISTORY:
            if rnd.random() < 0.2:
                continue
            part = stored_as(name, ts)
            value: object
            if part.type == "int":
                value = rnd.choice([0, 1, 7, -3, 2**31 - 1])
                ints[part.slot] = value  # type: ignore[assignment]
            elif part.type == "float":
                value = rnd.choice([0.5, 1.25, 7.0, -2.75])
                floats[part.slot] = value  # type: ignore[assignment]
            elif part.type == "bool":
                value = rnd.random() < 0.5
                bools[part.slot] = value  # type: ignore[assignment]
            else:
                value = rnd.choice(["7", "abc", "true", "", "x y"])
                strs[part.slot] = value  # type: ignore[assignment]
            values[name] = (part.type, value)
        color = rnd.choice(["red", "blue", None])
        if color is not None:
            strs[3] = color
        event = rnd.choice(["view", "buy"])
        out.append(
            (
                StoredEvent(
                    "x",
                    f"e{i}",
                    event,
                    f"u{rnd.randrange(12)}",
                    ts,
                    ts,
                    False,
                    "p/a",
                    "click",
                    None,
                    ints,
                    strs,
                    None,
                    {},
                    floats,
                    bools,
                ),
                values,
            )
        )
    return out


def read(name: str, values: dict[str, tuple[str, object]]) -> tuple[object, object]:
    """The reference rule: ``(value as the current type or None, kept-apart value or None)``."""
    if name not in values:
        return None, None
    kind, value = values[name]
    now = HISTORY[name].current.type
    if kind == now:
        return value, None
    if (kind, now) == ("int", "float") or (kind, now) == ("bool", "float"):
        return float(value), None  # type: ignore[arg-type]
    if (kind, now) == ("bool", "int"):
        return int(value), None  # type: ignore[call-overload]
    if (kind, now) == ("int", "string"):
        return str(value), None
    if (kind, now) == ("bool", "string"):
        return ("true" if value else "false"), None
    return None, value


@pytest.fixture(scope="module", params=KINDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EventStore]:
    kind = request.param
    if kind == "duckdb":
        s: EventStore = DuckDBEventStore(tmp_path_factory.mktemp("rt") / "a.duckdb", threads=1)
    elif kind == "chdb":
        s = ClickHouseEventStore.in_process(str(tmp_path_factory.mktemp("chdb")))
    else:
        url = clickhouse_database_url(f"miniport_retype_{os.getpid()}")
        drop_clickhouse_database(url)
        keys = event_keys_at(tmp_path_factory.mktemp("keys") / "keys.db")
        s = ClickHouseEventStore.from_url(url, keys)
    try:
        yield s
    finally:
        s.close()
        if kind == "clickhouse":
            drop_clickhouse_database(url)


@pytest.fixture(scope="module")
def loaded(
    store: EventStore,
) -> tuple[str, list[tuple[StoredEvent, dict[str, tuple[str, object]]]]]:
    appid = next(_appids)
    events = make_events(7)
    rows = [dataclasses.replace(ev, appid=appid) for ev, _ in events]
    assert store.append(rows).inserted == len(rows)
    return appid, events


def query(**kw: object) -> EventQuery:
    args: dict[str, object] = {
        "event": "view", "from_ms": T0, "to_ms": T0 + 31 * HOUR, "not_before_ms": 0,
        "metrics": ["count"], "granularity": "all",
    }  # fmt: skip
    args.update(kw)
    return EventQuery.parse(**args)  # type: ignore[arg-type]


def _sort_key(key: tuple[object, object]) -> tuple[object, ...]:
    cur, apart = key
    return (
        cur is not None,
        cur if cur is not None else 0,
        apart is not None,
        apart if apart is not None else "",
    )


@pytest.mark.parametrize("name", ["price", "qty", "flag", "code"])
def test_group_by_reads_across_the_change(store: EventStore, loaded: tuple, name: str) -> None:
    appid, events = loaded
    got = store.event_analysis(appid, query(group_by=[name]), SLOTS)
    counts = Counter(read(name, values) for ev, values in events if ev.event == "view")
    apart_kind = {"price": "string", "code": "string"}.get(name)
    want = []
    for key in sorted(counts, key=_sort_key):
        cur, apart = key
        row: dict[str, object] = {"bucket": "all", name: cur if apart is None else apart}
        if apart_kind is not None:
            row[f"{name}@type"] = (
                None
                if key == (None, None)
                else HISTORY[name].current.type
                if apart is None
                else apart_kind
            )
        row["count"] = counts[key]
        want.append(row)
    assert got == want
    if apart_kind is not None:  # the old values are there, not lost or mixed in
        assert any(r[f"{name}@type"] == apart_kind for r in got)


def test_metrics_count_only_the_current_type(store: EventStore, loaded: tuple) -> None:
    appid, events = loaded
    got = store.event_analysis(
        appid,
        query(
            event="buy", metrics=["sum:price", "max:code", "sum:qty", "avg:qty", "distinct:flag"]
        ),
        SLOTS,
    )
    buys = [values for ev, values in events if ev.event == "buy"]

    def current(name: str) -> list[object]:
        return [v for v in (read(name, values)[0] for values in buys) if v is not None]

    assert got == [
        {
            "bucket": "all",
            "sum:price": sum(current("price")),  # type: ignore[arg-type]
            "max:code": max(current("code")),  # type: ignore[type-var]
            "sum:qty": pytest.approx(sum(current("qty"))),  # type: ignore[arg-type]
            "avg:qty": pytest.approx(sum(current("qty")) / len(current("qty"))),  # type: ignore[arg-type]
            "distinct:flag": len(set(current("flag"))),
        }
    ]
    # the string part of price holds numbers-as-text too: they are not summed
    assert any(values.get("price") == ("string", "7") for values in buys)


@pytest.mark.parametrize(
    ("text", "field", "test"),
    [
        ("price>=1", "price", lambda v: v >= 1),
        ("price=7", "price", lambda v: v == 7),  # the string "7" before the change does not match
        ("flag=true", "flag", lambda v: v == "true"),  # bools before the change do
        ("qty>1", "qty", lambda v: v > 1),
        ("code!=7", "code", lambda v: v != 7),  # the kept-apart strings never match
    ],
)
def test_filters_match_the_current_type(
    store: EventStore, loaded: tuple, text: str, field: str, test: object
) -> None:
    appid, events = loaded
    got = store.event_analysis(appid, query(filters=[text]), SLOTS)
    want = sum(
        1
        for ev, values in events
        if ev.event == "view" and (v := read(field, values)[0]) is not None and test(v)  # type: ignore[operator]
    )
    assert got == ([{"bucket": "all", "count": want}] if want else [])


@pytest.mark.parametrize("group", ["qty", "price"])
def test_funnel_step_filter_and_group_by(store: EventStore, loaded: tuple, group: str) -> None:
    """Funnels group by one value per user: a part kept apart (price's strings) is in the
    None group there, a converted part (qty's ints) in its converted value's group."""
    appid, events = loaded
    q = FunnelQuery.parse(
        steps=[("view", ["flag=true"]), "buy"], from_ms=T0, to_ms=T0 + 31 * HOUR, not_before_ms=0,
        window="2d",
    )  # fmt: skip
    got = store.funnel(appid, q, SLOTS)
    starters = {
        ev.user for ev, values in events if ev.event == "view" and read("flag", values)[0] == "true"
    }
    assert got[0]["users"] == len(starters)
    by_group_q = FunnelQuery.parse(
        steps=["view", "buy"], from_ms=T0, to_ms=T0 + 31 * HOUR, not_before_ms=0, group_by=group
    )
    grouped = store.funnel(appid, by_group_q, SLOTS)
    firsts: dict[str, tuple[int, str, object]] = {}
    for ev, values in events:
        if ev.event == "view":
            key = (ev.ts_ms, ev.uid, read(group, values)[0])
            if ev.user not in firsts or key < firsts[ev.user]:
                firsts[ev.user] = key
    by_group = Counter(v for _, _, v in firsts.values())
    assert {r[group]: r["users"] for r in grouped if r["step"] == 1} == dict(by_group)


def test_export_keeps_every_part(store: EventStore, loaded: tuple) -> None:
    appid, events = loaded
    out = io.StringIO()
    store.export_csv(appid, "view", T0, T0 + 31 * HOUR, SLOTS, out, not_before_ms=0)
    table = list(csv.reader(io.StringIO(out.getvalue())))
    assert table[0] == ["time", "user", "page", "trigger", "action", "price", "qty", "flag", "code",
                        "color", "price@string", "code@string"]  # fmt: skip
    apart = sorted(r[10] for r in table[1:] if r[10] != "")
    old = [values.get("price") for ev, values in events if ev.event == "view"]
    want = sorted(str(p[1]) for p in old if p is not None and p[0] == "string" and p[1] != "")
    assert apart == want


def test_user_lookup_shows_values_as_stored(store: EventStore, loaded: tuple) -> None:
    appid, events = loaded
    page = store.user_events(appid, "u3", SLOTS, limit=500, before=None, not_before_ms=0)
    got = {e["id"]: e["data"] for e in page.events}
    for ev, values in events:
        if ev.user == "u3":
            want = {k: v for k, (_, v) in values.items()}
            shown = {
                k: (bool(v) if values[k][0] == "bool" else v)
                for k, v in got[ev.uid].items()
                if k != "color"
            }
            assert shown == want


def _never_written_before(store: EventStore, slot: int) -> tuple[str, SlotMap]:
    """An app whose field ``tier`` was published as an int in ``i<slot>``, then retyped to a
    string in ``s<slot>`` before any event carried it: no event ever wrote ``i<slot>`` (so
    ClickHouse never made the column). One event carries the string."""
    appid = next(_appids)
    history = FieldHistory("tier", (FieldPart("int", slot), FieldPart("string", slot, T_A, 2)))
    slots = SlotMap({"tier": ("string", slot)}, {"tier": history})
    row = StoredEvent(
        appid, "t1", "view", "u1", T_A + HOUR, T_A + HOUR, False, "p/a", None, None,
        {}, {slot: "cheap"},
    )  # fmt: skip
    assert store.append([row]).inserted == 1
    return appid, slots


def test_user_lookup_of_a_retyped_field_whose_old_column_was_never_made(
    store: EventStore,
) -> None:
    """ClickHouse answered ``Unknown identifier: i20`` (its store made only the current
    slot's column before the lookup); every store shows the value as stored."""
    appid, slots = _never_written_before(store, 20)
    page = store.user_events(appid, "u1", slots, limit=10, before=None, not_before_ms=0)
    assert [(e["id"], e["data"]) for e in page.events] == [("t1", {"tier": "cheap"})]


def test_export_of_a_retyped_field_whose_old_column_was_never_made(store: EventStore) -> None:
    appid, slots = _never_written_before(store, 21)
    out = io.StringIO()
    assert store.export_csv(appid, "view", T0, T0 + 31 * HOUR, slots, out, not_before_ms=0) == 1
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [
        ["time", "user", "page", "trigger", "action", "tier"],
        ["2026-11-01T11:00:00.000Z", "u1", "p/a", "", "", "cheap"],
    ]
