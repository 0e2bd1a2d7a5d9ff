"""Console users and their sign-in sessions in the state database (``console_users``,
``console_sessions``).

- A user's name is unique: creating a taken name raises ``Conflict`` from the database's own
  unique key (no read before the insert), so concurrent creates give one user and one 409.
- The last active admin can be neither demoted nor disabled (checked inside the write
  transaction that would do it).
- Sessions are kept by the SHA-256 of their token (``id_hash``), never the token itself; an
  expired session, or one of a disabled user, is not found.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update

from ..domain.roles import Principal
from ..errors import Conflict, NotFound
from . import schema as t
from .db import Database, conflict_on_duplicate


@dataclass(frozen=True)
class ConsoleUser:
    name: str
    role: str
    created_at: float
    disabled: bool
    must_change_password: bool
    # when the password was set; None on rows from before migration 0014
    password_set_at: float | None = None

    @property
    def principal(self) -> Principal:
        return Principal(self.name, self.role)

    def can(self, role: str) -> bool:
        return self.principal.can(role)


@dataclass(frozen=True)
class Session:
    id_hash: str
    user: ConsoleUser
    csrf: str
    expires_at: float


def _user(row: Any) -> ConsoleUser:
    return ConsoleUser(
        row.name,
        row.role,
        row.created_at,
        bool(row.disabled),
        bool(row.must_change_password),
        row.password_set_at,
    )


class UserStore:
    """The SQL (sync, run through ``Database.read`` / ``Database.write``). Every change is
    written to the audit log in the same transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _audit(conn: Any, now: float, actor: str, action: str, **detail: Any) -> None:
        conn.execute(
            insert(t.audit_log).values(
                ts=now, actor=actor, action=action, appid=None, detail=json.dumps(detail)
            )
        )

    def create_user(
        self, name: str, role: str, password_hash: str, now: float, must_change: bool, actor: str
    ) -> ConsoleUser:
        taken = f"a console user named {name!r} already exists"
        with conflict_on_duplicate(taken), self.db.writing() as conn:
            c = t.console_users.c
            if conn.dialect.name == "postgresql":
                # creates one at a time: two twins created at once ("Erin" and "erin") would
                # each find no twin (neither sees the other's row) and both be made. Reads
                # and other writes go on (SHARE ROW EXCLUSIVE conflicts only with writes of
                # rows, and itself); SQLite has one writer at a time anyway
                conn.exec_driver_sql("LOCK TABLE console_users IN SHARE ROW EXCLUSIVE MODE")
            twin = conn.execute(
                select(c.name)
                .where(and_(func.lower(c.name) == name.lower(), c.name != name))
                .limit(1)
            ).scalar()
            if twin is not None:  # "Alice" beside "alice": two accounts one reads as one
                raise Conflict(f"a console user named {twin!r} already exists (names differ "
                               "only in case); choose another name")
            conn.execute(
                insert(t.console_users).values(
                    name=name,
                    role=role,
                    password_hash=password_hash,
                    created_at=now,
                    disabled=False,
                    must_change_password=must_change,
                    password_set_at=now,
                )
            )
            self._audit(conn, now, actor, "console_user.create", name=name, role=role)
        return ConsoleUser(name, role, now, False, must_change, now)

    def get_user(self, name: str) -> tuple[ConsoleUser, str] | None:
        with self.db.reading() as conn:
            row = conn.execute(
                select(t.console_users).where(t.console_users.c.name == name)
            ).first()
        return (_user(row), str(row.password_hash)) if row is not None else None

    def list_users(self) -> list[ConsoleUser]:
        with self.db.reading() as conn:
            rows = conn.execute(select(t.console_users).order_by(t.console_users.c.name)).all()
        return [_user(r) for r in rows]

    def update_user(
        self,
        name: str,
        values: dict[str, Any],
        now: float,
        actor: str,
        action: str,
        end_sessions: bool = False,
        keep_session: str | None = None,
        **detail: Any,
    ) -> ConsoleUser:
        c = t.console_users.c
        with self.db.writing() as conn:
            row = conn.execute(select(t.console_users).where(c.name == name)).first()
            if row is None:
                raise NotFound(f"console user {name!r} not found")
            demoted = values.get("role", row.role) != "admin" or values.get("disabled") is True
            if row.role == "admin" and not row.disabled and demoted:
                # the active admins locked (PostgreSQL; SQLite writes one at a time), in name
                # order: two admins demoting each other at once each counted two and both
                # committed, leaving none. The second now waits, then counts one.
                admins = conn.execute(
                    select(c.name)
                    .where(and_(c.role == "admin", c.disabled.is_(False)))
                    .order_by(c.name)
                    .with_for_update()
                ).all()
                if len(admins) <= 1:
                    raise Conflict("this is the last active admin; make another admin first")
            conn.execute(update(t.console_users).where(c.name == name).values(**values))
            if end_sessions:
                s = t.console_sessions.c
                cond = s.user_name == name
                if keep_session is not None:
                    cond = and_(cond, s.id_hash != keep_session)
                conn.execute(delete(t.console_sessions).where(cond))
            self._audit(conn, now, actor, action, name=name, **detail)
            updated = conn.execute(select(t.console_users).where(c.name == name)).one()
        return _user(updated)

    def create_session(
        self, id_hash: str, name: str, csrf: str, now: float, expires_at: float
    ) -> None:
        with self.db.writing() as conn:
            conn.execute(delete(t.console_sessions).where(t.console_sessions.c.expires_at < now))
            conn.execute(
                insert(t.console_sessions).values(
                    id_hash=id_hash,
                    user_name=name,
                    csrf=csrf,
                    created_at=now,
                    expires_at=expires_at,
                )
            )

    def get_session(self, id_hash: str, now: float) -> Session | None:
        s, u = t.console_sessions.c, t.console_users
        with self.db.reading() as conn:
            row = conn.execute(
                select(s.id_hash, s.csrf, s.expires_at, u)
                .join(u, u.c.name == s.user_name)
                .where(s.id_hash == id_hash)
            ).first()
        if row is None or row.expires_at < now or row.disabled:
            return None
        return Session(row.id_hash, _user(row), row.csrf, row.expires_at)

    def delete_session(self, id_hash: str) -> None:
        with self.db.writing() as conn:
            conn.execute(delete(t.console_sessions).where(t.console_sessions.c.id_hash == id_hash))
