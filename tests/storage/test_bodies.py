"""Bodies stored once: users given the same body share one row, its references are counted
exactly through replacement, deletion and migration, and the last reference frees it — on
SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from miniport.storage import migrate
from miniport.storage import schema as t
from miniport.storage.db import Database
from miniport.storage.fetches import FetchRecord, FetchStore, body_hash
from miniport.storage.registry import App, RegistryStore

FEED = '{"feed": ["same", "for", "everyone"]}' * 50


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = (
        f"sqlite:///{tmp_path / 'state.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    database = Database(url)
    migrate.upgrade(database.engine)
    RegistryStore(database).create_app(App("mpa", "a", "s" * 32, 0.0), "test")
    try:
        yield database
    finally:
        database.close()


def data(user: str, body: str, at: int = 1, kind: str = "periodic") -> FetchRecord:
    return FetchRecord(
        "mpa",
        user,
        kind,
        "schedule",
        at / 1000,
        "http://x/",
        "cached",
        body=body,
        fetched_at_ms=at,
    )


def bodies(db: Database) -> dict[str, int]:
    with db.reading() as conn:
        return {h: refs for h, refs in conn.execute(select(t.bodies.c.hash, t.bodies.c.refs))}


def test_one_body_for_many_users_and_the_last_reference_frees_it(db: Database) -> None:
    store = FetchStore(db)
    store.record([data(u, FEED) for u in ("u1", "u2", "u3")])
    store.record([data("u4", FEED), data("u4", FEED, kind="pre")])
    assert bodies(db) == {body_hash(FEED): 5}
    assert store.get_data("mpa", "u2", "periodic").body == FEED  # type: ignore[union-attr]

    # a new body for one user: the old one loses a reference, the new one is stored
    store.record([data("u1", "mine", at=2)])
    assert bodies(db) == {body_hash(FEED): 4, body_hash("mine"): 1}
    assert store.get_data("mpa", "u1", "periodic").body == "mine"  # type: ignore[union-attr]
    # the same body again for the same user changes no count
    store.record([data("u1", "mine", at=3), data("u1", "mine", at=4)])
    assert bodies(db) == {body_hash(FEED): 4, body_hash("mine"): 1}
    assert store.get_data("mpa", "u1", "periodic").fetched_at_ms == 4  # type: ignore[union-attr]

    assert store.clear_data("mpa", "u1") == 1
    assert bodies(db) == {body_hash(FEED): 4}  # "mine" had one reference: freed
    assert store.clear_data("mpa", "u4") == 2
    assert bodies(db) == {body_hash(FEED): 2}
    assert store.clear_data("mpa", None) == 2
    assert bodies(db) == {}
    assert store.get_data("mpa", "u2", "periodic") is None


def test_a_body_is_stored_compressed_and_once(db: Database) -> None:
    store = FetchStore(db)
    store.record([data(f"u{i}", FEED) for i in range(20)])
    with db.reading() as conn:
        stored = conn.execute(select(func.sum(func.length(t.bodies.c.body)))).scalar_one()
    assert stored < len(FEED) / 5  # one compressed copy for 20 users


def test_migration_moves_existing_bodies_out_and_back(db: Database) -> None:
    store = FetchStore(db)
    store.record([data("u1", "one"), data("u2", "one"), data("u3", "three")])
    migrate.downgrade(db.engine, "0001")
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT user_id, body FROM fetched_data ORDER BY user_id")).all()
    assert [tuple(r) for r in rows] == [("u1", "one"), ("u2", "one"), ("u3", "three")]
    with db.engine.begin() as conn:  # a row written under the old schema
        conn.execute(
            text(
                "INSERT INTO fetched_data (appid, user_id, kind, body, fetched_at_ms)"
                " VALUES ('mpa', 'u9', 'pre', 'three', 5)"
            )
        )
    migrate.upgrade(db.engine)
    assert bodies(db) == {body_hash("one"): 2, body_hash("three"): 2}
    assert store.get_data("mpa", "u9", "pre").body == "three"  # type: ignore[union-attr]
    store.clear_data("mpa", "u3")
    store.clear_data("mpa", "u9")
    assert bodies(db) == {body_hash("one"): 2}


def test_a_pair_twice_in_one_batch_keeps_its_last_body_and_exact_references(
    db: Database,
) -> None:
    """PostgreSQL writes a batch as one statement per table (the last result per pair wins);
    SQLite writes every row. Both leave the last body and counts that match the rows."""
    store = FetchStore(db)
    store.record([data("u1", "old"), data("u2", "old")])
    store.record([data("u1", "new", 2), data("u1", "newer", 3), data("u2", "old", 2)])
    assert store.get_data("mpa", "u1", "periodic").body == "newer"  # type: ignore[union-attr]
    assert bodies(db) == {body_hash("old"): 1, body_hash("newer"): 1}


def test_a_changed_token_drops_the_previous_tokens_bodies(db: Database) -> None:
    """The bodies fetched with a token are not served once the pair has another (another
    account's data, perhaps): a read finds nothing until the new token's fetch lands. The same
    token set again, a first token and another user's bodies keep theirs."""
    store = FetchStore(db)
    store.record([data("u3", "before signing in", kind="pre")])
    for u in ("u1", "u2", "u3"):
        store.set_token("mpa", u, "alice", 1.0)
    store.record([replace(data(u, f"{u} as alice"), token="alice") for u in ("u1", "u2")])
    store.record([replace(data("u1", "launch data", at=2, kind="pre"), token="alice")])
    store.set_token("mpa", "u1", "alice", 2.0)  # the same token: nothing changes
    assert store.get_data("mpa", "u1", "periodic").body == "u1 as alice"  # type: ignore[union-attr]

    store.set_token("mpa", "u1", "bob", 3.0)
    assert store.get_data("mpa", "u1", "periodic") is None
    assert store.get_data("mpa", "u1", "pre") is None
    assert store.get_data("mpa", "u2", "periodic").body == "u2 as alice"  # type: ignore[union-attr]
    assert store.get_data("mpa", "u3", "pre").body == "before signing in"  # type: ignore[union-attr]
    assert bodies(db) == {body_hash("u2 as alice"): 1, body_hash("before signing in"): 1}
    store.record([replace(data("u1", "u1 as bob", at=4), token="bob")])
    assert store.get_data("mpa", "u1", "periodic").body == "u1 as bob"  # type: ignore[union-attr]


def test_a_body_fetched_with_a_token_no_longer_the_pairs_is_not_stored_nor_counted(
    db: Database,
) -> None:
    """A periodic result carries the token it was fetched with; once the pair has another
    token its body is skipped (the log row stays): alone, after the new token's body in the
    same batch, or as the only reference to a body. Every count still matches the rows."""
    store = FetchStore(db)
    for u in ("u1", "u2"):
        store.set_token("mpa", u, "bob", 1.0)
    stale = [replace(data("u1", "alice's", at=2), token="alice")]
    assert [r.body for r in store.record(stale)] == [None]
    assert store.get_data("mpa", "u1", "periodic") is None and bodies(db) == {}

    store.record([replace(data(u, FEED), token="bob") for u in ("u1", "u2")])
    assert bodies(db) == {body_hash(FEED): 2}
    stored = store.record(
        [
            replace(data("u1", "bob's", at=3), token="bob"),
            replace(data("u1", FEED, at=4), token="alice"),  # last in the batch, but stale
            replace(data("u2", "alice's", at=4), token="alice"),
            data("u2", "pre", at=5, kind="pre"),  # no token: not a periodic result
        ]
    )
    assert [r.body for r in stored] == ["bob's", None, None, "pre"]
    assert store.get_data("mpa", "u1", "periodic").body == "bob's"  # type: ignore[union-attr]
    assert store.get_data("mpa", "u2", "periodic").body == FEED  # type: ignore[union-attr]
    assert bodies(db) == {body_hash(FEED): 1, body_hash("bob's"): 1, body_hash("pre"): 1}
    with db.reading() as conn:
        assert conn.execute(select(func.count()).select_from(t.fetch_log)).scalar_one() == 7
    store.clear_data("mpa", None)
    assert bodies(db) == {}
