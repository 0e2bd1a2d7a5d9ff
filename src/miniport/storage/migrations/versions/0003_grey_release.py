"""grey release: a second URL and ratio per app and kind, testers, the route in the fetch log

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 20:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_testers",
        sa.Column("appid", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("added_by", sa.String(length=128), nullable=False),
        sa.Column("added_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["appid"], ["apps.appid"], name=op.f("fk_app_testers_appid_apps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("appid", "user_id", name=op.f("pk_app_testers")),
    )
    with op.batch_alter_table("fetch_urls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("grey_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("grey_ratio", sa.Integer(), nullable=True))
    with op.batch_alter_table("change_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ratio", sa.Integer(), nullable=True))
    with op.batch_alter_table("fetch_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("route", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fetch_log", schema=None) as batch_op:
        batch_op.drop_column("route")
    with op.batch_alter_table("change_requests", schema=None) as batch_op:
        batch_op.drop_column("ratio")
    with op.batch_alter_table("fetch_urls", schema=None) as batch_op:
        batch_op.drop_column("grey_ratio")
        batch_op.drop_column("grey_url")
    op.drop_table("app_testers")
