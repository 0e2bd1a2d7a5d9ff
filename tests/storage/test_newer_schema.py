"""A database a newer version made (its schema revision unknown here) is refused in one line
that says what to do, and left as it is: the state database crashed every command with
Alembic's "Can't locate revision" traceback, the events store with a bare RuntimeError."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from sqlalchemy import text

from miniport.analytics.event_store import SCHEMA_VERSION, DuckDBEventStore
from miniport.errors import MiniportError
from miniport.storage import migrate
from miniport.storage.db import make_engine

NEWER = f"{int(migrate.HEAD) + 1:04d}"


def _state_at(path: Path, revision: str) -> None:
    engine = make_engine(f"sqlite:///{path}")
    try:
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("revision", "said"),
    [
        (NEWER, f"revision {NEWER}, newer than this version's {migrate.HEAD}"),
        ("f00dcafe", f"revision f00dcafe, unknown to this version, at {migrate.HEAD}"),
    ],
)
def test_a_state_database_at_a_newer_revision_is_refused_and_left_as_it_is(
    tmp_path: Path, revision: str, said: str
) -> None:
    _state_at(tmp_path / "state.db", revision)
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        with pytest.raises(MiniportError) as refused:
            migrate.upgrade(engine)
        assert refused.value.code == "schema_too_new"
        assert refused.value.message == (
            f"the state database is at {said}: run the version that made it"
        )
        assert migrate.current_revision(engine) == revision
    finally:
        engine.dispose()


def test_an_events_store_at_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    DuckDBEventStore(path).close()
    newer = str(int(SCHEMA_VERSION) + 1)
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE miniport_meta SET value = ? WHERE key = 'schema_version'", [newer])
    with pytest.raises(MiniportError) as refused:
        DuckDBEventStore(path)
    assert refused.value.code == "schema_too_new"
    assert refused.value.message == (
        f"the events database {path} is at schema version {newer}, newer than this version's "
        f"{SCHEMA_VERSION}: run the version that made it"
    )
    with duckdb.connect(str(path)) as con:
        assert con.execute("SELECT value FROM miniport_meta").fetchall() == [(newer,)]
