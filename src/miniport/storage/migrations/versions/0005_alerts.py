"""alerts when a developer's server fails: settings, per-kind state, history

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["appid"], ["apps.appid"], name=op.f(f"fk_{table}_appid_apps"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "alert_settings",
        sa.Column("appid", sa.String(length=32), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("window_s", sa.Float(), nullable=False),
        sa.Column("min_fetches", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        _fk("alert_settings"),
        sa.PrimaryKeyConstraint("appid", name=op.f("pk_alert_settings")),
    )
    op.create_table(
        "alert_states",
        sa.Column("appid", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("failing", sa.Boolean(), nullable=False),
        sa.Column("since", sa.Float(), nullable=False),
        _fk("alert_states"),
        sa.PrimaryKeyConstraint("appid", "kind", name=op.f("pk_alert_states")),
    )
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("appid", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("success_rate", sa.Float(), nullable=True),
        sa.Column("fetches", sa.Integer(), nullable=False),
        sa.Column("cause", sa.Text(), nullable=True),
        sa.Column("delivery", sa.Text(), nullable=False),
        _fk("alert_events"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_events")),
    )
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.create_index("ix_alert_events_appid_ts", ["appid", "ts"], unique=False)


def downgrade() -> None:
    op.drop_table("alert_events")
    op.drop_table("alert_states")
    op.drop_table("alert_settings")
