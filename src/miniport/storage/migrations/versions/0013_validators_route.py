"""which of a kind's URLs (main | grey) each pair's stored validators came from

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 08:40:00

A periodic fetch sends the stored ETag / Last-Modified only to the URL that gave them: a user
moved between the main and the grey URL (a ratio change, a tester added or removed) would send
one URL's validators to the other, whose 304 kept the first URL's data. Rows stored before
this column have no route: their next fetch is a full one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("app_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("validators_route", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("app_users", schema=None) as batch_op:
        batch_op.drop_column("validators_route")
