"""Alembic migrations produce exactly the models, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from miniport.storage import migrate
from miniport.storage.db import make_engine
from miniport.storage.schema import metadata


def differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "compare_server_default": True})
        return list(compare_metadata(context, metadata))


def head() -> str:
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    return str(script.get_current_head())


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_round_trip(engine: Engine) -> None:
    migrate.upgrade(engine)
    assert current(engine) == head()
    assert differences(engine) == []
    migrate.upgrade(engine)  # idempotent: every process upgrades on start
    assert differences(engine) == []

    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    assert differences(engine) == []
    assert set(inspect(engine).get_table_names()) >= set(metadata.tables)


def test_sqlite_migrations_match_the_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        check_round_trip(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_migrations_match_the_models(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        check_round_trip(engine)
    finally:
        engine.dispose()


def test_an_unmigrated_database_differs(tmp_path: Path) -> None:
    """The comparison is not vacuous: an empty database has every table missing."""
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        missing = {d[1].name for d in differences(engine) if d[0] == "add_table"}  # type: ignore[index, attr-defined]
        assert missing == set(metadata.tables)
    finally:
        engine.dispose()


def test_head_constant_is_the_newest_revision() -> None:
    """migrate.HEAD lets a started-up database skip Alembic; it must name the real head."""
    from alembic.script import ScriptDirectory

    from miniport.storage import migrate

    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    assert script.get_current_head() == migrate.HEAD


def due_index_sql(engine: Engine) -> str:
    """How the database itself defines the due index."""
    query = (
        "SELECT sql FROM sqlite_master WHERE name = 'ix_app_users_next_due_at'"
        if engine.dialect.name == "sqlite"
        else "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_app_users_next_due_at'"
    )
    with engine.connect() as conn:
        return str(conn.exec_driver_sql(query).scalar_one())


def claim_plan(engine: Engine) -> str:
    """The plan of the claim's due-order scan (the autogenerate comparison above does not look
    at an index's WHERE clause: this does, through the planner)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT rowid FROM app_users WHERE next_due_at <= 5"
                " ORDER BY next_due_at LIMIT 100"
            ).all()
            return " ".join(str(r[-1]) for r in rows)
        conn.exec_driver_sql("SET enable_seqscan = off")  # an empty table: any index will do
        rows = conn.exec_driver_sql(
            "EXPLAIN SELECT ctid FROM app_users WHERE next_due_at <= 5"
            " ORDER BY next_due_at LIMIT 100 FOR UPDATE SKIP LOCKED"
        ).all()
        return " ".join(str(r[0]) for r in rows)


def check_partial_due_index(engine: Engine) -> None:
    migrate.upgrade(engine)
    assert "next_due_at IS NOT NULL" in due_index_sql(engine)
    assert "ix_app_users_next_due_at" in claim_plan(engine)
    migrate.downgrade(engine, "0010")  # back to the full index
    assert "IS NOT NULL" not in due_index_sql(engine)
    migrate.upgrade(engine)
    assert "next_due_at IS NOT NULL" in due_index_sql(engine)


def test_sqlite_due_index_is_partial_and_serves_the_claim(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        check_partial_due_index(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_due_index_is_partial_and_serves_the_claim(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        check_partial_due_index(engine)
    finally:
        engine.dispose()


def one_running_index_sql(engine: Engine) -> str:
    query = (
        "SELECT sql FROM sqlite_master WHERE name = 'ix_refreshes_one_running'"
        if engine.dialect.name == "sqlite"
        else "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_refreshes_one_running'"
    )
    with engine.connect() as conn:
        return str(conn.exec_driver_sql(query).scalar_one())


def check_one_running_refresh_per_app(engine: Engine) -> None:
    """The index is UNIQUE on appid for running refreshes only (the comparison with the models
    does not look at its WHERE clause): a second running refresh of an app is refused, any
    number of finished ones are not."""
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from miniport.storage import schema as t

    migrate.upgrade(engine)
    shown = one_running_index_sql(engine)
    assert "UNIQUE" in shown.upper() and "running" in shown and "WHERE" in shown.upper()

    def add(conn: Any, refresh_id: str, state: str) -> None:
        conn.execute(insert(t.refreshes).values(
            id=refresh_id, appid="wx1", state=state, started_at=1.0, total=0, done=0))

    with engine.begin() as conn:
        conn.execute(insert(t.apps).values(appid="wx1", name="a", secret="s", created_at=1.0))
        for n, state in enumerate(["done", "cancelled", "done", "running"]):
            add(conn, f"rf_{n}", state)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        add(conn, "rf_again", "running")


def test_sqlite_allows_one_running_refresh_per_app(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        check_one_running_refresh_per_app(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_allows_one_running_refresh_per_app(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        check_one_running_refresh_per_app(engine)
    finally:
        engine.dispose()


def _migrate_at_once(url: str, barrier: Any) -> str:
    engine = make_engine(url)
    try:
        barrier.wait(30)  # every process past its own imports: they migrate at one moment
        migrate.upgrade(engine)
        return str(migrate.current_revision(engine))
    finally:
        engine.dispose()


@pytest.mark.parametrize("start", [None, "0011"])
def test_processes_migrating_one_sqlite_file_at_once_all_succeed(
    tmp_path: Path, start: str | None
) -> None:
    """Commands started together on a new data directory, or on one whose database is a
    revision behind (an upgrade of the package), migrate one at a time: each ends at HEAD, none
    fails on a table or column another has just made (a CLI acceptance test saw that under
    load: Alembic commits SQLite's DDL between revisions, so the write lock alone did not keep
    two processes from running the same revision)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    url = f"sqlite:///{tmp_path / 'state.db'}"
    if start is not None:
        engine = make_engine(url)
        migrate.upgrade(engine, start)
        engine.dispose()
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(6, mp_context=ctx) as pool:
        barrier = manager.Barrier(6)
        results = list(pool.map(_migrate_at_once, [url] * 6, [barrier] * 6))
    assert results == [migrate.HEAD] * 6


def test_a_sqlite_migration_waits_for_the_migration_lock(tmp_path: Path) -> None:
    """Alembic commits SQLite's DDL after each revision (the write lock is let go in between),
    so the whole upgrade holds a file lock: while another process holds it, nothing migrates."""
    import fcntl
    import threading

    url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = make_engine(url)
    done = threading.Event()
    try:
        with open(f"{tmp_path / 'state.db'}.migrate.lock", "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)  # as another process migrating would
            worker = threading.Thread(target=lambda: (migrate.upgrade(engine), done.set()))
            worker.start()
            assert not done.wait(1.0)
            assert migrate.current_revision(engine) is None  # not a single revision ran
            fcntl.flock(held, fcntl.LOCK_UN)
        assert done.wait(30)
        worker.join(5)
        assert migrate.current_revision(engine) == migrate.HEAD
    finally:
        engine.dispose()


def test_sqlite_event_ids_are_not_given_again_after_0017(tmp_path: Path) -> None:
    """A database upgraded from 0016: the next event id is above every id still stored or
    published once (app code reports by id), not the highest row's id plus one."""
    import json

    from sqlalchemy import insert, select

    from miniport.storage import schema as t

    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        migrate.upgrade(engine, "0016")
        with engine.begin() as conn:
            conn.execute(insert(t.apps).values(appid="wx1", name="a", secret="s", created_at=1.0))
            conn.execute(
                insert(t.analytics_events).values(
                    id=2, appid="wx1", name="view", draft="{}", published="{}", updated_at=1.0
                )
            )
            published = {"version": 1, "fields": [], "events": [{"id": 2}, {"id": 7}]}
            conn.execute(
                insert(t.analytics_versions).values(
                    appid="wx1", version=1, config=json.dumps(published),
                    published_by="dev", published_at=1.0,
                )
            )  # fmt: skip
        migrate.upgrade(engine)
        assert differences(engine) == []
        with engine.begin() as conn:
            conn.execute(
                insert(t.analytics_events).values(
                    appid="wx1", name="refund", draft="{}", updated_at=2.0
                )
            )
            conn.execute(t.analytics_events.delete().where(t.analytics_events.c.name == "refund"))
            conn.execute(
                insert(t.analytics_events).values(
                    appid="wx1", name="sell", draft="{}", updated_at=3.0
                )
            )
            ev = t.analytics_events.c
            ids = dict(conn.execute(select(ev.name, ev.id)).all())
        assert ids == {"view": 2, "sell": 9}
    finally:
        engine.dispose()
