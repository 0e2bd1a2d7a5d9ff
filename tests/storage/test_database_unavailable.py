"""The state database away is a 503 to retry, not an internal error: which errors mean "not
now" (``is_unavailable``), and ``Database`` raising them as ``StateUnavailable`` on a real
SQLite file held by another connection."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from miniport.errors import StateUnavailable
from miniport.storage.db import Database, is_unavailable


def wrapped(orig: Exception, kind: type[Exception] = OperationalError) -> Exception:
    return kind("SELECT 1", {}, orig)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "exc",
    [
        wrapped(psycopg.OperationalError("connection refused")),
        wrapped(psycopg.errors.AdminShutdown("terminating connection")),
        wrapped(psycopg.errors.CannotConnectNow("the database system is starting up")),
        wrapped(psycopg.errors.TooManyConnections("too many clients already")),
        wrapped(psycopg.errors.ConnectionFailure("connection failure")),  # class 08
        psycopg.OperationalError("server closed the connection unexpectedly"),  # a raw read
        psycopg.InterfaceError("the connection is closed"),
        PoolTimeout("QueuePool limit of size 10 overflow 10 reached"),
    ],
)
def test_postgresql_errors_that_mean_not_now(exc: Exception) -> None:
    assert is_unavailable(exc, is_sqlite=False)


@pytest.mark.parametrize(
    "exc, is_sqlite",
    [
        (wrapped(psycopg.errors.UndefinedTable("no such relation"), ProgrammingError), False),
        (wrapped(psycopg.errors.UniqueViolation("duplicate key"), IntegrityError), False),
        # the statement's own trouble: its caller's path (a batch written row by row, a retry)
        (wrapped(psycopg.errors.DeadlockDetected("deadlock detected")), False),
        (wrapped(psycopg.errors.QueryCanceled("canceling statement due to timeout")), False),
        (wrapped(psycopg.errors.ProgramLimitExceeded("index row size exceeds")), False),
        (psycopg.InterfaceError("the cursor is closed"), False),  # a bug
        (wrapped(sqlite3.OperationalError("no such table: apps")), True),  # a bug, not an outage
        (ValueError("database is locked"), True),
        (KeyError("x"), False),
    ],
)
def test_errors_that_are_the_statements_pass_unchanged(exc: Exception, is_sqlite: bool) -> None:
    assert not is_unavailable(exc, is_sqlite=is_sqlite)


@pytest.mark.parametrize(
    "message",
    ["database is locked", "disk I/O error", "unable to open", "database or disk is full"],
)
def test_sqlite_errors_that_mean_not_now(message: str) -> None:
    assert is_unavailable(wrapped(sqlite3.OperationalError(message)), is_sqlite=True)


async def test_a_sqlite_file_locked_by_another_process_is_state_unavailable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.db"
    db = Database(f"sqlite:///{path}")
    # after the engine's own connect hook (30 s): a test need not wait that long
    event.listen(db.engine, "connect", lambda conn, _: conn.execute("PRAGMA busy_timeout = 50"))
    try:
        with db.writing() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the file

        def write() -> None:
            with db.writing() as conn:
                conn.execute(text("INSERT INTO t VALUES (1)"))

        def bad_statement() -> None:
            with db.reading() as conn:
                conn.execute(text("SELECT * FROM nowhere"))

        with pytest.raises(StateUnavailable, match="try again") as caught:
            await db.write(write)
        assert caught.value.http_status == 503 and caught.value.retry_after_s == 5
        with pytest.raises(StateUnavailable):
            await db.write(write)
        # why, for the operator: once for both (at most once per LOG_EVERY_S)
        said = [r.getMessage() for r in caplog.records if r.name == "miniport.db"]
        assert said == [f"the state database sqlite:///{path} cannot be used: database is locked"]
        other.execute("ROLLBACK")
        other.close()
        await db.write(write)  # the file is free: the same write goes through
        with pytest.raises(OperationalError, match="no such table"):
            await db.read(bad_statement)
    finally:
        db.close()


async def test_a_postgresql_host_that_never_answers_fails_in_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that takes the connection and never speaks (a host mid-failover): without
    a connect timeout the request's thread waited for ever. Here the timeout is 2 s (10 s by
    default; ``?connect_timeout=`` in the URL sets it)."""
    import socket

    from miniport.storage import db as db_module

    monkeypatch.setitem(db_module.PG_TIMEOUTS, "connect_timeout", 2)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        db = Database(f"postgresql://miniport@127.0.0.1:{port}/miniport")
        try:
            with pytest.raises(StateUnavailable):  # not wait_for's TimeoutError
                await asyncio.wait_for(db.read(lambda: db.fetch_one("SELECT 1", ())), 30)
        finally:
            db.close()


def test_a_driver_error_without_a_message_is_still_a_503(tmp_path: Path) -> None:
    """The reason is the message's first line; an empty one raised IndexError (a 500)."""
    db = Database(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        error = db.unavailable(wrapped(sqlite3.OperationalError("")), say_where=True)
        assert error.message.endswith("cannot be reached: ?"), error.message
    finally:
        db.close()
