"""when each console user's password was set, so a one-time password can expire

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 09:10:00

A generated one-time password never expired: one pasted in a chat or an e-mail and never used
still took over the account months later. Sign-in now refuses a one-time password older than
``services.console_users.ONE_TIME_PASSWORD_TTL_S``, counted from this column. Rows from before
it have none: a user still holding a one-time password is then measured from ``created_at``
(the earliest it can have been set, so such a password expires no later than a new one would).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("console_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_set_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("console_users", schema=None) as batch_op:
        batch_op.drop_column("password_set_at")
