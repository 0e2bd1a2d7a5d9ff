"""per-app analytics settings: built-in events on or off

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 00:25:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "analytics_settings",
        sa.Column("appid", sa.String(length=32), nullable=False),
        sa.Column("builtin_events", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(length=160), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["appid"],
            ["apps.appid"],
            name=op.f("fk_analytics_settings_appid_apps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("appid", name=op.f("pk_analytics_settings")),
    )


def downgrade() -> None:
    op.drop_table("analytics_settings")
