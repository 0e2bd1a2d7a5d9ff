"""Unique keys decide, not a read before the insert: two concurrent creates of one console user
give one user and one clear ``Conflict`` (409), two processes setting the server key at once
both get the one value kept, on SQLite and on PostgreSQL; other integrity errors are not
dressed up."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from miniport.errors import Conflict
from miniport.platform import Platform
from miniport.storage import schema as t
from miniport.storage.db import conflict_on_duplicate
from miniport.storage.registry import App

Make = Callable[..., Awaitable[Platform]]
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


async def started(backend: str, platforms: Make, request: pytest.FixtureRequest) -> Platform:
    if backend == "postgres":
        return await platforms(database_url=request.getfixturevalue("pg_url"))
    return await platforms()


def split(results: list[Any]) -> tuple[list[Any], list[BaseException]]:
    return (
        [r for r in results if not isinstance(r, BaseException)],
        [r for r in results if isinstance(r, BaseException)],
    )


@pytest.mark.parametrize("backend", BACKENDS)
async def test_two_concurrent_creates_give_one_user_and_one_conflict(
    backend: str, platforms: Make, request: pytest.FixtureRequest
) -> None:
    p = await started(backend, platforms, request)
    users = p.console_users
    results = await asyncio.gather(
        users.create_user("ana", "viewer", "password-one", actor="t1"),
        users.create_user("ana", "admin", "password-two", actor="t2"),
        return_exceptions=True,
    )
    created, refused = split(results)
    assert len(created) == 1 and len(refused) == 1, results
    assert isinstance(refused[0], Conflict) and refused[0].http_status == 409
    assert refused[0].message == "a console user named 'ana' already exists"
    winner = created[0][0]
    assert [(u.name, u.role) for u in await users.list_users()] == [("ana", winner.role)]
    # the loser's transaction left nothing behind, its audit entry included
    audit = await p.db.read(p.registry.list_audit)
    assert [e.action for e in audit].count("console_user.create") == 1


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_database_decides_when_two_inserts_meet(
    backend: str, platforms: Make, request: pytest.FixtureRequest
) -> None:
    """The store's inserts themselves race: two threads released together, each in its own
    transaction (PostgreSQL runs them at once; a read-then-insert would let both pass the read
    and the second would fail with a raw IntegrityError)."""
    p = await started(backend, platforms, request)
    store, now = p.console_users.store, p.clock.now()
    gate = threading.Barrier(2, timeout=10)

    def create(actor: str) -> Any:
        gate.wait()
        return store.create_user("bo", "viewer", "not-a-real-hash", now, False, actor)

    results = await asyncio.gather(
        asyncio.to_thread(create, "t1"), asyncio.to_thread(create, "t2"), return_exceptions=True
    )
    created, refused = split(results)
    assert len(created) == 1 and len(refused) == 1, results
    assert isinstance(refused[0], Conflict)
    assert [u.name for u in store.list_users()] == ["bo"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_two_first_sets_of_a_key_agree_on_one_value(
    backend: str, platforms: Make, request: pytest.FixtureRequest
) -> None:
    p = await started(backend, platforms, request)
    gate = threading.Barrier(2, timeout=10)

    def first_set(value: str) -> str:
        gate.wait()
        return p.registry.kv_get_or_set("race", value)

    got = await asyncio.gather(
        asyncio.to_thread(first_set, "one"), asyncio.to_thread(first_set, "two")
    )
    assert got[0] == got[1] in ("one", "two")
    assert p.registry.kv_get_or_set("race", "three") == got[0]


async def test_an_app_id_taken_twice_is_a_conflict(platform: Platform) -> None:
    app = App("mp0123456789abcdef", "first", "s" * 32, platform.clock.now())
    await platform.db.write(platform.registry.create_app, app, "t")
    with pytest.raises(Conflict, match="already exists"):
        await platform.db.write(platform.registry.create_app, app, "t")
    assert [a.name for a in await platform.db.read(platform.registry.list_apps)] == ["first"]


def test_other_integrity_errors_pass_unchanged(platform: Platform) -> None:
    with (
        pytest.raises(IntegrityError),
        conflict_on_duplicate("not this"),
        platform.db.writing() as conn,
    ):  # NOT NULL, not a duplicate
        conn.execute(insert(t.console_users).values(name="cy", role=None, password_hash="h"))
    assert platform.console_users.store.get_user("cy") is None


@pytest.mark.parametrize("backend", BACKENDS)
async def test_one_login_code_exchanged_at_once_works_once_and_refuses_cleanly(
    backend: str, platforms: Make, request: pytest.FixtureRequest
) -> None:
    """Eight exchanges of one code at once (on PostgreSQL each in its own transaction and
    thread): one is taken, the others are told the code was used; none is a database error."""
    p = await started(backend, platforms, request)
    app = await p.apps.create("shop", "test")
    results = await asyncio.gather(
        *(
            p.db.write(
                p.registry.use_login_code, "code-hash", app.appid, "alice", 2000.0, 1000.0
            )
            for _ in range(8)
        ),
        return_exceptions=True,
    )
    assert sorted(results, key=str) == [False] * 7 + [True], results


@pytest.mark.postgres
async def test_a_login_code_taken_by_a_transaction_in_flight_is_used_not_an_error(
    platforms: Make, pg_url: str
) -> None:
    """The race made certain: another exchange has inserted the code but not committed when
    this one looks. A read before the insert saw nothing and then hit the unique key (a 500
    for the device); now this one waits for the other and answers 'used'."""
    p = await platforms(database_url=pg_url)
    app = await p.apps.create("shop", "test")
    with p.db.engine.connect() as other:
        other.begin()
        other.execute(
            insert(t.login_codes).values(
                code_hash="code-hash", appid=app.appid, user_id="bob", expires_at=2000.0
            )
        )
        exchange = asyncio.ensure_future(
            p.db.write(p.registry.use_login_code, "code-hash", app.appid, "alice", 2000.0, 1000.0)
        )
        await asyncio.sleep(0.3)  # this exchange is now waiting on the other's row lock
        other.commit()
    assert await exchange is False


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_database_error_names_the_statement_not_the_values(
    backend: str, platforms: Make, request: pytest.FixtureRequest
) -> None:
    """Database errors are logged with their message: it must not carry the statement's values
    (users' tokens, fetched bodies). PostgreSQL's own detail names the violated key's value (here
    the code hash), which is not one of them."""
    p = await started(backend, platforms, request)
    app = await p.apps.create("shop", "test")
    row = {"code_hash": "h", "appid": app.appid, "user_id": "secret-value-1234", "expires_at": 1.0}

    def twice() -> None:
        with p.db.writing() as conn:
            conn.execute(insert(t.login_codes).values(**row))
            conn.execute(insert(t.login_codes).values(**row))

    with pytest.raises(IntegrityError) as caught:
        await p.db.write(twice)
    assert "login_codes" in str(caught.value)
    assert "secret-value-1234" not in str(caught.value)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_used_code_is_remembered_past_expiry_for_nodes_whose_clock_is_behind(
    backend: str, platforms: Make, request: pytest.FixtureRequest
) -> None:
    """An exchange on a node whose clock was ahead deleted the used row of a code that a node
    behind it still took as valid (its expiry not reached by its clock): the code worked
    twice. Used rows are kept for the allowed skew past expiry."""
    from miniport.domain.tokens import CLOCK_SKEW_S

    p = await started(backend, platforms, request)
    app = await p.apps.create("shop", "test")
    use = p.registry.use_login_code
    assert await p.db.write(use, "code-1", app.appid, "alice", 2000.0, 1000.0)
    # another code, exchanged on a node whose clock reads 30 s past code-1's expiry
    assert await p.db.write(use, "code-2", app.appid, "bob", 2400.0, 2030.0)
    # the node behind (its clock 1 s before code-1's expiry) is asked for code-1 again
    assert not await p.db.write(use, "code-1", app.appid, "alice", 2000.0, 1999.0)
    # past the skew, the row may go
    assert await p.db.write(use, "code-3", app.appid, "cy", 3000.0, 2001.0 + CLOCK_SKEW_S)
    with p.db.reading() as conn:
        codes = {r[0] for r in conn.execute(select(t.login_codes.c.code_hash))}
    assert codes == {"code-2", "code-3"}
