"""Schema migrations with Alembic, run programmatically: every command upgrades the database
on start. When it is already at ``HEAD`` (the common case) one query says so and Alembic is not
even imported, which keeps CLI commands quick."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from ..errors import SchemaTooNew

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0018"  # the newest revision in migrations/versions (a test keeps the two in step)
# PostgreSQL advisory lock held while migrating: nodes starting together on one empty database
# migrate one at a time (the others then find it at HEAD) instead of racing on CREATE TABLE.
MIGRATION_LOCK = 0x6D696E69706F7274  # "miniport"
_REVISION = re.compile(r"\d{4}")  # the revisions' names: 0001, 0002, ...


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:  # no alembic_version table yet: an empty database
        return None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision``; a database at a revision this code does not know (a newer
    version made it) is left as it is: ``SchemaTooNew``."""
    if revision == "head" and known_revision(engine) == HEAD:
        return
    with _sqlite_file_lock(engine):
        # another process may have migrated while this one waited for the lock
        if known_revision(engine) == HEAD and revision == "head":
            return
        _upgrade(engine, revision)


def known_revision(engine: Engine) -> str | None:
    """The database's revision, one this code knows (or None: an empty database); Alembic
    would fail on any other with a traceback ("Can't locate revision")."""
    current = current_revision(engine)
    if current is None or (_REVISION.fullmatch(current) and current <= HEAD):
        return current
    newer = _REVISION.fullmatch(current)
    than = "newer than this version's" if newer else "unknown to this version, at"
    raise SchemaTooNew(
        f"the state database is at revision {current}, {than} {HEAD}: run the version that made it"
    )


@contextlib.contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock on ``<database>.migrate.lock`` while a SQLite file is migrated:
    commands started together on a new data directory migrate one at a time. (Alembic runs
    SQLite's DDL outside one transaction, so BEGIN IMMEDIATE alone let two processes both see
    the old revision and one fail on a column the other had just added.)"""
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:":
        yield
        return
    import fcntl

    with open(f"{path}.migrate.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _upgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    cfg = alembic_config(str(engine.url))
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        elif engine.dialect.name == "postgresql":  # released when the migration commits
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    cfg = alembic_config(str(engine.url))
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
        conn.commit()
