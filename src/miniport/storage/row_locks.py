"""The one order in which PostgreSQL write transactions take the row locks of the fetch state,
so that two transactions writing several rows each wait for one another at most, never
deadlock: first ``app_users`` rows (pairs) in key order, then ``fetched_data`` rows in key order,
then ``bodies`` rows in hash order. Key order is byte order (``COLLATE "C"``: Python's order of
``str``, in which the batches sort their rows), whatever the database's collation: the
primary-key indexes are in the database's, so no statement may rely on meeting rows in index
order.

A statement writing many rows locks them in the order its plan meets them (physical order for
a sequential scan), and a transaction of several statements locks statement by statement (a
second pass goes back to lower keys while holding higher ones); triggers lock too (a
``fetched_data`` row replaced or deleted unreferences its body, migration 0002). So a
transaction that writes several rows of these tables locks them first, in order, with one
``SELECT ... ORDER BY ... FOR UPDATE`` per table (the helpers below, or the batches' own in
storage/fetches.py), and its writes then wait for no one. The locks cover every row the writes
may touch (the stable part of their conditions: the app, its listed users or the refresh's), as
one locked only when it matched could come to match before the write.

Not covered: rows that do not exist yet (an insert waits only for another insert of the same
key), and claims, which never wait (``FOR UPDATE SKIP LOCKED``). SQLite has one writer at a time
and no row locks: the helpers do nothing there.

Per-app settings rows (alerts, fetch settings, built-in events) are changed through
:func:`held_app_row`: made when missing, then held while the change is read and written."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, Table, func, select

from . import schema as t
from .db import dialect_insert


def lock_pairs(conn: Connection, *where: Any) -> None:
    """PostgreSQL: lock the ``app_users`` rows matching ``where``, in key order."""
    if conn.dialect.name != "postgresql":
        return
    c = t.app_users.c
    order = (c.appid.collate("C"), c.user_id.collate("C"))
    _lock(conn, t.app_users, select(c.appid).where(*where).order_by(*order))


def lock_data(conn: Connection, *where: Any) -> None:
    """PostgreSQL: lock the ``fetched_data`` rows matching ``where`` (key order), then the
    bodies they name (hash order), before deleting or replacing them: the trigger would
    otherwise lock those bodies in row order, after the rows."""
    if conn.dialect.name != "postgresql":
        return
    f, b = t.fetched_data.c, t.bodies.c
    key = (f.appid.collate("C"), f.user_id.collate("C"), f.kind.collate("C"))
    _lock(conn, t.fetched_data, select(f.appid).where(*where).order_by(*key))
    named = select(f.body_hash).where(*where)
    _lock(conn, t.bodies, select(b.hash).where(b.hash.in_(named)).order_by(b.hash.collate("C")))


def _lock(conn: Connection, table: Table, rows: Select[Any]) -> None:
    """``table``'s rows of the query locked in its order (each as it leaves the sort: the plan
    is LockRows over Sort), counted on the server rather than sent back."""
    locked = rows.with_for_update(of=table).subquery()
    conn.execute(select(func.count()).select_from(locked))


def held_app_row(
    conn: Connection, table: Table, appid: str, made: dict[str, Any]
) -> dict[str, Any]:
    """The app's row of a per-app settings ``table``, made with ``made`` when it has none,
    and held (PostgreSQL) until the transaction ends: a change read from it and written back
    in that transaction is applied after any other under way. (Read outside, then replaced
    whole, two changes at once lost one; a delete then an insert was a unique-key 500 for
    the second of two first writes.)"""
    is_sqlite = conn.dialect.name == "sqlite"
    conn.execute(
        dialect_insert(is_sqlite)(table)
        .values(appid=appid, **made)
        .on_conflict_do_nothing(index_elements=["appid"])
    )
    row = conn.execute(select(table).where(table.c.appid == appid).with_for_update()).one()
    return dict(row._mapping)
