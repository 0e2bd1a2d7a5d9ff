"""per-app fetch settings: interval, active days, timeout, sealed request headers

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 20:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_settings",
        sa.Column("appid", sa.String(length=32), nullable=False),
        sa.Column("interval_s", sa.Float(), nullable=True),
        sa.Column("active_days", sa.Integer(), nullable=True),
        sa.Column("timeout_s", sa.Float(), nullable=True),
        sa.Column("headers", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["appid"], ["apps.appid"], name=op.f("fk_app_settings_appid_apps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("appid", name=op.f("pk_app_settings")),
    )


def downgrade() -> None:
    op.drop_table("app_settings")
