"""refreshes from the developer's back end, in the state database

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 10:00:00

Refreshes were kept in the memory of the process that started one: behind a load balancer the
progress or cancel of a refresh started on another API node answered 404, "at most one running
refresh per app" held per node only, and a restart forgot every refresh. They are rows now;
``refresh_users`` holds the users of the running ones. The partial unique index lets at most
one refresh per app be running, whichever node starts it: of two starts at once on PostgreSQL,
the second insert waits for the first and fails on the key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

RUNNING = sa.text("state = 'running'")


def upgrade() -> None:
    op.create_table(
        "refreshes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("appid", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["appid"], ["apps.appid"], name=op.f("fk_refreshes_appid_apps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refreshes")),
    )
    with op.batch_alter_table("refreshes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_refreshes_one_running",
            ["appid"],
            unique=True,
            sqlite_where=RUNNING,
            postgresql_where=RUNNING,
        )
        batch_op.create_index(
            "ix_refreshes_appid_started_at", ["appid", "started_at"], unique=False
        )
        batch_op.create_index("ix_refreshes_finished_at", ["finished_at"], unique=False)
    op.create_table(
        "refresh_users",
        sa.Column("refresh_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["refresh_id"],
            ["refreshes.id"],
            name=op.f("fk_refresh_users_refresh_id_refreshes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("refresh_id", "user_id", name=op.f("pk_refresh_users")),
    )


def downgrade() -> None:
    op.drop_table("refresh_users")
    op.drop_table("refreshes")
