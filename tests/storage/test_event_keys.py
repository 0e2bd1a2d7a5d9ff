"""The index of stored event ids (the ClickHouse store claims ids in it before inserting), on
SQLite and on PostgreSQL: a claim returns exactly the keys it recorded, two nodes claiming
the same keys at once each get a key at most once between them, retention drops keys."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from miniport.storage.event_keys import EventKeyIndex, key_hash


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def index(url: str) -> Iterator[EventKeyIndex]:
    keys = EventKeyIndex.open(url)
    try:
        yield keys
    finally:
        keys.close()


def at_once(nodes: list[EventKeyIndex], work: Callable[[int], None], timeout_s: float) -> None:
    """``work(k)`` for each node k, in threads released together; the nodes closed after."""
    barrier = threading.Barrier(len(nodes))

    def run(k: int) -> None:
        barrier.wait()
        work(k)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
    for node in nodes:
        node.close()


def test_key_hash_is_64_bit_signed_and_keeps_apps_apart() -> None:
    keys = {key_hash(app, uid) for app in ("a", "b", "ab") for uid in ("", "x", "bx", "\0x")}
    assert len(keys) == 12
    assert all(-(2**63) <= k < 2**63 for k in keys)
    assert key_hash("a", "bx") != key_hash("ab", "x")
    assert key_hash("shop", "e1") == key_hash("shop", "e1")


def test_a_claim_returns_the_keys_it_recorded(index: EventKeyIndex) -> None:
    assert index.claim([]) == set()
    assert index.claim([(5, 100), (-3, 100), (2**63 - 1, 7), (-(2**63), 7)]) == {
        5,
        -3,
        2**63 - 1,
        -(2**63),
    }
    assert index.claim([(5, 200), (6, 200), (6, 201)]) == {6}
    assert index.count() == 5


def test_retention_drops_keys_by_event_time(index: EventKeyIndex) -> None:
    index.claim([(1, 10), (2, 20), (3, 30)])
    assert index.delete_older_than(25) == 2
    assert index.claim([(1, 40), (3, 40)]) == {1}  # a dropped key can be claimed again


def test_released_keys_can_be_claimed_again(index: EventKeyIndex) -> None:
    index.claim([(k, 10) for k in range(12_000)])
    index.release(set())
    index.release({*range(11_000), -9})  # more than one statement's worth; -9 was never claimed
    assert index.count() == 1000
    assert index.claim([(0, 20), (10_999, 20), (11_000, 20)]) == {0, 10_999}


def test_the_token_is_made_once_and_kept(url: str, index: EventKeyIndex) -> None:
    token = index.token()
    assert len(token) == 32 and index.token() == token
    again = EventKeyIndex.open(url)
    try:
        assert again.token() == token
    finally:
        again.close()


def test_nodes_claiming_overlapping_batches_at_once_get_each_key_once(url: str) -> None:
    """Four nodes (own engines) claim overlapping batches in different orders at once: every
    key is claimed by exactly one of them, and none deadlocks (keys are sorted)."""
    pool = [key_hash("shop", uuid.uuid4().hex) for _ in range(600)]
    nodes = [EventKeyIndex.open(url) for _ in range(4)]
    got: list[set[int]] = [set() for _ in nodes]
    errors: list[BaseException] = []

    def claim(k: int) -> None:
        try:
            for start in range(0, 600, 100):
                batch = pool[start : start + 200] if k % 2 else pool[start + 100 : start : -1]
                got[k] |= nodes[k].claim((key, 1) for key in reversed(batch))
        except BaseException as exc:  # reported below
            errors.append(exc)

    at_once(nodes, claim, 60)
    assert errors == []
    claimed = [key for keys in got for key in keys]
    assert len(claimed) == len(set(claimed))  # nobody claimed a key another one claimed
    assert set(claimed) == set(pool)  # the odd nodes sent every key


@pytest.mark.postgres
def test_a_claim_on_a_connection_the_server_dropped_is_sent_again(pg_url: str) -> None:
    """The index holds its connection between claims: when PostgreSQL has dropped it (a
    restart, an idle timeout), the claim goes again on a new one instead of failing."""
    import psycopg

    index = EventKeyIndex.open(pg_url)
    try:
        assert index.claim([(1, 1)]) == {1}
        with psycopg.connect(pg_url, autocommit=True) as admin:
            dropped = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        assert dropped == [(True,)]
        assert index.claim([(1, 2), (2, 2)]) == {2}
    finally:
        index.close()


def test_nodes_making_the_token_at_once_agree_on_one(url: str) -> None:
    nodes = [EventKeyIndex.open(url) for _ in range(4)]
    tokens: list[str] = []
    at_once(nodes, lambda k: tokens.append(nodes[k].token()), 30)
    assert len(tokens) == 4 and len(set(tokens)) == 1


def test_a_key_given_twice_in_a_claim_keeps_its_latest_time(index: EventKeyIndex) -> None:
    assert index.claim([(7, 50), (7, 10), (8, 5)]) == {7, 8}
    assert index.delete_older_than(20) == 1  # 8 only: 7 is kept at 50
    assert index.claim([(7, 1)]) == set()


def test_nodes_hold_the_exclusive_lock_one_at_a_time(url: str) -> None:
    """What a one-time change to the shared ClickHouse database runs under: the second node
    enters only once the first has left."""
    first, second = EventKeyIndex.open(url), EventKeyIndex.open(url)
    order: list[str] = []
    inside = threading.Event()
    leave = threading.Event()

    def hold() -> None:
        with first.exclusive():
            order.append("first in")
            inside.set()
            leave.wait(10)
            order.append("first out")

    def wait_then_hold() -> None:
        inside.wait(10)
        with second.exclusive():
            order.append("second in")

    threads = [threading.Thread(target=hold), threading.Thread(target=wait_then_hold)]
    try:
        for thread in threads:
            thread.start()
        inside.wait(10)
        threads[1].join(0.5)  # the second node is waiting for the lock, not inside
        assert order == ["first in"]
        leave.set()
        for thread in threads:
            thread.join(10)
        assert order == ["first in", "first out", "second in"]
    finally:
        leave.set()
        first.close()
        second.close()
