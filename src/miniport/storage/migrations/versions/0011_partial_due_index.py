"""the due index holds only pairs that are due (next_due_at set)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 02:00:00

Parked pairs (users who stopped launching, pre-fetch-only apps, token-less pairs after their one
logged attempt) have no due time and are never claimed, but the full index held an entry for
each of them: most of a large app's users, once they go idle. The partial index matches the
claim's and the idle poll's predicate (``next_due_at <= now`` implies it on both databases) and
parking a pair writes no entry into it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

DUE = sa.text("next_due_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("app_users", schema=None) as batch_op:
        batch_op.drop_index("ix_app_users_next_due_at")
        batch_op.create_index(
            "ix_app_users_next_due_at",
            ["next_due_at"],
            unique=False,
            sqlite_where=DUE,
            postgresql_where=DUE,
        )


def downgrade() -> None:
    with op.batch_alter_table("app_users", schema=None) as batch_op:
        batch_op.drop_index("ix_app_users_next_due_at")
        batch_op.create_index("ix_app_users_next_due_at", ["next_due_at"], unique=False)
