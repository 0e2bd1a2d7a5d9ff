"""analytics fields: a pending type change per field, and each retyped field's parts

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 02:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("analytics_fields") as batch:
        batch.add_column(sa.Column("pending_type", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("pending_slot", sa.Integer(), nullable=True))
    op.create_table(
        "analytics_field_parts",
        sa.Column("appid", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=8), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("since_ms", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["appid"],
            ["apps.appid"],
            name=op.f("fk_analytics_field_parts_appid_apps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("appid", "name", "seq", name=op.f("pk_analytics_field_parts")),
    )


def downgrade() -> None:
    op.drop_table("analytics_field_parts")
    with op.batch_alter_table("analytics_fields") as batch:
        batch.drop_column("pending_slot")
        batch.drop_column("pending_type")
