"""DuckDB event store: dedup, durability across reopen, group commit, test visibility,
retention, injection safety, CSV export."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from miniport.analytics.event_store import (
    AppendResult,
    DuckDBEventStore,
    EventStore,
    StoredEvent,
)
from miniport.analytics.group_commit import Group, _Pending
from miniport.analytics.reports import EventQuery, FieldSlots, FunnelQuery, ReportQueryError

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
DAY = 86_400_000
SLOTS: FieldSlots = {"price": ("int", 2), "color": ("string", 0), "note": ("string", 5)}


def ev(
    uid: str,
    *,
    appid: str = "shop",
    event: str = "view",
    user: str = "u1",
    ts: int = T0,
    price: int | None = None,
    color: str | None = None,
    note: str | None = None,
    test_id: str | None = None,
    page: str | None = "pages/index",
) -> StoredEvent:
    strs: dict[int, str] = {}
    if color is not None:
        strs[0] = color
    if note is not None:
        strs[5] = note
    return StoredEvent(
        appid=appid,
        uid=uid,
        event=event,
        user=user,
        ts_ms=ts,
        received_ms=ts + 5,
        time_estimated=False,
        page=page,
        trigger="click",
        action=None,
        ints={} if price is None else {2: price},
        strs=strs,
        test_id=test_id,
    )


def query(event: str = "view", **kw: object) -> EventQuery:
    base: dict[str, object] = {
        "event": event,
        "from_ms": T0 - DAY,
        "to_ms": T0 + DAY,
        "not_before_ms": 0,
        "metrics": ["count"],
        "granularity": "all",
    }
    base.update(kw)
    return EventQuery.parse(**base)  # type: ignore[arg-type]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "analytics.duckdb"


@pytest.fixture
def store(path: Path) -> Iterator[DuckDBEventStore]:
    s = DuckDBEventStore(path)
    try:
        yield s
    finally:
        s.close()


def test_is_an_event_store(store: DuckDBEventStore) -> None:
    assert isinstance(store, EventStore)


def test_dedup_same_call_later_call_and_after_reopen(path: Path) -> None:
    s = DuckDBEventStore(path)
    assert s.append([ev("a"), ev("b"), ev("a"), ev("a", appid="other")]) == AppendResult(3, 1)
    assert s.append([ev("b"), ev("c"), ev("c")]) == AppendResult(1, 2)
    assert s.append([]) == AppendResult(0, 0)
    s.close()
    s = DuckDBEventStore(path)
    try:
        # the first copy wins: the duplicate's different content is not stored
        assert s.append([ev("a", user="someone else"), ev("d")]) == AppendResult(1, 1)
        assert s.count("shop") == 4 and s.count("other") == 1
        rows = s.event_analysis("shop", query(metrics=["count", "users"]), SLOTS)
        assert rows == [{"bucket": "all", "count": 4, "users": 1}]
    finally:
        s.close()


def test_appended_rows_are_committed_when_append_returns(path: Path) -> None:
    s = DuckDBEventStore(path)
    s.append([ev("a", price=3, color="red")])
    # another process-level reader would see it; here: a fresh connection after close
    s.close()
    con = duckdb.connect(str(path), read_only=True)
    try:
        row = con.execute("SELECT uid, i2, s0, visible FROM events").fetchall()
    finally:
        con.close()
    assert row == [("a", 3, "red", True)]


def test_concurrent_appends_are_combined_and_exact(store: DuckDBEventStore) -> None:
    results: list[AppendResult] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        for j in range(20):
            # overlapping ids between threads: each (appid, uid) must be stored once
            batch = [ev(f"e{(k * 7 + j * 13 + i) % 500}", price=i) for i in range(25)]
            result = store.append(batch)
            assert result.inserted + result.duplicates == 25
            with lock:
                results.append(result)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = {
        f"e{(k * 7 + j * 13 + i) % 500}" for k in range(6) for j in range(20) for i in range(25)
    }
    assert sum(r.inserted for r in results) == len(expected) == store.count("shop")


def test_appends_waiting_for_the_writer_go_out_in_one_commit(store: DuckDBEventStore) -> None:
    groups: list[int] = []
    commits = store._group_commit
    real_write = commits._write

    def counting_write(group: Group) -> None:
        groups.append(len(group.pendings))
        real_write(group)

    commits._write = counting_write
    results: list[AppendResult] = []
    with store._write_lock:  # e.g. a retention delete is running
        threads = [
            threading.Thread(target=lambda k=k: results.append(store.append([ev(f"x{k}")])))
            for k in range(4)
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(commits._queue) < 4 and time.monotonic() < deadline:
            time.sleep(0.001)
    for t in threads:
        t.join()
    assert groups == [4]
    assert sorted(results, key=repr) == [AppendResult(1, 0)] * 4
    assert store.count("shop") == 4


def test_a_failing_batch_does_not_fail_the_others(store: DuckDBEventStore) -> None:
    real_insert = store._insert

    def flaky(rows: list[StoredEvent]) -> set[tuple[str, str]] | None:
        if any(r.uid == "bad" for r in rows):
            raise OSError("disk trouble")
        return real_insert(rows)

    store._insert = flaky  # type: ignore[method-assign]
    good, bad, dup = _Pending([ev("a")]), _Pending([ev("bad")]), _Pending([ev("a"), ev("b")])
    store._group_commit._write_isolated([good, bad, dup])
    assert good.result == AppendResult(1, 0)
    assert isinstance(bad.error, OSError) and bad.result is None
    assert dup.result == AppendResult(1, 1)
    assert store.count("shop") == 2


def test_slot_columns_appear_on_first_use_and_survive_reopen(path: Path) -> None:
    s = DuckDBEventStore(path)
    assert "i2" not in s.columns and "s5" not in s.columns
    q = query(metrics=["sum:price", "distinct:note", "max:price"], group_by=["note"])
    s.append([ev("a")])
    assert s.event_analysis("shop", q, SLOTS) == [
        {"bucket": "all", "note": None, "sum:price": 0, "distinct:note": 0, "max:price": None}
    ]
    s.append([ev("b", price=5, note="hi")])
    assert {"i2", "s5"} <= s.columns
    s.close()
    s = DuckDBEventStore(path)
    try:
        assert {"i2", "s5"} <= s.columns
        assert s.event_analysis("shop", q, SLOTS) == [
            {"bucket": "all", "note": None, "sum:price": 0, "distinct:note": 0, "max:price": None},
            {"bucket": "all", "note": "hi", "sum:price": 5, "distinct:note": 1, "max:price": 5},
        ]
    finally:
        s.close()


def test_test_events_hidden_until_synced(store: DuckDBEventStore) -> None:
    store.append([ev("a"), ev("t1", test_id="T1"), ev("t2", test_id="T1"), ev("t3", test_id="T2")])
    assert store.count("shop") == 1
    assert store.count("shop", include_tests=True) == 4
    assert store.event_analysis("shop", query(), SLOTS) == [{"bucket": "all", "count": 1}]
    assert store.sync_test("shop", "T1") == 2
    assert store.sync_test("shop", "T1") == 0
    assert store.sync_test("other", "T2") == 0
    assert store.count("shop") == 3
    assert store.event_analysis("shop", query(), SLOTS) == [{"bucket": "all", "count": 3}]
    out = io.StringIO()
    assert store.export_csv("shop", "view", T0 - DAY, T0 + DAY, SLOTS, out, not_before_ms=0) == 3


def test_retention_delete_and_not_before(store: DuckDBEventStore) -> None:
    store.append(
        [
            ev("old", ts=T0 - 31 * DAY, user="u1", event="buy"),
            ev("edge", ts=T0 - 30 * DAY, user="u2", event="buy"),
            ev("new", ts=T0, user="u3", event="buy"),
        ]
    )
    cutoff = T0 - 30 * DAY
    wide = {"from_ms": T0 - 40 * DAY, "to_ms": T0 + DAY}
    # before the retention job ran: not_before hides the old event from every report
    rows = store.event_analysis("shop", query("buy", not_before_ms=cutoff, **wide), SLOTS)
    assert rows == [{"bucket": "all", "count": 2}]
    funnel = FunnelQuery.parse(steps=["buy", "buy"], not_before_ms=cutoff, **wide)  # type: ignore[arg-type]
    assert store.funnel("shop", funnel, SLOTS)[0]["users"] == 2
    out = io.StringIO()
    assert (
        store.export_csv(
            "shop", "buy", wide["from_ms"], wide["to_ms"], SLOTS, out, not_before_ms=cutoff
        )
        == 2
    )
    assert store.count("shop", "buy") == 3
    assert store.delete_older_than(cutoff) == 1
    assert store.delete_older_than(cutoff) == 0
    assert store.count("shop", "buy") == 2
    rows = store.event_analysis("shop", query("buy", not_before_ms=0, **wide), SLOTS)
    assert rows == [{"bucket": "all", "count": 2}]
    # a deleted event's id may come back (a late retry); it is older than the window anyway
    assert store.append([ev("old", ts=T0 - 31 * DAY, event="buy")]) == AppendResult(1, 0)


def test_injection_attempts_are_harmless_or_refused(store: DuckDBEventStore) -> None:
    store.append([ev("a", color="red"), ev("b", color="x' OR '1'='1"), ev("c", appid="sh'op")])
    evil = "x' OR '1'='1"
    rows = store.event_analysis("shop", query(filters=[f"color={evil}"]), SLOTS)
    assert rows == [{"bucket": "all", "count": 1}]  # matched literally, nothing more
    rows = store.event_analysis("shop", query(filters=["color=red'; DROP TABLE events; --"]), SLOTS)
    assert rows == []
    assert store.count("sh'op") == 1
    assert store.event_analysis("sh'op", query(), SLOTS) == [{"bucket": "all", "count": 1}]
    for group in ["color; DROP TABLE events", "color FROM events --", "s0", "1"]:
        with pytest.raises(ReportQueryError):
            store.event_analysis("shop", query(group_by=[group]), SLOTS)
    with pytest.raises(ReportQueryError):
        store.event_analysis("shop", query(filters=["price>=1 OR 1=1"]), SLOTS)
    with pytest.raises(ReportQueryError):
        store.export_csv(
            "shop", "view' OR '1'='1", 0, T0 * 2, SLOTS, io.StringIO(), not_before_ms=0
        )
    evil_slots: FieldSlots = {"color": ("string", 99)}
    with pytest.raises(ReportQueryError):
        store.event_analysis("shop", query(group_by=["color"]), evil_slots)
    assert store.count("shop") == 2  # the table is intact


def test_export_csv_does_not_hand_a_spreadsheet_formulas(store: DuckDBEventStore) -> None:
    """Users, pages and string fields are what clients report: text starting with = + - @ (or
    a tab or CR) is written with a leading quote; numbers and other text as they are."""
    store.append(
        [
            ev("a", user="=1+1", page="+cmd|' /C calc'!A0", color='=HYPERLINK("http://x")',
               note="@SUM(1+1)", price=-7),
            ev("b", ts=T0 + 1, user="u-1", page="pages/a", color="-5", note="\tx"),
        ]
    )
    out = io.StringIO()
    store.export_csv("shop", "view", T0, T0 + DAY, SLOTS, out, not_before_ms=0)
    rows = list(csv.reader(io.StringIO(out.getvalue())))[1:]
    assert [r[1:3] + r[5:] for r in rows] == [
        ["'=1+1", "'+cmd|' /C calc'!A0", "-7", "'=HYPERLINK(\"http://x\")", "'@SUM(1+1)"],
        ["u-1", "pages/a", "", "'-5", "'\tx"],
    ]


def test_export_csv_content(store: DuckDBEventStore) -> None:
    store.append(
        [
            ev("b", ts=T0 + 1500, user="u2", price=-7, color='say "hi", bye', note="line\nbreak"),
            ev("a", ts=T0 + 1, user="u1", price=12, page=None),
            ev("c", ts=T0 + 2, event="buy"),
            ev("d", ts=T0 + 3, test_id="T"),
            ev("e", ts=T0 + DAY, user="late"),
        ]
    )
    out = io.StringIO()
    n = store.export_csv("shop", "view", T0, T0 + DAY, SLOTS, out, not_before_ms=0)
    assert n == 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows == [
        ["time", "user", "page", "trigger", "action", "price", "color", "note"],
        ["2026-11-01T00:00:00.001Z", "u1", "", "click", "", "12", "", ""],
        [
            "2026-11-01T00:00:01.500Z",
            "u2",
            "pages/index",
            "click",
            "",
            "-7",
            'say "hi", bye',
            "line\nbreak",
        ],
    ]
    # a field never used by any event exports as empty cells
    more: FieldSlots = {**SLOTS, "size": ("int", 30)}
    out = io.StringIO()
    store.export_csv("shop", "view", T0, T0 + 2, more, out, not_before_ms=0)
    assert out.getvalue().splitlines() == [
        "time,user,page,trigger,action,price,color,note,size",
        "2026-11-01T00:00:00.001Z,u1,,click,,12,,,",
    ]


def test_invalid_rows_are_refused_before_anything_is_stored(store: DuckDBEventStore) -> None:
    with pytest.raises(ValueError, match="32-bit"):
        ev("a", price=2**31)
    with pytest.raises(ValueError, match="slot"):
        StoredEvent("shop", "x", "view", "u", T0, T0, False, None, None, None, {32: 1}, {})
    with pytest.raises(ValueError, match="non-empty"):
        ev("")
    with pytest.raises(TypeError):
        store.append([("shop", "x")])  # type: ignore[list-item]
    assert store.count("shop", include_tests=True) == 0


def test_closed_store_refuses_calls(path: Path) -> None:
    s = DuckDBEventStore(path)
    s.close()
    s.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        s.append([ev("a")])
    with pytest.raises(RuntimeError, match="closed"):
        s.count("shop")
    with pytest.raises(RuntimeError, match="closed"):
        s.delete_older_than(0)


def test_a_closed_store_leaves_nothing_alive_at_exit(path: Path) -> None:
    """After rows went through the writer thread, close and exit: the writer thread used to
    outlive the store by up to its idle poll, keeping the store and its connection alive at
    interpreter exit, and DuckDB's bindings printed "nanobind: leaked ..." lists on stderr at
    every stop of a server that had taken events."""
    script = f"""
import threading
from tests.analytics.test_event_store import ev
from miniport.analytics.event_store import DuckDBEventStore
s = DuckDBEventStore({str(path)!r})
assert s.submit([ev("a"), ev("b")]).result(timeout=30).inserted == 2
s.close()
assert [t.name for t in threading.enumerate()] == ["MainThread"], threading.enumerate()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    assert "leaked" not in done.stderr, done.stderr


def test_reads_run_while_writes_go_on(store: DuckDBEventStore) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        i = 0
        try:
            while not stop.is_set() and i < 200:
                store.append([ev(f"w{i}-{j}", price=j, color="red") for j in range(50)])
                i += 1
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    try:
        last = 0
        for _ in range(20):
            rows = store.event_analysis("shop", query(metrics=["count", "sum:price"]), SLOTS)
            count = int(rows[0]["count"]) if rows else 0  # type: ignore[call-overload]
            assert count >= last and count % 50 == 0  # whole appends only
            last = count
    finally:
        stop.set()
        t.join()
    assert not errors
