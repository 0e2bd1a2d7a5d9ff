"""State that every API node must see alike, kept in the state database: sealed confirmation
codes (for a pending change's QR code on any node) and failed console sign-ins (one throttle per
account across nodes). Rows past their time are pruned as new ones are written."""

from __future__ import annotations

from sqlalchemy import and_, delete, func, insert, select, update

from . import schema as t
from .db import Database


class SharedStateStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- sealed confirmation codes ---
    def put_code(self, change_id: str, sealed: str, expires_at: float, now: float) -> None:
        c = t.sealed_codes.c
        with self.db.writing() as conn:
            conn.execute(delete(t.sealed_codes).where(c.expires_at < now))
            conn.execute(delete(t.sealed_codes).where(c.change_id == change_id))
            conn.execute(
                insert(t.sealed_codes).values(
                    change_id=change_id, sealed=sealed, expires_at=expires_at
                )
            )

    def get_code(self, change_id: str, now: float) -> str | None:
        c = t.sealed_codes.c
        with self.db.reading() as conn:
            row = conn.execute(
                select(c.sealed).where(and_(c.change_id == change_id, c.expires_at >= now))
            ).first()
        return str(row[0]) if row is not None else None

    def all_codes(self) -> list[tuple[str, str]]:
        c = t.sealed_codes.c
        with self.db.reading() as conn:
            return [(str(r[0]), str(r[1])) for r in conn.execute(select(c.change_id, c.sealed))]

    def reseal_codes(self, resealed: list[tuple[str, str, str]]) -> int:
        """(change id, what was read, what replaces it): a code written again meanwhile is
        left as it is now. Returns how many were replaced."""
        c = t.sealed_codes.c
        replaced = 0
        with self.db.writing() as conn:
            for change_id, was, sealed in resealed:
                replaced += conn.execute(
                    update(t.sealed_codes)
                    .where(c.change_id == change_id, c.sealed == was)
                    .values(sealed=sealed)
                ).rowcount
        return replaced

    # --- failed sign-ins ---
    def add_failure(self, keys: list[str], now: float, window_s: float) -> None:
        """One failed sign-in, counted under each of ``keys`` (its name's, its address's)."""
        c = t.signin_failures.c
        with self.db.writing() as conn:
            conn.execute(delete(t.signin_failures).where(c.ts < now - window_s))
            conn.execute(insert(t.signin_failures), [{"name_key": k, "ts": now} for k in keys])

    def failures(self, name_key: str, since: float) -> int:
        c = t.signin_failures.c
        with self.db.reading() as conn:
            count = conn.execute(
                select(func.count()).where(and_(c.name_key == name_key, c.ts >= since))
            ).scalar_one()
        return int(count)

    def clear_failures(self, name_key: str) -> None:
        with self.db.writing() as conn:
            conn.execute(delete(t.signin_failures).where(t.signin_failures.c.name_key == name_key))
