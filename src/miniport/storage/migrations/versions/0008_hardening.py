"""hardening: runtime-token revocations, sealed confirmation codes, shared sign-in throttle,
app members

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runtime_revocations",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("before", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(length=160), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_runtime_revocations")),
    )
    op.create_table(
        "sealed_codes",
        sa.Column("change_id", sa.String(length=32), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["change_id"],
            ["change_requests.id"],
            name=op.f("fk_sealed_codes_change_id_change_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("change_id", name=op.f("pk_sealed_codes")),
    )
    op.create_table(
        "signin_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name_key", sa.String(length=160), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signin_failures")),
    )
    op.create_index(
        "ix_signin_failures_name_key_ts", "signin_failures", ["name_key", "ts"], unique=False
    )


    op.create_table(
        "app_members",
        sa.Column("appid", sa.String(length=32), nullable=False),
        sa.Column("principal", sa.String(length=160), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("added_at", sa.Float(), nullable=False),
        sa.Column("added_by", sa.String(length=160), nullable=False),
        sa.ForeignKeyConstraint(
            ["appid"], ["apps.appid"], name=op.f("fk_app_members_appid_apps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("appid", "principal", name=op.f("pk_app_members")),
    )
    op.create_index("ix_app_members_principal", "app_members", ["principal"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_app_members_principal", table_name="app_members")
    op.drop_table("app_members")
    op.drop_index("ix_signin_failures_name_key_ts", table_name="signin_failures")
    op.drop_table("signin_failures")
    op.drop_table("sealed_codes")
    op.drop_table("runtime_revocations")
