"""runtime-token revocations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runtime_revocations",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("before", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(length=160), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_runtime_revocations")),
    )


def downgrade() -> None:
    op.drop_table("runtime_revocations")
