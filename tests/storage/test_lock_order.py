"""On PostgreSQL every multi-row write takes its row locks in one global order (``app_users``
by key, then ``fetched_data`` by key, then ``bodies`` by hash), so two of them at once wait for
each other at most, never deadlock.

Each test makes the deadlock an out-of-order writer would meet, with no timing luck: connection
B holds a low lock (an open transaction that wrote the row, as a batch in progress would), the
operation under test starts in a thread and waits for it (seen in ``pg_stat_activity``), then B
asks for a higher lock. A writer that had taken that one before waiting is in a cycle with B,
and PostgreSQL aborts one of them after ``deadlock_timeout`` (50 ms in these databases); one
that waits at B's lock first holds nothing B needs, so B goes on, commits, and it completes.
Physical row order is set against key order (higher keys inserted first), so a statement that
locks in the order its plan scans does not pass by chance."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import psycopg
import pytest
from sqlalchemy import insert, select, text, update

from miniport.storage import migrate
from miniport.storage import schema as t
from miniport.storage.db import Database
from miniport.storage.fetches import FetchRecord, FetchStore, ScheduleUpdate, body_hash
from miniport.storage.refreshes import RefreshStore
from miniport.storage.registry import App, RegistryStore

pytestmark = pytest.mark.postgres

NOW = 1_000_000.0
APP = "mpa"


@pytest.fixture
def url(pg_url: str) -> str:
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as admin:
        # a deadlock is found fast; a wait that is not one fails the test instead of hanging it
        admin.execute(f"ALTER DATABASE \"{name}\" SET deadlock_timeout = '50ms'")
        admin.execute(f"ALTER DATABASE \"{name}\" SET lock_timeout = '20s'")
    return pg_url


@pytest.fixture
def db(url: str) -> Iterator[Database]:
    database = Database(url)
    migrate.upgrade(database.engine)
    RegistryStore(database).create_app(App(APP, "a", "s" * 32, 0.0), "test")
    with database.writing() as conn:  # a periodic URL: the app can be fetched
        conn.execute(
            update(t.fetch_urls)
            .where(t.fetch_urls.c.appid == APP, t.fetch_urls.c.kind == "periodic")
            .values(url="http://127.0.0.1/p", enabled=True)
        )
    try:
        yield database
    finally:
        database.close()


def pairs(db: Database, *users: str, **values: Any) -> None:
    """Rows of ``app_users`` in this physical order: launched, with a token, due, last
    fetched an hour ago, plus ``values``."""
    row = {
        "appid": APP, "token": "tok", "last_launch_at": NOW - 60, "next_due_at": NOW + 3600,
        "last_success_at": NOW - 3600, "last_attempt_at": NOW - 3600, "failures": 0,
    }  # fmt: skip
    with db.writing() as conn:
        for user in users:
            conn.execute(insert(t.app_users).values(**{**row, "user_id": user, **values}))
    with db.engine.connect() as conn:  # the statistics autovacuum keeps: plans as in service
        conn.execute(text("ANALYZE app_users")).close()


def lease(db: Database, user: str) -> None:
    with db.writing() as conn:
        conn.execute(
            update(t.app_users)
            .where(t.app_users.c.appid == APP, t.app_users.c.user_id == user)
            .values(lease_until=NOW + 300, next_due_at=NOW + 300)
        )


def user(db: Database, user_id: str) -> dict[str, Any]:
    found = FetchStore(db).get_user(APP, user_id)
    assert found is not None
    return found


def held_row(b: psycopg.Connection[Any], user_id: str) -> None:
    """B writes a pair (and holds its lock until B ends), as a batch in progress does."""
    b.execute(
        "UPDATE app_users SET failures = failures WHERE appid = %s AND user_id = %s",
        (APP, user_id),
    )


def held_body(b: psycopg.Connection[Any], digest: str) -> None:
    """B writes a body (and holds its lock), as a batch storing it does (its count unchanged
    here)."""
    b.execute("UPDATE bodies SET refs = refs WHERE hash = %s", (digest,))


def row(user_id: str) -> Callable[[psycopg.Connection[Any]], None]:
    return partial(held_row, user_id=user_id)


def body(text: str) -> Callable[[psycopg.Connection[Any]], None]:
    return partial(held_body, digest=body_hash(text))


def references(db: Database) -> dict[str, int]:
    with db.reading() as conn:
        return {h: n for h, n in conn.execute(select(t.bodies.c.hash, t.bodies.c.refs))}


@contextlib.contextmanager
def against(
    url: str, hold: Callable[[psycopg.Connection[Any]], None], work: Callable[[], Any]
) -> Iterator[tuple[psycopg.Connection[Any], Future[Any]]]:
    """B holds what ``hold`` takes; ``work`` runs in a thread until it waits for B. Inside:
    B asks for more; on leaving B commits and the work's result is checked (a deadlock error
    in either of them fails the test)."""
    with psycopg.connect(url) as b, ThreadPoolExecutor(1) as pool:
        hold(b)
        future = pool.submit(work)
        wait_for_a_lock(url, future)
        yield b, future
        b.commit()
        future.result(timeout=30)


def wait_for_a_lock(url: str, future: Future[Any]) -> None:
    with psycopg.connect(url, autocommit=True) as watch:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if future.done():
                future.result()
                pytest.fail("the operation did not wait for the row B holds")
            waiting = watch.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if waiting is not None and waiting[0] > 0:
                return
            time.sleep(0.005)
    pytest.fail("the operation never waited for B")


# --- app_users: grey wakes, refreshes, reschedules ---


def test_a_grey_wake_takes_its_users_in_key_order(db: Database, url: str) -> None:
    """wake_users made the leased users' rows lose their validators first, then the free ones
    due: the second pass went back to lower keys while holding higher ones."""
    pairs(db, "b", "a")
    lease(db, "b")
    store = FetchStore(db)
    with against(url, row("a"), partial(store.wake_users, APP, ["a", "b"], NOW)) as (b, woken):
        held_row(b, "b")
    assert woken.result() == 1
    assert user(db, "a")["next_due_at"] == NOW and user(db, "b")["next_due_at"] == NOW + 300


def test_a_url_change_wakes_the_apps_users_in_key_order(db: Database, url: str) -> None:
    """wake_app: the same two passes, as two UPDATEs over the app."""
    pairs(db, "b", "a")
    lease(db, "b")
    store = FetchStore(db)
    with against(url, row("a"), partial(store.wake_app, APP, NOW)) as (b, woken):
        held_row(b, "b")
    assert woken.result() == 1
    assert user(db, "a")["next_due_at"] == NOW and user(db, "b")["etag"] is None


def test_a_refresh_start_takes_its_users_in_key_order(db: Database, url: str) -> None:
    """The start's UPDATE ... WHERE user_id IN (refresh's users) locked rows in the order its
    plan met them (physical order for a scan), not key order."""
    users = [f"u{i:03d}" for i in range(200)]
    pairs(db, *reversed(users))
    refreshes = RefreshStore(db)
    start = partial(refreshes.start, "r1", APP, None, NOW - 86400, NOW, "dev")
    with against(url, row(users[0]), start) as (b, started):
        held_row(b, users[-1])
    assert started.result().total == 200
    assert {user(db, u)["next_due_at"] for u in (users[0], users[-1])} == {NOW}


def test_a_refresh_cancel_takes_its_users_in_key_order(db: Database, url: str) -> None:
    """The cancel's UPDATE, the same way."""
    users = [f"u{i:03d}" for i in range(200)]
    pairs(db, *reversed(users))
    refreshes = RefreshStore(db)
    refreshes.start("r1", APP, None, NOW - 86400, NOW, "dev")
    cancel = partial(refreshes.cancel, APP, "r1", 7200.0, NOW + 1, "dev")
    with against(url, row(users[0]), cancel) as (b, cancelled):
        held_row(b, users[-1])
    assert cancelled.result().state == "cancelled"
    assert user(db, users[-1])["next_due_at"] == NOW - 3600 + 7200


def test_an_interval_change_reschedules_in_key_order(db: Database, url: str) -> None:
    """reschedule_app: two UPDATEs over the app, each in the order its plan met the rows."""
    users = [f"u{i:03d}" for i in range(200)]
    pairs(db, *reversed(users))
    store = FetchStore(db)
    reschedule = partial(store.reschedule_app, APP, 7200.0, NOW, 600.0)
    with against(url, row(users[0]), reschedule) as (b, moved):
        held_row(b, users[-1])
    assert moved.result() == 200
    assert user(db, users[-1])["next_due_at"] == NOW - 3600 + 7200


def test_a_batch_of_schedules_takes_its_pairs_in_key_order(db: Database, url: str) -> None:
    """Results without a body to check (failures, 304s) move their schedules with one
    UPDATE ... FROM unnest, whose locks go in the order its plan meets the rows: the batch's
    (key) order in every plan seen (the array on the outer side), so this passed before the
    batch locked its pairs first too; it keeps that from depending on the plan."""
    users = [f"u{i:03d}" for i in range(200)]
    pairs(db, *reversed(users))
    moves = [ScheduleUpdate(APP, u, NOW + 60, 1, NOW, "down", token="tok") for u in users]
    store = FetchStore(db)
    with against(url, row(users[0]), partial(store.record, [], moves)) as (b, recorded):
        held_row(b, users[-1])
    recorded.result()
    assert user(db, users[-1])["failures"] == 1


# --- bodies and fetched data ---


def stored(
    user_id: str, body: str, kind: str = "periodic", token: str | None = None
) -> FetchRecord:
    return FetchRecord(
        APP, user_id, kind, "schedule", NOW, "http://127.0.0.1/p", "cached", body=body,
        fetched_at_ms=int(NOW * 1000), token=token,
    )  # fmt: skip


def two_bodies() -> tuple[str, str]:
    """Two body texts, the first's hash lower."""
    x, y = "body one", "body two"
    return (x, y) if body_hash(x) < body_hash(y) else (y, x)


def test_a_batch_replacing_bodies_takes_them_in_hash_order(db: Database, url: str) -> None:
    """A batch upserted its new bodies in hash order, then its rows' replaced bodies lost a
    reference (the trigger) in row order: a lower hash after a higher one."""
    low, high = two_bodies()
    pairs(db, "p", "q")
    store = FetchStore(db)
    store.record([stored("p", low), stored("q", high)])
    replace_low = partial(store.record, [stored("p", high)])
    with against(url, body(low), replace_low) as (b, recorded):
        held_body(b, body_hash(high))
    recorded.result()
    assert store.get_data(APP, "p", "periodic").body == high  # type: ignore[union-attr]
    assert references(db) == {body_hash(high): 2}  # low: no reference left, deleted


def test_a_changed_token_drops_bodies_in_hash_order(db: Database, url: str) -> None:
    """The dropped rows' bodies lost their references in row (kind) order."""
    low, high = two_bodies()
    pairs(db, "p")
    store = FetchStore(db)
    # "periodic" sorts before "pre": its body, the higher hash, was unreferenced first
    store.record([stored("p", high, "periodic"), stored("p", low, "pre")])
    change = partial(store.set_token, APP, "p", "another", NOW)
    with against(url, body(low), change) as (b, changed):
        held_body(b, body_hash(high))
    assert changed.result() is True
    assert store.get_data(APP, "p", "pre") is None and references(db) == {}


def test_clearing_data_locks_pairs_before_bodies(db: Database, url: str) -> None:
    """clear_data deleted rows (their bodies locked by the trigger), then cleared the pairs'
    validators: a batch that held a pair and then stored the same body waited for it, while it
    waited for the pair."""
    pairs(db, "p")
    store = FetchStore(db)
    store.record([stored("p", "shared")])
    with against(url, row("p"), partial(store.clear_data, APP, None)) as (b, cleared):
        held_body(b, body_hash("shared"))
    assert cleared.result() == 1 and references(db) == {}
