"""Alert settings, each kind's alert state and the alert history of an app.

Invariant: ``record_change`` moves a kind's state and appends its history row in one
transaction, and only if the stored state is still the one the check saw, so two checkers
never send one change twice."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import and_, func, insert, select, update

from . import schema as t
from .db import Database
from .registry import RegistryStore
from .row_locks import held_app_row


class AlertStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def settings(self, appid: str | None = None) -> list[dict[str, Any]]:
        query = select(t.alert_settings)
        if appid is not None:
            query = query.where(t.alert_settings.c.appid == appid)
        with self.db.reading() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def change_settings(
        self,
        appid: str,
        merged: Callable[[dict[str, Any]], dict[str, Any]],
        defaults: dict[str, Any],
        now: float,
        actor: str,
    ) -> None:
        """Set the app's settings to ``merged(current)`` (``defaults`` for an app with none),
        audited (``alerts.configure``: what changed, and the webhook's host only: its path may
        be its credential), in one transaction holding the app's row: two changes at once are
        applied one after the other. (A delete then an insert was a unique-key 500 for the
        second of two first settings on PostgreSQL.)"""
        c = t.alert_settings.c
        with self.db.writing() as conn:
            row = held_app_row(conn, t.alert_settings, appid, {"updated_at": now, **defaults})
            before = {k: row[k] for k in defaults}
            values = merged(before)
            conn.execute(
                update(t.alert_settings).where(c.appid == appid).values(updated_at=now, **values)
            )
            webhook = values["webhook_url"]
            RegistryStore._audit(
                conn, now, actor, "alerts.configure", appid,
                changed=sorted(k for k, v in values.items() if before[k] != v),
                webhook_host=urlsplit(webhook).netloc if webhook else None,
            )  # fmt: skip

    def states(self, appid: str) -> dict[str, bool]:
        c = t.alert_states.c
        with self.db.reading() as conn:
            rows = conn.execute(select(c.kind, c.failing).where(c.appid == appid)).all()
        return {kind: bool(failing) for kind, failing in rows}

    def window(self, appid: str, since: float) -> dict[str, dict[tuple[str, int | None], int]]:
        """Per kind: fetch counts by (verdict, status) since ``since``."""
        c = t.fetch_log.c
        with self.db.reading() as conn:
            rows = conn.execute(
                select(c.kind, c.verdict, c.status, func.count())
                .where(and_(c.appid == appid, c.ts >= since))
                .group_by(c.kind, c.verdict, c.status)
            ).all()
        out: dict[str, dict[tuple[str, int | None], int]] = {}
        for kind, verdict, status, count in rows:
            out.setdefault(kind, {})[(verdict, status)] = int(count)
        return out

    def record_change(self, appid: str, kind: str, failing: bool, event: dict[str, Any]) -> bool:
        """Move the state (False when another checker already did) and keep the event."""
        c = t.alert_states.c
        with self.db.writing() as conn:
            moved = conn.execute(
                update(t.alert_states)
                .where(and_(c.appid == appid, c.kind == kind, c.failing == (not failing)))
                .values(failing=failing, since=event["ts"])
            ).rowcount
            if not moved:
                known = conn.execute(
                    select(c.failing).where(and_(c.appid == appid, c.kind == kind))
                ).first()
                if known is not None:
                    return False
                conn.execute(
                    insert(t.alert_states).values(
                        appid=appid, kind=kind, failing=failing, since=event["ts"]
                    )
                )
            conn.execute(
                insert(t.alert_events).values(appid=appid, kind=kind, delivery="{}", **event)
            )
            return True

    def set_delivery(self, appid: str, ts: float, kind: str, delivery: dict[str, str]) -> None:
        c = t.alert_events.c
        with self.db.writing() as conn:
            conn.execute(
                update(t.alert_events)
                .where(and_(c.appid == appid, c.kind == kind, c.ts == ts))
                .values(delivery=json.dumps(delivery))
            )

    def latest_events(self, appid: str) -> list[dict[str, Any]]:
        """The newest alert of each kind of the app (only those are ever sent again)."""
        c = t.alert_events.c
        newest = (
            select(func.max(c.id)).where(c.appid == appid).group_by(c.kind).scalar_subquery()
        )
        with self.db.reading() as conn:
            rows = conn.execute(select(t.alert_events).where(c.id.in_(newest))).all()
        return [dict(r._mapping) for r in rows]

    def claim_retry(self, event_id: int, seen: str, claimed: str) -> bool:
        """Mark an alert as being sent again (its delivery, as read, becomes ``claimed``);
        False when another checker got there first (the delivery changed since)."""
        c = t.alert_events.c
        with self.db.writing() as conn:
            return bool(
                conn.execute(
                    update(t.alert_events)
                    .where(and_(c.id == event_id, c.delivery == seen))
                    .values(delivery=claimed)
                ).rowcount
            )

    def history(self, appid: str, limit: int = 100) -> list[dict[str, Any]]:
        c = t.alert_events.c
        with self.db.reading() as conn:
            rows = conn.execute(
                select(t.alert_events).where(c.appid == appid).order_by(c.id.desc()).limit(limit)
            ).all()
        return [{**dict(r._mapping), "delivery": json.loads(r.delivery)} for r in rows]
