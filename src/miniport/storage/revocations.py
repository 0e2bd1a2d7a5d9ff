"""Revocations: runtime tokens of a user issued before a time (an append-only log read
incrementally by every API node), and admin API keys by name."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import and_, insert, or_, select, update

from . import schema as t
from .db import Database


class RevocationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def revoke_runtime(self, user_id: str, before: float, now: float, actor: str) -> None:
        with self.db.writing() as conn:
            conn.execute(
                insert(t.runtime_revocations).values(
                    user_id=user_id, before=before, revoked_at=now, actor=actor
                )
            )
            conn.execute(
                insert(t.audit_log).values(
                    ts=now,
                    actor=actor,
                    action="runtime_tokens.revoke",
                    appid=None,
                    detail=json.dumps({"user_id": user_id, "before": before}),
                )
            )

    def runtime_since(
        self, seq: int, missing: Sequence[int] = ()
    ) -> list[tuple[int, str, float]]:
        """Revocations past ``seq``, and those numbered ``missing``: (seq, user_id, before),
        oldest first."""
        c = t.runtime_revocations.c
        wanted = or_(c.seq > seq, c.seq.in_(list(missing))) if missing else c.seq > seq
        with self.db.reading() as conn:
            rows = conn.execute(
                select(c.seq, c.user_id, c.before).where(wanted).order_by(c.seq)
            ).all()
        return [(int(r[0]), str(r[1]), float(r[2])) for r in rows]

    def revoke_key(self, table: str, name: str, now: float, actor: str) -> list[str]:
        """Revoke every live key of that name; their roles (empty when there was none)."""
        tbl = t.host_keys if table == "host" else t.api_keys
        live = and_(tbl.c.name == name, tbl.c.revoked_at.is_(None))
        with self.db.writing() as conn:
            roles = [
                str(getattr(r, "role", "") or "")
                for r in conn.execute(select(tbl).where(live)).all()
            ]
            if roles:
                conn.execute(update(tbl).where(live).values(revoked_at=now))
                conn.execute(
                    insert(t.audit_log).values(
                        ts=now,
                        actor=actor,
                        action=f"{table}_key.revoke",
                        appid=None,
                        detail=json.dumps({"name": name, "keys": len(roles)}),
                    )
                )
        return roles
