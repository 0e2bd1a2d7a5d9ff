"""Group commit, shared by the event stores (no I/O of its own): concurrent ``append`` calls
are combined into one write.

A caller queues its rows; if no write is in progress it becomes the leader: it takes the
store's write lock, then everything queued by then (up to ``max_rows`` rows, at least one
call's) and hands it to the store's ``write`` as one :class:`Group`; otherwise it sleeps
until a leader has written its rows, or until it may lead. Each caller gets its own
:class:`AppendResult`. When a combined write fails, each call is written again on its own,
so one bad batch never fails another caller's; a failure that would hit every call alike
(``shared_failures``, e.g. the database being unreachable) fails them all at once instead.

:meth:`GroupCommit.submit` is the same without a waiting thread per call (the ingest path
on an event loop): the call's rows are queued and a :class:`concurrent.futures.Future` is
returned; a writer thread of the group commit (started on first use) leads the writes of
submitted calls and settles their futures. In a py-spy profile of a node during
``bench/clickhouse_ingest.py``, handing each batch to an executor thread that then blocked
here (and was woken by every commit's ``notify_all``) took ~15 % of the node's Python time,
three times the batches' JSON parsing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import AnalyticsUnavailable

__all__ = ["AppendResult", "Group", "GroupCommit", "StoreClosed"]


class StoreClosed(AnalyticsUnavailable, RuntimeError):
    """The event store was closed (the server is stopping): nothing of the call was stored.
    A 503 like any unreachable store: the client sends it again (to another node)."""

    def __init__(self) -> None:
        super().__init__(
            "the event store is closed (the server is stopping): nothing was stored, send it again"
        )


@dataclass(frozen=True, slots=True)
class AppendResult:
    inserted: int
    duplicates: int


class Keyed(Protocol):
    """A row with its dedup key: the app and the client-made event id."""

    @property
    def appid(self) -> str: ...

    @property
    def uid(self) -> str: ...


@dataclass(slots=True)
class _Pending:
    rows: Sequence[Keyed]
    result: AppendResult | None = None
    error: BaseException | None = None
    done: bool = False
    future: Future[AppendResult] | None = None  # submit(): settled once done

    def fail(self, error: BaseException) -> None:
        self.error, self.done = error, True

    def settle(self) -> None:
        if self.future is None or self.future.done():
            return
        try:
            if self.error is not None:
                self.future.set_exception(self.error)
            else:
                assert self.result is not None
                self.future.set_result(self.result)
        except InvalidStateError:  # cancelled by its waiter meanwhile (a request given up)
            pass


@dataclass(slots=True)
class Group:
    """The rows of a group of calls, each ``(appid, uid)`` once (the first occurrence), with
    the call each row came from. The store's ``write`` stores ``rows`` and calls
    :meth:`finish` with the keys it inserted (``None``: all of them)."""

    pendings: list[_Pending]
    rows: list[Keyed] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, pendings: list[_Pending]) -> Group:
        group = cls(pendings)
        seen: set[tuple[str, str]] = set()
        for index, pending in enumerate(pendings):
            for row in pending.rows:
                key = (row.appid, row.uid)
                if key not in seen:
                    seen.add(key)
                    group.rows.append(row)
                    group.owners.append(index)
        return group

    def finish(self, inserted_keys: Collection[tuple[str, str]] | None) -> None:
        inserted = [0] * len(self.pendings)
        for row, owner in zip(self.rows, self.owners, strict=True):
            if inserted_keys is None or (row.appid, row.uid) in inserted_keys:
                inserted[owner] += 1
        for index, pending in enumerate(self.pendings):
            pending.result = AppendResult(inserted[index], len(pending.rows) - inserted[index])
            pending.done = True


class GroupCommit:
    """One per store. ``write(group)`` runs under ``write_lock`` (the store's, which its
    other writes take too); ``closed()`` says whether the store was closed meanwhile."""

    def __init__(
        self,
        write: Callable[[Group], None],
        *,
        max_rows: int,
        write_lock: threading.Lock,
        closed: Callable[[], bool],
        shared_failures: tuple[type[Exception], ...] = (),
    ) -> None:
        self._write = write
        self._max_rows = max(1, max_rows)
        self._write_lock = write_lock
        self._closed = closed
        self._shared_failures = shared_failures
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # waiting append() calls
        self._wake_writer = threading.Condition(lock)  # the writer thread of submit()
        self._queue: deque[_Pending] = deque()
        self._leader_active = False
        self._writer: threading.Thread | None = None
        self._writer_idle = False

    def submit(self, rows: Sequence[Keyed]) -> Future[AppendResult]:
        """Queue ``rows`` for the writer thread without waiting: the future gets what
        :meth:`append` would return or raise."""
        future: Future[AppendResult] = Future()
        pending = _Pending(rows, future=future)
        with self._cond:
            if self._closed():
                raise StoreClosed()
            self._queue.append(pending)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._run_writer, name="miniport-group-commit", daemon=True
                )
                self._writer.start()
            elif self._writer_idle:
                self._wake_writer.notify()
        return future

    def _busy(self) -> bool:
        """Calls queued or a write running (under ``_cond``)."""
        return bool(self._queue or self._leader_active)

    def drain(self, timeout_s: float = 5.0) -> bool:
        """Wait until every call queued so far is written (or failed): a store's ``close``
        calls it first, so a stopping server stores what it had accepted into the queue.
        False when ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._busy():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def stop(self, timeout_s: float = 5.0) -> None:
        """Once the store is closed: wake the writer thread, which then ends, and wait for
        it. Left waiting out its idle poll, it would outlive the store and, at interpreter
        exit, keep the store and its connection alive (DuckDB's bindings then list them as
        leaked on stderr)."""
        with self._cond:
            writer = self._writer
            self._wake_writer.notify()
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout_s)

    def _run_writer(self) -> None:
        """Lead a write whenever calls are queued and no append() call leads one; ends
        once the store is closed and nothing is queued or being written."""
        with self._cond:
            try:
                while True:
                    while not self._queue or self._leader_active:
                        if self._closed() and not self._busy():
                            return
                        self._writer_idle = True
                        self._wake_writer.wait(0.5)
                        self._writer_idle = False
                    self._leader_active = True
                    self._cond.release()
                    try:
                        self._lead()
                    finally:
                        self._cond.acquire()
                        self._leader_active = False
                        self._cond.notify_all()  # append() calls may lead now
            finally:
                self._writer = None

    def append(self, rows: Sequence[Keyed]) -> AppendResult:
        """Store ``rows`` together with whatever other calls are queued; raises what the
        write of this call's rows raised."""
        pending = _Pending(rows)
        cond = self._cond
        with cond:
            if self._closed():
                raise StoreClosed()
            self._queue.append(pending)
            while not pending.done:
                if self._leader_active:
                    cond.wait()  # the leader writes our rows or hands over when done
                    continue
                self._leader_active = True
                cond.release()
                try:
                    self._lead()
                finally:
                    cond.acquire()
                    self._leader_active = False
                    cond.notify_all()
                    if self._queue and self._writer_idle:
                        self._wake_writer.notify()  # submitted calls queued meanwhile
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def _lead(self) -> None:
        with self._write_lock:
            with self._cond:  # what was queued while we waited for the lock joins in
                group = self._take()
            try:
                if self._closed():
                    for item in group:
                        item.fail(StoreClosed())
                else:
                    self._write_isolated(group)
            finally:
                for item in group:
                    item.settle()

    def _take(self) -> list[_Pending]:
        taken: list[_Pending] = []
        total = 0
        queue = self._queue
        while queue and (not taken or total + len(queue[0].rows) <= self._max_rows):
            item = queue.popleft()
            taken.append(item)
            total += len(item.rows)
        return taken

    def _write_isolated(self, pendings: list[_Pending]) -> None:
        if not pendings:
            return
        try:
            try:
                self._write(Group.of(pendings))
            except Exception as exc:
                if len(pendings) == 1 or isinstance(exc, self._shared_failures):
                    for pending in pendings:
                        pending.fail(exc)
                    return
                for pending in pendings:  # isolate: one bad batch must not fail the others
                    try:
                        self._write(Group.of([pending]))
                    except Exception as single:
                        pending.fail(single)
        except BaseException as fatal:  # e.g. KeyboardInterrupt: no caller may wait forever
            for pending in pendings:
                if not pending.done:
                    pending.fail(fatal)
            raise
