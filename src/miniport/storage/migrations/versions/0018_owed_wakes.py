"""a periodic change's wake is recorded until done, so a restart resumes it

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 15:30:00

A confirmed change of a periodic URL makes the users it moves due at once, in chunks of 5,000
after the change is committed. A process stopped (a deploy, a crash) or a database error in
the middle left the rest of a grey ramp on their old schedule, fetched from the new URL only
at their regular time, up to 12 hours later. The change now records the wake it owes and how
far it got; the scheduler resumes a wake that has not moved on for a minute.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("change_requests", sa.Column("wake_from", sa.String(128), nullable=True))
    op.add_column("change_requests", sa.Column("wake_at", sa.Float(), nullable=True))
    op.add_column("change_requests", sa.Column("wake_urls", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("change_requests") as batch:
        batch.drop_column("wake_urls")
        batch.drop_column("wake_at")
        batch.drop_column("wake_from")
