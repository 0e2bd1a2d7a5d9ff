"""pre-fetch effectiveness: one row per launch whose pre-fetched data a device read

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 21:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prefetch_launches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("appid", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("scene", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("ready", sa.Boolean(), nullable=False),
        sa.Column("ready_ms", sa.Float(), nullable=True),
        sa.Column("wait_ms", sa.Integer(), nullable=False),
        sa.Column("waited_ms", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["appid"],
            ["apps.appid"],
            name=op.f("fk_prefetch_launches_appid_apps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prefetch_launches")),
    )
    with op.batch_alter_table("prefetch_launches", schema=None) as batch_op:
        batch_op.create_index("ix_prefetch_launches_appid_ts", ["appid", "ts"], unique=False)


def downgrade() -> None:
    op.drop_table("prefetch_launches")
