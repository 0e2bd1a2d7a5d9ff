"""Pre-fetch effectiveness rows: one per launch whose pre-fetched data a device read."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, insert, select

from ..domain.prefetch_effect import LaunchOutcome
from . import schema as t
from .db import Database


class PrefetchLaunchStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, appid: str, outcomes: Sequence[LaunchOutcome]) -> None:
        if not outcomes:
            return
        with self.db.writing() as conn:
            conn.execute(
                insert(t.prefetch_launches), [{"appid": appid, **o.__dict__} for o in outcomes]
            )

    def rows(
        self, appid: str, since: float | None, until: float | None
    ) -> list[tuple[int, str, str, bool, float | None]]:
        c = t.prefetch_launches.c
        cond = c.appid == appid
        if since is not None:
            cond = and_(cond, c.ts >= since)
        if until is not None:
            cond = and_(cond, c.ts < until)
        with self.db.reading() as conn:
            found = conn.execute(
                select(c.scene, c.path, c.platform, c.ready, c.ready_ms).where(cond)
            )
            return [(r[0], r[1], r[2], bool(r[3]), r[4]) for r in found]
