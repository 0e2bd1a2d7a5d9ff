"""A write that PostgreSQL chose as a deadlock's victim is run again (``Database.write``), on a
real server: the caller gets its result, not an internal error.

The other side of each deadlock is a plain connection of the test's (``Rival``) whose own
``deadlock_timeout`` is long, and the write asks for its second row only once the rival waits
for the first, so the write under test (50 ms, set on the database) is always the one that
finds the cycle and is rolled back: no timing luck decides who loses."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from miniport.errors import StateUnavailable
from miniport.storage import db as dbmod
from miniport.storage.db import Database, is_retryable

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(pg_url: str) -> Iterator[tuple[Database, str]]:
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE \"{name}\" SET deadlock_timeout = '50ms'")
        admin.execute("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)")
        admin.execute("CREATE TABLE marks (n int)")
        admin.execute("INSERT INTO t VALUES (1, 0), (2, 0)")
    db = Database(pg_url)
    try:
        yield db, pg_url.replace("postgresql+psycopg://", "postgresql://")
    finally:
        db.close()


class Rival:
    """The other transaction: it locks row 2, waits until the write holds row 1, then asks for
    row 1 (a cycle), and commits once it has it. ``waiting()`` returns once it waits for row 1:
    only then may the write ask for row 2, so that the write's own deadlock check (50 ms after
    it starts to wait) finds the cycle; a check made before the rival waits finds none, and
    PostgreSQL checks once per wait (under load the rival would then wait out its 30 s)."""

    def __init__(self, url: str) -> None:
        self.url, self.pid = url, 0
        self.has_row_2, self.holding = threading.Event(), threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url) as conn:
            conn.execute("SET deadlock_timeout = '30s'")  # never the one to find the cycle
            self.pid = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
            conn.execute("UPDATE t SET v = v + 1 WHERE id = 2")
            self.has_row_2.set()
            assert self.holding.wait(10)
            conn.execute("UPDATE t SET v = v + 1 WHERE id = 1")
            conn.commit()

    def waiting(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as watch:
            for _ in range(1000):
                row = watch.execute(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (self.pid,)
                ).fetchone()
                if row is not None and row[0] == "Lock":
                    return
                time.sleep(0.01)
        raise AssertionError("the rival never waited for row 1")


def both_rows(db: Database, calls: list[int], rival: Rival, *, mark: bool = False):
    """The write: row 1, then row 2 (the rival's order reversed); the first try meets the
    rival, a later one finds it gone. With ``mark`` it first commits a transaction of its own."""

    def write() -> None:
        calls.append(1)
        first = len(calls) == 1
        if mark:
            with db.writing() as conn:
                conn.execute(text("INSERT INTO marks VALUES (1)"))
        if first:
            assert rival.has_row_2.wait(10)
        with db.writing() as conn:
            conn.execute(text("UPDATE t SET v = v + 1 WHERE id = 1"))
            if first:
                rival.holding.set()
                rival.waiting()
            conn.execute(text("UPDATE t SET v = v + 1 WHERE id = 2"))

    return write


def rows(url: str, sql: str) -> list[tuple[int, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


async def against_a_rival(db: Database, url: str, *, mark: bool = False) -> list[int]:
    """The write (``both_rows``) through ``db.write`` while a Rival runs; its calls."""
    the_rival, calls = Rival(url), []
    with ThreadPoolExecutor(1) as pool:
        other: Future[None] = pool.submit(the_rival.run)
        try:
            await db.write(both_rows(db, calls, the_rival, mark=mark))
        finally:
            other.result(10)
    return calls


async def test_a_deadlocks_victim_is_run_again_and_its_work_done_once(
    pg: tuple[Database, str],
) -> None:
    db, url = pg
    calls = await against_a_rival(db, url)
    assert len(calls) == 2  # lost once, then done
    assert db.retried_count == 1
    # each side's increments once: the victim's first try was rolled back whole
    assert rows(url, "SELECT id, v FROM t ORDER BY id") == [(1, 2), (2, 2)]


async def test_a_write_that_committed_part_of_its_work_is_not_run_again(
    pg: tuple[Database, str],
) -> None:
    db, url = pg
    with pytest.raises(OperationalError) as lost:
        await against_a_rival(db, url, mark=True)
    assert isinstance(lost.value.orig, psycopg.errors.DeadlockDetected)
    assert db.retried_count == 0
    assert rows(url, "SELECT count(*) FROM marks") == [(1,)]  # not twice
    assert rows(url, "SELECT id, v FROM t ORDER BY id") == [(1, 1), (2, 1)]  # the rival's only


async def test_a_write_that_keeps_losing_is_a_503_to_retry(
    pg: tuple[Database, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    db, _ = pg
    monkeypatch.setattr(dbmod, "RETRY_PAUSE_S", 0.001)
    calls = []

    def always_loses() -> None:
        calls.append(1)
        raise OperationalError("UPDATE t", {}, psycopg.errors.DeadlockDetected("deadlock detected"))

    with pytest.raises(StateUnavailable) as busy:
        await db.write(always_loses)
    assert busy.value.http_status == 503 and "busy" in busy.value.message
    assert len(calls) == dbmod.WRITE_ATTEMPTS and db.retried_count == dbmod.WRITE_ATTEMPTS - 1
    assert "lost to another transaction 4 time(s): deadlock detected" in caplog.text


async def test_other_errors_are_not_run_again(pg: tuple[Database, str]) -> None:
    db, _ = pg
    calls = []

    def bad() -> None:
        calls.append(1)
        with db.writing() as conn:
            conn.execute(text("UPDATE nowhere SET v = 1"))

    with pytest.raises(Exception, match="nowhere"):
        await db.write(bad)
    assert len(calls) == 1 and db.retried_count == 0


@pytest.mark.parametrize(
    "orig, is_sqlite, expected",
    [
        (psycopg.errors.DeadlockDetected("deadlock detected"), False, True),
        (psycopg.errors.SerializationFailure("could not serialize access"), False, True),
        (psycopg.errors.UniqueViolation("duplicate key"), False, False),
        (psycopg.errors.QueryCanceled("canceling statement due to timeout"), False, False),
        (psycopg.errors.DeadlockDetected("deadlock detected"), True, False),  # not SQLite's
    ],
)
def test_which_errors_are_a_lost_race(orig: Exception, is_sqlite: bool, expected: bool) -> None:
    wrapped = OperationalError("UPDATE t", {}, orig)
    assert is_retryable(wrapped, is_sqlite) is expected
    assert is_retryable(orig, is_sqlite) is expected  # raw, from a hot path's own cursor


def test_sqlite_writes_are_never_run_again(tmp_path: object) -> None:
    db = Database(f"sqlite:///{tmp_path}/state.db")
    calls = []

    def loses() -> None:
        calls.append(1)
        raise OperationalError("UPDATE t", {}, psycopg.errors.DeadlockDetected("deadlock"))

    try:
        with pytest.raises(OperationalError):
            asyncio.run(db.write(loses))
    finally:
        db.close()
    assert len(calls) == 1
