"""Group commit on its own (no database): calls combined, results per call, isolation of a bad
batch, a shared failure failing every call at once, and a closed store."""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import pytest

from miniport.analytics.group_commit import AppendResult, Group, GroupCommit, StoreClosed


@dataclass(frozen=True)
class Row:
    appid: str
    uid: str


class Unreachable(Exception):
    pass


class Writer:
    def __init__(self) -> None:
        self.stored: set[tuple[str, str]] = set()
        self.groups: list[int] = []
        self.lock = threading.Lock()
        self.closed = False

    def write(self, group: Group) -> None:
        self.groups.append(len(group.pendings))
        if any(r.uid == "bad" for r in group.rows):
            raise ValueError("bad row")
        if any(r.uid == "down" for r in group.rows):
            raise Unreachable("database down")
        new = {(r.appid, r.uid) for r in group.rows} - self.stored
        self.stored |= new
        group.finish(new)

    def commits(self) -> GroupCommit:
        return GroupCommit(
            self.write, max_rows=100, write_lock=self.lock, closed=lambda: self.closed,
            shared_failures=(Unreachable,),
        )  # fmt: skip


def rows(*uids: str) -> list[Row]:
    return [Row("app", u) for u in uids]


def test_each_call_gets_its_own_result_and_ids_repeat_as_duplicates() -> None:
    w = Writer()
    gc = w.commits()
    assert gc.append(rows("a", "b", "a")) == AppendResult(2, 1)
    assert gc.append(rows("b", "c")) == AppendResult(1, 1)
    assert w.stored == {("app", "a"), ("app", "b"), ("app", "c")}


def _queued_while_writing(gc: GroupCommit, w: Writer, batches: list[list[Row]]) -> list[object]:
    """Run the batches from threads while the write lock is held; wait until all queued."""
    results: list[object] = [None] * len(batches)

    def call(i: int) -> None:
        try:
            results[i] = gc.append(batches[i])
        except Exception as exc:
            results[i] = exc

    with w.lock:  # e.g. another write of the store is running
        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(batches))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(gc._queue) < len(batches) - 1 and time.monotonic() < deadline:
            time.sleep(0.001)  # one thread is the leader, waiting for the lock
        time.sleep(0.01)
    for t in threads:
        t.join()
    return results


def test_calls_queued_during_a_write_go_out_together() -> None:
    w = Writer()
    results = _queued_while_writing(w.commits(), w, [rows(f"x{k}") for k in range(4)])
    assert w.groups == [4]
    assert results == [AppendResult(1, 0)] * 4


def test_a_bad_batch_fails_alone() -> None:
    w = Writer()
    results = _queued_while_writing(w.commits(), w, [rows("a"), rows("bad"), rows("a", "b")])
    assert sorted(map(repr, results)) == sorted(
        map(repr, [AppendResult(1, 0), ValueError("bad row"), AppendResult(1, 1)])
    ) or sorted(map(repr, results)) == sorted(
        map(repr, [AppendResult(0, 1), ValueError("bad row"), AppendResult(2, 0)])
    )
    assert w.stored == {("app", "a"), ("app", "b")}


def test_a_shared_failure_fails_every_call_at_once() -> None:
    w = Writer()
    results = _queued_while_writing(w.commits(), w, [rows("a"), rows("down"), rows("b")])
    assert all(isinstance(r, Unreachable) for r in results)
    assert w.groups == [3]  # not retried call by call
    assert w.stored == set()


def test_a_closed_store_takes_nothing() -> None:
    w = Writer()
    gc = w.commits()
    w.closed = True
    with pytest.raises(RuntimeError, match="closed"):
        gc.append(rows("a"))
    assert w.groups == []


def test_groups_stop_at_max_rows() -> None:
    w = Writer()
    batches = [rows(*(f"r{k}-{i}" for i in range(40))) for k in range(4)]
    results = _queued_while_writing(w.commits(), w, batches)
    assert results == [AppendResult(40, 0)] * 4
    assert sum(w.groups) == 4 and max(w.groups) <= 2  # 100 rows at most: two calls of 40


def test_submitted_calls_are_written_together_by_the_writer_thread() -> None:
    """submit() returns at once; calls submitted while another write runs go out in one
    group, each future gets its own result, a bad batch fails alone, and append() calls
    still work beside them."""
    w = Writer()
    gc = w.commits()
    with w.lock:  # another write of the store is running
        futures = [gc.submit(b) for b in (rows("a"), rows("bad"), rows("a", "b"), rows("c"))]
        assert not any(f.done() for f in futures)
        deadline = time.monotonic() + 10
        while not gc._leader_active and time.monotonic() < deadline:
            time.sleep(0.001)  # the writer thread leads, waiting for the lock
    results: list[object] = []
    for f in futures:
        try:
            results.append(f.result(timeout=10))
        except ValueError as exc:
            results.append(exc)
    assert w.groups[0] == 4  # together first, then each alone (the bad one among them)
    assert results[0] == AppendResult(1, 0)
    assert repr(results[1]) == repr(ValueError("bad row"))
    assert results[2:] == [AppendResult(1, 1), AppendResult(1, 0)]
    assert gc.append(rows("c", "d")) == AppendResult(1, 1)
    assert gc.submit(rows("d", "e")).result(timeout=10) == AppendResult(1, 1)
    assert w.stored == {("app", u) for u in "abcde"}


def test_the_writer_thread_ends_once_the_store_is_closed() -> None:
    w = Writer()
    gc = w.commits()
    down = gc.submit(rows("down"))
    with pytest.raises(Unreachable):
        down.result(timeout=10)
    writer = gc._writer
    assert writer is not None
    w.closed = True
    writer.join(timeout=5)
    assert not writer.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        gc.submit(rows("a"))


def test_stop_wakes_the_idle_writer_and_waits_for_it() -> None:
    """A closed store's writer must not outlive it (waiting out its idle poll, it held the
    store, and at interpreter exit DuckDB's bindings listed them as leaked)."""
    w = Writer()
    gc = w.commits()
    assert gc.submit(rows("a")).result(timeout=10) == AppendResult(1, 0)
    writer = gc._writer
    assert writer is not None and writer.is_alive()
    w.closed = True
    gc.stop()
    assert not writer.is_alive()
    gc.stop()  # again, or with no writer ever started: nothing to do
    w.commits().stop()


@pytest.mark.parametrize("write_fails", [False, True])
def test_a_call_submitted_while_the_store_closes_under_a_write_is_settled(
    write_fails: bool,
) -> None:
    """A call submitted while an append() leader writes and the store closes: the writer
    thread must not end while that call is queued, or the ingest awaiting the future waits
    forever. (Found in review; the writer used to end as soon as the store was closed and the
    queue looked empty.)"""
    closed = [False]
    in_write, go = threading.Event(), threading.Event()
    calls = [0]

    def write(group: Group) -> None:
        calls[0] += 1
        if calls[0] == 1:
            in_write.set()
            go.wait(5)
            time.sleep(0.8)  # a round trip; the writer thread polls every 0.5 s
            if write_fails:
                raise ConnectionError("transport closed under the write")
        group.finish(None)

    gc = GroupCommit(write, max_rows=100, write_lock=threading.Lock(),
                     closed=lambda: closed[0])  # fmt: skip

    def lead() -> None:
        with contextlib.suppress(ConnectionError):  # the leader's own call may fail
            gc.append(rows("1"))

    leader = threading.Thread(target=lead)
    leader.start()
    assert in_write.wait(5)
    future = gc.submit(rows("2"))  # acknowledged once this future is settled
    closed[0] = True  # the store closes while the leader writes
    go.set()
    leader.join(5)
    try:
        error = future.exception(timeout=5)
    except FutureTimeout:
        pytest.fail("the submitted call's future was never settled")
    assert isinstance(error, (StoreClosed, ConnectionError))


def test_drain_waits_for_what_was_queued_then_the_store_may_close() -> None:
    """A store's close drains first: calls accepted into the queue are written, not failed."""
    w = Writer()
    gc = w.commits()
    with w.lock:  # a write of the store is running: the submitted calls wait in the queue
        futures = [gc.submit(rows(f"q{i}")) for i in range(5)]
        assert not gc.drain(timeout_s=0.2)  # still queued: drain says it did not finish
    assert gc.drain(timeout_s=10)
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [AppendResult(1, 0)] * 5
    w.closed = True
    with pytest.raises(StoreClosed):
        gc.submit(rows("late"))


def test_a_future_given_up_by_its_waiter_does_not_break_the_writer() -> None:
    """An ingest cancelled while its batch is written (a request timed out at shutdown): the
    write settles the other futures, and the writer goes on with the next calls."""
    w = Writer()
    gc = w.commits()
    with w.lock:
        given_up = gc.submit(rows("x"))
        kept = gc.submit(rows("y"))
        assert given_up.cancel()
    assert kept.result(timeout=10) == AppendResult(1, 0)
    assert gc.submit(rows("z")).result(timeout=10) == AppendResult(1, 0)


def test_settling_a_future_cancelled_after_the_check_raises_nothing() -> None:
    """The waiter may cancel between settle()'s done() check and its set_result (the futures
    are never marked running): the InvalidStateError would otherwise end the writer thread
    with the rest of its group unsettled."""
    from concurrent.futures import Future

    from miniport.analytics.group_commit import _Pending

    class LateCancel(Future[AppendResult]):
        def done(self) -> bool:  # the check sees it running, then the cancel lands
            self.cancel()
            return False

    pending = _Pending(rows("a"), future=LateCancel())
    pending.result = AppendResult(1, 0)
    pending.settle()  # raised InvalidStateError before
    assert pending.future is not None and pending.future.cancelled()
