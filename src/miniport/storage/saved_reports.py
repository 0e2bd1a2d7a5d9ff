"""Saved reports and dashboards in the state database (tables ``saved_reports``,
``dashboards``, ``dashboard_items``). Names are unique per app (a duplicate is ``Conflict``);
a missing report or dashboard is ``NotFound``. Every change is audited with its app."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update

from ..errors import Conflict, NotFound
from . import schema as t
from .db import Database, conflict_on_duplicate


@dataclass(frozen=True)
class SavedReport:
    id: int
    appid: str
    name: str
    kind: str
    params: dict[str, Any]
    created_by: str
    created_at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "params": self.params,
            "created_by": self.created_by,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class DashboardItem:
    report: SavedReport
    position: int
    width: int


@dataclass(frozen=True)
class Dashboard:
    id: int
    appid: str
    name: str
    last_days: int | None
    date_from: str | None
    date_to: str | None
    tz: str
    created_by: str
    created_at: float
    items: list[DashboardItem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "range": {"last_days": self.last_days, "from": self.date_from, "to": self.date_to},
            "tz": self.tz,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "items": [
                {
                    "report": i.report.name,
                    "kind": i.report.kind,
                    "position": i.position,
                    "width": i.width,
                }
                for i in self.items
            ],
        }


def _report(row: Any) -> SavedReport:
    return SavedReport(
        row.id,
        row.appid,
        row.name,
        row.kind,
        json.loads(row.params),
        row.created_by,
        row.created_at,
    )


def _audit(
    conn: Connection, now: float, actor: str, action: str, appid: str, **detail: Any
) -> None:
    conn.execute(
        insert(t.audit_log).values(
            ts=now, actor=actor, action=action, appid=appid, detail=json.dumps(detail)
        )
    )


class SavedReportStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- saved reports ---
    def save(
        self, appid: str, name: str, kind: str, params: dict[str, Any], actor: str, now: float
    ) -> SavedReport:
        duplicate = conflict_on_duplicate(f"a saved report named {name!r} already exists")
        with duplicate, self.db.writing() as conn:
            new_id = conn.execute(
                insert(t.saved_reports)
                .values(
                    appid=appid,
                    name=name,
                    kind=kind,
                    params=json.dumps(params, ensure_ascii=False),
                    created_by=actor,
                    created_at=now,
                )
                .returning(t.saved_reports.c.id)
            ).scalar_one()
            _audit(conn, now, actor, "report.save", appid, name=name, kind=kind)
        return SavedReport(new_id, appid, name, kind, params, actor, now)

    @staticmethod
    def _get(conn: Connection, appid: str, name: str) -> SavedReport:
        c = t.saved_reports.c
        row = conn.execute(
            select(t.saved_reports).where(and_(c.appid == appid, c.name == name))
        ).first()
        if row is None:
            raise NotFound(f"saved report {name!r} not found")
        return _report(row)

    def get(self, appid: str, name: str) -> SavedReport:
        with self.db.reading() as conn:
            return self._get(conn, appid, name)

    def all(self, appid: str) -> list[SavedReport]:
        c = t.saved_reports.c
        with self.db.reading() as conn:
            rows = conn.execute(
                select(t.saved_reports).where(c.appid == appid).order_by(c.name)
            ).all()
        return [_report(r) for r in rows]

    def delete(self, appid: str, name: str, actor: str, now: float) -> None:
        """Delete a saved report (it leaves every dashboard it was on)."""
        with self.db.writing() as conn:
            report = self._get(conn, appid, name)
            conn.execute(
                delete(t.dashboard_items).where(t.dashboard_items.c.report_id == report.id)
            )
            conn.execute(delete(t.saved_reports).where(t.saved_reports.c.id == report.id))
            _audit(conn, now, actor, "report.delete", appid, name=name)

    # --- dashboards ---
    def create_dashboard(
        self,
        appid: str,
        name: str,
        range_: tuple[int | None, str | None, str | None],
        tz: str,
        actor: str,
        now: float,
    ) -> None:
        last_days, date_from, date_to = range_
        duplicate = conflict_on_duplicate(f"a dashboard named {name!r} already exists")
        with duplicate, self.db.writing() as conn:
            conn.execute(
                insert(t.dashboards).values(
                    appid=appid,
                    name=name,
                    last_days=last_days,
                    date_from=date_from,
                    date_to=date_to,
                    tz=tz,
                    created_by=actor,
                    created_at=now,
                )
            )
            _audit(conn, now, actor, "dashboard.create", appid, name=name)

    def set_range(
        self,
        appid: str,
        name: str,
        range_: tuple[int | None, str | None, str | None],
        tz: str,
        actor: str,
        now: float,
    ) -> None:
        last_days, date_from, date_to = range_
        with self.db.writing() as conn:
            board = self._board(conn, appid, name)
            conn.execute(
                update(t.dashboards)
                .where(t.dashboards.c.id == board.id)
                .values(last_days=last_days, date_from=date_from, date_to=date_to, tz=tz)
            )
            _audit(conn, now, actor, "dashboard.range", appid, name=name)

    @staticmethod
    def _board(conn: Connection, appid: str, name: str) -> Dashboard:
        c = t.dashboards.c
        row = conn.execute(
            select(t.dashboards).where(and_(c.appid == appid, c.name == name))
        ).first()
        if row is None:
            raise NotFound(f"dashboard {name!r} not found")
        i, r = t.dashboard_items.c, t.saved_reports
        items = conn.execute(
            select(r, i.position, i.width)
            .join(t.dashboard_items, i.report_id == r.c.id)
            .where(i.dashboard_id == row.id)
            .order_by(i.position)
        ).all()
        return Dashboard(
            row.id,
            row.appid,
            row.name,
            row.last_days,
            row.date_from,
            row.date_to,
            row.tz,
            row.created_by,
            row.created_at,
            [DashboardItem(_report(x), x.position, x.width) for x in items],
        )

    def dashboard(self, appid: str, name: str) -> Dashboard:
        with self.db.reading() as conn:
            return self._board(conn, appid, name)

    def dashboards(self, appid: str) -> list[dict[str, Any]]:
        d, i = t.dashboards.c, t.dashboard_items.c
        with self.db.reading() as conn:
            rows = conn.execute(
                select(d.name, func.count(i.report_id).label("reports"))
                .select_from(t.dashboards.outerjoin(t.dashboard_items, i.dashboard_id == d.id))
                .where(d.appid == appid)
                .group_by(d.id, d.name)
                .order_by(d.name)
            ).all()
        return [{"name": r.name, "reports": int(r.reports)} for r in rows]

    def delete_dashboard(self, appid: str, name: str, actor: str, now: float) -> None:
        with self.db.writing() as conn:
            board = self._board(conn, appid, name)
            conn.execute(
                delete(t.dashboard_items).where(t.dashboard_items.c.dashboard_id == board.id)
            )
            conn.execute(delete(t.dashboards).where(t.dashboards.c.id == board.id))
            _audit(conn, now, actor, "dashboard.delete", appid, name=name)

    def add_item(
        self, appid: str, board_name: str, report_name: str, width: int, actor: str, now: float
    ) -> None:
        """Put a saved report last on a dashboard (once: again is ``Conflict``)."""
        with self.db.writing() as conn:
            board = self._board(conn, appid, board_name)
            report = self._get(conn, appid, report_name)
            if any(item.report.id == report.id for item in board.items):
                raise Conflict(f"{report_name!r} is already on dashboard {board_name!r}")
            conn.execute(
                insert(t.dashboard_items).values(
                    dashboard_id=board.id,
                    report_id=report.id,
                    # after the last one: a deleted report leaves a gap, and len() gave the
                    # new item the position of one still there
                    position=max((item.position for item in board.items), default=-1) + 1,
                    width=width,
                )
            )
            _audit(conn, now, actor, "dashboard.add", appid, name=board_name, report=report_name)

    def reorder(
        self,
        appid: str,
        board_name: str,
        order: Callable[[list[str]], list[str]],
        actor: str,
        now: float,
        *,
        removed: str | None = None,
    ) -> None:
        """Number the dashboard's items in the order ``order(names) -> names`` gives (names
        left out of the result leave the dashboard)."""
        with self.db.writing() as conn:
            board = self._board(conn, appid, board_name)
            names = [item.report.name for item in board.items]
            new = order(names)
            ids = {item.report.name: item.report.id for item in board.items}
            c = t.dashboard_items.c
            for gone in set(names) - set(new):
                conn.execute(
                    delete(t.dashboard_items).where(
                        and_(c.dashboard_id == board.id, c.report_id == ids[gone])
                    )
                )
            for position, name in enumerate(new):
                conn.execute(
                    update(t.dashboard_items)
                    .where(and_(c.dashboard_id == board.id, c.report_id == ids[name]))
                    .values(position=position)
                )
            action = "dashboard.remove" if removed else "dashboard.move"
            _audit(conn, now, actor, action, appid, name=board_name, order=new)
