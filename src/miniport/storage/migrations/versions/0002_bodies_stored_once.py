"""bodies stored once: fetched_data references a content-addressed, reference-counted body

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 20:25:00

Existing bodies are moved into ``bodies`` (one row per distinct text, its references counted);
triggers keep ``refs`` right when a row's body_hash is replaced or a row is deleted (also by a
cascade) and delete a body at zero references.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import Counter

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_SQLITE_TRIGGERS = [
    """CREATE TRIGGER fetched_data_body_replaced AFTER UPDATE OF body_hash ON fetched_data
    BEGIN
        UPDATE bodies SET refs = refs - 1 WHERE hash = OLD.body_hash;
        DELETE FROM bodies WHERE hash = OLD.body_hash AND refs <= 0;
    END""",
    """CREATE TRIGGER fetched_data_body_deleted AFTER DELETE ON fetched_data
    BEGIN
        UPDATE bodies SET refs = refs - 1 WHERE hash = OLD.body_hash;
        DELETE FROM bodies WHERE hash = OLD.body_hash AND refs <= 0;
    END""",
]

_POSTGRES_TRIGGERS = [
    """CREATE FUNCTION miniport_body_unref() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE bodies SET refs = refs - 1 WHERE hash = OLD.body_hash;
        DELETE FROM bodies WHERE hash = OLD.body_hash AND refs <= 0;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER fetched_data_body_unref AFTER UPDATE OF body_hash OR DELETE
    ON fetched_data FOR EACH ROW EXECUTE FUNCTION miniport_body_unref()""",
]

_DROP_SQLITE = [
    "DROP TRIGGER IF EXISTS fetched_data_body_replaced",
    "DROP TRIGGER IF EXISTS fetched_data_body_deleted",
]
_DROP_POSTGRES = [
    "DROP TRIGGER IF EXISTS fetched_data_body_unref ON fetched_data",
    "DROP FUNCTION IF EXISTS miniport_body_unref()",
]

_data = sa.table(
    "fetched_data",
    sa.column("appid", sa.String),
    sa.column("user_id", sa.String),
    sa.column("kind", sa.String),
    sa.column("body", sa.Text),
    sa.column("body_hash", sa.String),
)
_bodies = sa.table(
    "bodies",
    sa.column("hash", sa.String),
    sa.column("body", sa.LargeBinary),
    sa.column("refs", sa.Integer),
)


def _is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _move_bodies_out() -> None:
    conn = op.get_bind()
    texts: dict[str, str] = {}
    refs: Counter[str] = Counter()
    update = (
        sa.update(_data)
        .where(
            _data.c.appid == sa.bindparam("k_appid"),
            _data.c.user_id == sa.bindparam("k_user"),
            _data.c.kind == sa.bindparam("k_kind"),
        )
        .values(body_hash=sa.bindparam("h"))
    )
    rows = conn.execute(sa.select(_data.c.appid, _data.c.user_id, _data.c.kind, _data.c.body))
    changes = []
    for appid, user_id, kind, body in rows.all():
        digest = hashlib.sha256(body.encode()).hexdigest()
        texts[digest] = body
        refs[digest] += 1
        changes.append({"k_appid": appid, "k_user": user_id, "k_kind": kind, "h": digest})
    if changes:
        conn.execute(update, changes)
        conn.execute(
            sa.insert(_bodies),
            [
                {"hash": h, "body": zlib.compress(text.encode(), 1), "refs": refs[h]}
                for h, text in texts.items()
            ],
        )


def upgrade() -> None:
    op.create_table(
        "bodies",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("refs", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_bodies")),
    )
    with op.batch_alter_table("fetched_data", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body_hash", sa.String(length=64), nullable=True))
    _move_bodies_out()
    with op.batch_alter_table("fetched_data", schema=None) as batch_op:
        batch_op.alter_column("body_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_column("body")
    for statement in _SQLITE_TRIGGERS if _is_sqlite() else _POSTGRES_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DROP_SQLITE if _is_sqlite() else _DROP_POSTGRES:
        op.execute(statement)
    with op.batch_alter_table("fetched_data", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body", sa.Text(), nullable=True))
    conn = op.get_bind()
    texts = {
        h: zlib.decompress(blob).decode()
        for h, blob in conn.execute(sa.select(_bodies.c.hash, _bodies.c.body)).all()
    }
    changes = [{"h": h, "b": text} for h, text in texts.items()]
    if changes:
        conn.execute(
            sa.update(_data)
            .where(_data.c.body_hash == sa.bindparam("h"))
            .values(body=sa.bindparam("b")),
            changes,
        )
    with op.batch_alter_table("fetched_data", schema=None) as batch_op:
        batch_op.alter_column("body", existing_type=sa.Text(), nullable=False)
        batch_op.drop_column("body_hash")
    op.drop_table("bodies")
