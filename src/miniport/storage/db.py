"""Database access: one SQLAlchemy engine, and how work reaches it.

SQLite (the embedded default) gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` for writes, and
within a process every write goes through ONE writer thread (the datasette model), so writers
never fight over the lock; reads use a small pool of threads. PostgreSQL uses the same code with
a thread pool for both. The sync store methods stay plain SQLAlchemy Core; ``await db.write(fn)``
and ``await db.read(fn)`` run them off the event loop.

A unique-key violation becomes ``errors.Conflict`` here, at the storage boundary
(:func:`conflict_on_duplicate`): a create lets the database decide who was first, instead of
reading before inserting, so two concurrent creates give one row and one clear 409. The
database away becomes ``errors.StateUnavailable`` (503, Retry-After) here too
(``Database.unavailable``), instead of an internal error. A write that PostgreSQL chose as a
deadlock's victim (or a serialization failure) is run again, a few times, when it had committed
nothing yet (``Database.write``): the caller never sees the other transaction's lock order."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import NullPool

from ..errors import Conflict, InvalidInput, StateUnavailable

log = logging.getLogger("miniport.db")
LOG_EVERY_S = 10.0  # the state database away: its reason logged at most this often
WRITE_ATTEMPTS = 4  # a write chosen as a deadlock's victim: run this many times in all ...
RETRY_PAUSE_S = 0.02  # ... after a random pause of up to this times the attempts so far
P = ParamSpec("P")
T = TypeVar("T")


# SQLite's extended result names (Python 3.11+) and PostgreSQL's SQLSTATE for a duplicate key
_SQLITE_UNIQUE = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})
_PG_UNIQUE = "23505"


def is_unique_violation(exc: IntegrityError) -> bool:
    orig = exc.orig
    return (
        getattr(orig, "sqlite_errorname", None) in _SQLITE_UNIQUE
        or getattr(orig, "sqlstate", None) == _PG_UNIQUE
    )


@contextlib.contextmanager
def conflict_on_duplicate(message: str) -> Iterator[None]:
    """Around a write transaction: a unique-key violation inside it (the transaction is then
    rolled back) is raised as ``Conflict(message)``; other integrity errors pass unchanged."""
    try:
        yield
    except IntegrityError as exc:
        if is_unique_violation(exc):
            raise Conflict(message) from exc
        raise


# SQLite's messages for a database it could not use for now (locked past the busy timeout by
# another process, a file it could not open or read, a full disk); its other errors are the
# caller's
_SQLITE_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o", "disk is full")
# PostgreSQL's SQLSTATEs for the same: class 08 (the connection failed or ended), the server
# shutting down or starting (57P01..57P03), too many connections (53300). A deadlock, a
# statement timeout or a statement too large are the statement's: its caller's usual path.
_PG_UNAVAILABLE = frozenset({"57P01", "57P02", "57P03", "53300"})
# PostgreSQL's SQLSTATEs for a transaction that lost to another one and would succeed if run
# again: a deadlock's victim (40P01), a serialization failure (40001)
_PG_RETRY = frozenset({"40P01", "40001"})


def is_unavailable(exc: BaseException, is_sqlite: bool) -> bool:
    """Whether ``exc`` means the database cannot be used now (retry later), not that the
    statement is wrong, raw from the driver (a hot point read) or wrapped by SQLAlchemy: the
    pool's connections all in use past its timeout; on PostgreSQL the SQLSTATEs above, or an
    operational error with none (the client lost or could not open the connection) or an
    interface error about the connection; on SQLite an operational error with a message
    above."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, OperationalError | InterfaceError) and exc.orig is not None:
        exc = exc.orig
    kinds = {base.__name__ for base in type(exc).__mro__}
    if is_sqlite:
        return "OperationalError" in kinds and any(
            word in str(exc).lower() for word in _SQLITE_UNAVAILABLE
        )
    state = getattr(exc, "sqlstate", None)
    if state:
        return state.startswith("08") or state in _PG_UNAVAILABLE
    if "OperationalError" in kinds:
        return True
    return "InterfaceError" in kinds and "connection" in str(exc).lower()


def holds_nul(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL's driver refusing a text value with a NUL character
    (U+0000), which PostgreSQL cannot store and SQLite can: what a client sent, not a fault of
    the server (the input checks refuse control characters where they know of them)."""
    orig = getattr(exc, "orig", None) or exc
    return type(orig).__name__ == "DataError" and "cannot contain NUL" in str(orig)


def is_retryable(exc: BaseException, is_sqlite: bool) -> bool:
    """Whether ``exc`` means the transaction lost a race with another and would succeed run
    again (PostgreSQL's deadlock victim, serialization failure). SQLite has none: its writes go
    one at a time through one thread, and a file locked by another process is ``is_unavailable``."""
    if is_sqlite:
        return False
    orig = getattr(exc, "orig", None) or exc
    return getattr(orig, "sqlstate", None) in _PG_RETRY


def dialect_insert(is_sqlite: bool) -> Callable[..., Any]:
    """The dialect's INSERT (with ON CONFLICT), imported for the database in use only: the
    PostgreSQL dialect package imports all its drivers' modules, slow for a SQLite CLI."""
    if is_sqlite:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    return pg_insert


PG_TIMEOUTS: dict[str, int] = {  # libpq's, passed unless the URL sets them
    "connect_timeout": 10,  # s (whole seconds, 2 at least)
    "tcp_user_timeout": 10_000,  # ms: data sent and not acknowledged for that long
    "keepalives": 1,  # and a silent connection probed: idle 30 s, then 3 probes 10 s apart
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def make_engine(url: str) -> Engine:
    """The engine for ``url``. ``hide_parameters``: a database error's message (logged with
    its traceback) names the statement but not its values, which are users' data, tokens and
    fetched bodies."""
    if url.startswith("sqlite"):
        path = make_url(url).database  # decoded: the URL quotes ' ', '#', '?', '%', non-ASCII
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None on the driver: a lone SELECT runs in autocommit (no BEGIN and
        # rollback around each point read); writes open their own BEGIN IMMEDIATE (below), and
        # their context manager commits or rolls back, so no reset is needed on return.
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=8,
            pool_reset_on_return=None,
            hide_parameters=True,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # IMMEDIATE takes the write lock up front, so a writer in another process (the CLI
            # beside `serve`) waits on busy_timeout instead of failing on lock upgrade.
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    if url.startswith("postgresql"):
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        # a host that does not answer (a failover, a partition) must fail a connection in
        # seconds, not hold a request's thread until TCP gives up (minutes; for ever once
        # the socket is open and the server never speaks), nor a pooled connection for ever
        # once the host is gone (unacknowledged data, then keepalives); the URL's own wins
        timeout = {k: v for k, v in PG_TIMEOUTS.items() if f"{k}=" not in url}
        return create_engine(
            url,
            pool_size=10,
            max_overflow=10,
            pool_pre_ping=True,
            hide_parameters=True,
            connect_args=timeout,
        )
    return create_engine(url, poolclass=NullPool, hide_parameters=True)


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._writer = ThreadPoolExecutor(1 if self.is_sqlite else 8, "miniport-db-write")
        self._readers = ThreadPoolExecutor(4 if self.is_sqlite else 8, "miniport-db-read")
        self._point_local = threading.local()  # SQLite: each thread's own point-read connection
        self._point_held: list[Any] = []  # every such connection, closed by close()
        self._point_lock = threading.Lock()
        self._commits = threading.local()  # each writer thread: transactions committed by a write
        self._unavailable_logged = -LOG_EVERY_S  # when ``unavailable`` last logged (monotonic)
        self.unavailable_count = 0  # how many times it found the database away (/metrics)
        self.retried_count = 0  # writes run again after losing to another transaction (/metrics)
        self.shown = make_url(url).render_as_string(hide_password=True)  # for messages, logs

    @contextlib.contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction (committed on success, rolled back on error)."""
        with self.engine.connect() as conn:
            if self.is_sqlite:
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn
        # committed: a write that fails after this is not run again (see ``_attempts``)
        self._commits.n = getattr(self._commits, "n", 0) + 1

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads. On SQLite each statement is its own snapshot (use
        ``writing()`` or ``snapshot()`` when several reads must agree); on PostgreSQL a
        transaction as usual."""
        if self.is_sqlite:
            with self.engine.connect() as conn:
                yield conn
        else:
            with self.engine.connect() as conn, conn.begin():
                yield conn

    def sql(self, statement: str) -> str:
        """A plain SQL statement written with ``?`` placeholders, in this driver's style."""
        return statement if self.is_sqlite else statement.replace("?", "%s")

    def fetch_one(self, statement: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One row of a hot-path point read, straight through a DB-API connection (no statement
        building, no transaction bookkeeping): several times cheaper than Core. On SQLite the
        calling thread keeps its own connection, so the read skips the pool's checkout and
        return, and the driver's cache of prepared statements stays warm; a lone SELECT runs in
        autocommit (``isolation_level=None``), each one a fresh snapshot, as through the pool."""
        if self.is_sqlite:
            conn = getattr(self._point_local, "conn", None) or self._point_connection()
            cursor = conn.execute(statement, params)
            try:
                row = cursor.fetchone()
            finally:
                cursor.close()
            return tuple(row) if row is not None else None
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(statement, params)
            row = cursor.fetchone()
            cursor.close()
            if not self.is_sqlite:
                raw.rollback()
            return tuple(row) if row is not None else None
        finally:
            raw.close()

    def _point_connection(self) -> Any:
        """This thread's point-read connection: one of the engine's (so set up by its
        ``connect`` hook: WAL, busy timeout, autocommit), taken out of the pool for good."""
        fairy = self.engine.raw_connection()
        fairy.detach()
        with self._point_lock:
            self._point_held.append(fairy)  # the fairy keeps the connection open
        conn = fairy.dbapi_connection
        self._point_local.conn = conn
        return conn

    async def write(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn`` on the writer thread(s). Chosen as a deadlock's victim (``is_retryable``) before
        it committed any transaction, it is run again, up to WRITE_ATTEMPTS times in all: its
        transaction was rolled back, so nothing is done twice. Still failing after that, it is a 503
        to retry (``StateUnavailable``); failing after a commit (a write of several
        transactions), it is raised as it came."""
        call = functools.partial(fn, *args, **kwargs)
        if self.is_sqlite:
            return await self._run(self._writer, call)
        return await self._run(self._writer, functools.partial(self._attempts, call))

    def _attempts(self, call: Callable[[], T]) -> T:
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            self._commits.n = 0
            try:
                return call()
            except Exception as exc:
                if not is_retryable(exc, self.is_sqlite) or self._commits.n:
                    raise  # a part committed: run again, it would do that part twice
                if attempt == WRITE_ATTEMPTS:
                    raise self.lost_race(exc, attempt) from exc
                self.retried_count += 1  # (a lost increment under a race: a scrape's count)
                time.sleep(random.uniform(0, RETRY_PAUSE_S * attempt))  # apart from the winner
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def lost_race(self, exc: BaseException, attempts: int) -> StateUnavailable:
        """A write that lost to other transactions ``attempts`` times: a 503 to retry, logged as
        a warning with PostgreSQL's reason."""
        reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["?"])[0]
        log.warning("a write lost to another transaction %d time(s): %s", attempts, reason)
        return StateUnavailable("the state database is busy right now; try again")

    async def read_point(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A point read by primary key. On SQLite it runs inline: a WAL reader never waits for a
        writer, and the lookup (~15 µs) is cheaper than the hop to a thread (~50 µs)."""
        if not self.is_sqlite:
            return await self.read(fn, *args, **kwargs)
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if is_unavailable(exc, self.is_sqlite):
                raise self.unavailable(exc) from exc
            raise

    async def read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(self._readers, functools.partial(fn, *args, **kwargs))

    async def _run(self, pool: ThreadPoolExecutor, call: Callable[[], T]) -> T:
        """``call`` on one of ``pool``'s threads (no context manager: every request's path)."""
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, call)
        except Exception as exc:
            if is_unavailable(exc, self.is_sqlite):
                raise self.unavailable(exc) from exc
            if holds_nul(exc):  # a 422 as on SQLite's input checks, not a 500
                raise InvalidInput("a text value holds a NUL character (U+0000)") from exc
            raise

    def unavailable(self, exc: BaseException, *, say_where: bool = False) -> StateUnavailable:
        """The ``StateUnavailable`` for ``exc`` (an ``is_unavailable`` error), which every API
        answers with a 503 and a Retry-After, and the background loops log and retry. With
        ``say_where`` its message names the database (its URL without password) and the
        driver's reason, for the operator starting a command (an API's clients are not told
        where it lives; the operator reads the message, so it is not logged too). Otherwise the
        reason is logged as a warning, at most once per LOG_EVERY_S (an outage fails every
        request: the access log counts them, this line says why)."""
        reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["?"])[0]
        self.unavailable_count += 1  # (a lost increment under a race: a scrape's count)
        if say_where:
            return StateUnavailable(f"the state database {self.shown} cannot be reached: {reason}")
        now = time.monotonic()
        if now - self._unavailable_logged >= LOG_EVERY_S:
            self._unavailable_logged = now
            log.warning("the state database %s cannot be used: %s", self.shown, reason)
        return StateUnavailable("the state database cannot be reached right now; try again")

    @contextlib.contextmanager
    def unavailable_as_503(self, *, say_where: bool = False) -> Iterator[None]:
        """Around work on the database: its being away (``is_unavailable``) is raised as
        :meth:`unavailable`; any other error passes unchanged."""
        try:
            yield
        except Exception as exc:
            if is_unavailable(exc, self.is_sqlite):
                raise self.unavailable(exc, say_where=say_where) from exc
            raise

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._point_lock:
            held, self._point_held = self._point_held, []
        for fairy in held:
            fairy.close()
        self._point_local = threading.local()
        self.engine.dispose()
