"""The server key ring, kept in the state database's ``kv`` table:

- ``server_key``: signs runtime tokens and seals login codes and confirmation codes;
- ``server_key_previous``: the key before the last rotation, kept only to check what it signed
  or sealed (runtime tokens stay valid till they expire; sealed rows are re-sealed at rotation);
- ``openid_key``: derives openids. Pinned to the first server key at the first rotation, since an
  openid must never change for a developer.

A rotation happens in one transaction, so every node reading the ring sees the old ring or the
new one, never half of each."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, insert, select

from . import schema as t
from .db import Database


@dataclass(frozen=True)
class KeyRing:
    current: bytes
    previous: bytes | None
    openid: bytes


def _values(conn: object) -> dict[str, bytes]:
    rows = conn.execute(select(t.kv.c.key, t.kv.c.value))  # type: ignore[attr-defined]
    names = ("server_key", "server_key_previous", "openid_key")
    return {str(k): base64.b64decode(v) for k, v in rows if k in names}


def _set(conn: object, name: str, value: bytes) -> None:
    conn.execute(delete(t.kv).where(t.kv.c.key == name))  # type: ignore[attr-defined]
    conn.execute(  # type: ignore[attr-defined]
        insert(t.kv).values(key=name, value=base64.b64encode(value).decode())
    )


def _load(conn: object) -> KeyRing:
    values = _values(conn)
    if "server_key" not in values:
        values["server_key"] = secrets.token_bytes(32)
        _set(conn, "server_key", values["server_key"])
    current = values["server_key"]
    return KeyRing(current, values.get("server_key_previous"), values.get("openid_key", current))


def load(db: Database) -> KeyRing:
    """The ring, making the first server key on a new database."""
    with db.writing() as conn:
        return _load(conn)


def rotate(db: Database) -> tuple[KeyRing, KeyRing]:
    """A new server key; the old one becomes the previous key. Returns (old ring, new ring)."""
    with db.writing() as conn:
        old = _load(conn)
        new = KeyRing(secrets.token_bytes(32), old.current, old.openid)
        _set(conn, "openid_key", new.openid)
        _set(conn, "server_key_previous", old.current)
        _set(conn, "server_key", new.current)
    return old, new
