"""the mini-program version and environment of each user's last launch (for periodic requests)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 21:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("app_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("env_version", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("app_users", schema=None) as batch_op:
        batch_op.drop_column("env_version")
        batch_op.drop_column("version")
