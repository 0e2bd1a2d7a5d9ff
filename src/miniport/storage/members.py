"""App members: (appid, principal) -> role, with who added them; every change is audited with
its app."""

from __future__ import annotations

import json

from sqlalchemy import and_, delete, insert, select

from . import schema as t
from .db import Database, dialect_insert


class MemberStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, appid: str, principal: str, role: str, now: float, actor: str) -> None:
        with self.db.writing() as conn:
            # one upsert: a delete then an insert let two adds of one member at once both
            # insert (PostgreSQL), and the second failed on the key
            values = {"role": role, "added_at": now, "added_by": actor}
            conn.execute(
                dialect_insert(self.db.is_sqlite)(t.app_members)
                .values(appid=appid, principal=principal, **values)
                .on_conflict_do_update(index_elements=["appid", "principal"], set_=values)
            )
            self._audit(conn, now, actor, "member.add", appid, principal, role)

    def remove(self, appid: str, principal: str, now: float, actor: str) -> bool:
        c = t.app_members.c
        with self.db.writing() as conn:
            gone = conn.execute(
                delete(t.app_members).where(and_(c.appid == appid, c.principal == principal))
            ).rowcount
            if gone:
                self._audit(conn, now, actor, "member.remove", appid, principal, None)
        return bool(gone)

    def role_of(self, appid: str, principal: str) -> str | None:
        c = t.app_members.c
        with self.db.reading() as conn:
            row = conn.execute(
                select(c.role).where(and_(c.appid == appid, c.principal == principal))
            ).first()
        return str(row[0]) if row is not None else None

    def apps_of(self, principal: str) -> set[str]:
        c = t.app_members.c
        with self.db.reading() as conn:
            return {
                str(r[0]) for r in conn.execute(select(c.appid).where(c.principal == principal))
            }

    def list(self, appid: str) -> list[dict[str, object]]:
        c = t.app_members.c
        with self.db.reading() as conn:
            rows = conn.execute(
                select(c.principal, c.role, c.added_at, c.added_by)
                .where(c.appid == appid)
                .order_by(c.principal)
            )
            return [dict(r._mapping) for r in rows]

    @staticmethod
    def _audit(
        conn: object, now: float, actor: str, action: str, appid: str, who: str, role: str | None
    ) -> None:
        detail = {"principal": who, **({"role": role} if role else {})}
        conn.execute(  # type: ignore[attr-defined]
            insert(t.audit_log).values(
                ts=now, actor=actor, action=action, appid=appid, detail=json.dumps(detail)
            )
        )
