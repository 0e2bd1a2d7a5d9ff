"""analytics event ids are never given twice on SQLite either

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 11:00:00

An event's numeric id is what app code passes to ``reportEvent(id, ...)``, built into app
versions that stay in users' hands for months. On SQLite ``analytics_events.id`` was a plain
``INTEGER PRIMARY KEY``: the row of an event deleted at a publish went, and the next event
created got the highest id again, so the old app versions' reports of the deleted event were
counted as the new one. ``AUTOINCREMENT`` never gives an id twice (PostgreSQL's sequence
never did); the counter starts above every id still in a table or in a published version.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "analytics_events", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass
    top = bind.execute(sa.text("SELECT coalesce(max(id), 0) FROM analytics_events")).scalar()
    for (config,) in bind.execute(sa.text("SELECT config FROM analytics_versions")):
        for event in json.loads(config).get("events", []):
            if isinstance(event.get("id"), int):
                top = max(top, event["id"])
    bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'analytics_events'"))
    bind.execute(
        sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('analytics_events', :top)"),
        {"top": top},
    )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "analytics_events", recreate="always", table_kwargs={"sqlite_autoincrement": False}
    ):
        pass
