"""Refreshes asked for by a developer's back end (services/refresh.py), kept in the state
database so that every API node sees them and a restart keeps them.

While a refresh runs its users are rows of ``refresh_users``, made from ``app_users`` by
INSERT ... SELECT (the active ones among those listed, or every active user): making them due,
counting how many were attempted since the start (its progress) and putting the rest back on
their schedule (a cancel) are one statement each, joined with ``app_users``, however many users
there are. A finished refresh (done or cancelled) keeps its counts in its ``refreshes`` row; its
users are deleted then.

At most one refresh of an app runs: the partial unique index ``ix_refreshes_one_running``
decides. A start first settles the app's running refresh (done once all its users were
attempted) and refuses while it still runs; of two starts at once on PostgreSQL that both found
none running, the second insert waits for the first transaction and then fails on the key
(``Conflict``). A refresh leaves ``running`` once, under its row's lock (``FOR UPDATE``; SQLite
has one writer at a time): a cancel and a progress read that finds it done on two nodes at once
do not both apply.

Making the users due and putting them back lock their ``app_users`` rows first, in key order
(see row_locks.py): the UPDATE alone locks them in the order its plan meets them (physical order
for the scan of a large refresh), and would deadlock with a batch locking a few of the same pairs
in key order.

Each start prunes finished refreshes in its own transaction: those finished more than
``KEPT_S`` ago, and the app's beyond its ``KEPT_PER_APP`` newest."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    String,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from ..errors import Conflict, NotFound
from . import schema as t
from .db import Database, conflict_on_duplicate
from .row_locks import lock_pairs

KEPT_S = 7 * 86400.0  # a finished refresh can be read for this long...
KEPT_PER_APP = 100  # ...unless the app has started this many newer ones since
CHUNK = 500  # listed users per statement


@dataclass(frozen=True)
class Refresh:
    id: str
    appid: str
    state: str  # running | done | cancelled
    started_at: float
    total: int
    done: int  # of a running refresh: as counted when read
    finished_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "refresh_id": self.id,
            "appid": self.appid,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def _refresh(row: Any) -> Refresh:
    return Refresh(
        row.id, row.appid, row.state, row.started_at, row.total, row.done, row.finished_at
    )


class RefreshStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def start(
        self,
        refresh_id: str,
        appid: str,
        users: Sequence[str] | None,
        active_since: float,
        now: float,
        actor: str,
    ) -> Refresh:
        """Start a refresh of ``users`` (None: every active user; a listed user who is not
        active is left out) and make them due now, audited; ``Conflict`` while another refresh
        of the app runs."""
        busy = "another refresh of this app is still running"
        with conflict_on_duplicate(busy), self.db.writing() as conn:
            running = self._running(conn, appid)
            if running is not None and self._settle(conn, running).state == "running":
                raise Conflict(f"refresh {running.id} of this app is still running")
            conn.execute(
                insert(t.refreshes).values(
                    id=refresh_id, appid=appid, state="running", started_at=now, total=0, done=0
                )
            )
            self._add_users(conn, refresh_id, appid, users, active_since)
            total = self._make_due(conn, refresh_id, appid, now)
            refresh = Refresh(refresh_id, appid, "running", now, total, 0)
            conn.execute(
                update(t.refreshes).where(t.refreshes.c.id == refresh_id).values(total=total)
            )
            if total == 0:
                refresh = self._finish(conn, refresh, "done", 0, now)
            conn.execute(
                insert(t.audit_log).values(
                    ts=now, actor=actor, action="refresh.start", appid=appid,
                    detail=json.dumps({"refresh_id": refresh_id, "users": total,
                                       "all": users is None}),
                )
            )  # fmt: skip
            self._prune(conn, appid, now)
        return refresh

    def get(self, appid: str, refresh_id: str) -> Refresh:
        """The refresh, a running one with its users attempted so far (``NotFound`` when the
        app has no such refresh, or no longer: finished ones are pruned)."""
        with self.db.reading() as conn:
            refresh = self._get(conn, appid, refresh_id)
            if refresh.state == "running":
                refresh = dataclasses.replace(refresh, done=self._attempted(conn, refresh)[0])
        return refresh

    def settle(self, appid: str, refresh_id: str) -> Refresh:
        """The refresh, marked done first when it runs and all its users were attempted."""
        with self.db.writing() as conn:
            return self._settle(conn, self._get(conn, appid, refresh_id, lock=True))

    def cancel(
        self, appid: str, refresh_id: str, interval_s: float, now: float, actor: str
    ) -> Refresh:
        """Cancel a running refresh, audited: its users not attempted since it started go back
        on their regular schedule (last success + ``interval_s``; now without one), pairs being
        fetched right now (leased) excepted, and so are pairs made due again since it started (a
        new token, a URL change: due at another time than the refresh's start), which stay due.
        A finished refresh is returned as it is."""
        with self.db.writing() as conn:
            refresh = self._settle(conn, self._get(conn, appid, refresh_id, lock=True))
            if refresh.state != "running":
                return refresh
            c = t.app_users.c
            lock_pairs(conn, self._users_of(refresh.id, refresh.appid))
            conn.execute(
                update(t.app_users)
                .where(
                    self._users_of(refresh.id, refresh.appid),
                    or_(c.last_attempt_at.is_(None), c.last_attempt_at < refresh.started_at),
                    c.next_due_at == refresh.started_at,  # as the refresh left it
                    or_(c.lease_until.is_(None), c.lease_until <= now),
                )
                .values(
                    # a user without a token sits out again until one comes (as before)
                    next_due_at=case(
                        (c.token.is_(None), None),
                        else_=func.coalesce(c.last_success_at + interval_s, now),
                    )
                )
            )
            conn.execute(
                insert(t.audit_log).values(
                    ts=now, actor=actor, action="refresh.cancel", appid=appid,
                    detail=json.dumps({"refresh_id": refresh_id, "done": refresh.done,
                                       "total": refresh.total}),
                )
            )  # fmt: skip
            return self._finish(conn, refresh, "cancelled", refresh.done, now)

    # --- within a transaction ---
    @staticmethod
    def _get(conn: Any, appid: str, refresh_id: str, lock: bool = False) -> Refresh:
        r = t.refreshes.c
        query = select(t.refreshes).where(r.id == refresh_id, r.appid == appid)
        row = conn.execute(query.with_for_update() if lock else query).first()
        if row is None:
            raise NotFound(f"refresh {refresh_id!r} not found")
        return _refresh(row)

    @staticmethod
    def _running(conn: Any, appid: str) -> Refresh | None:
        """The app's running refresh, its row locked (PostgreSQL) until the transaction ends."""
        r = t.refreshes.c
        row = conn.execute(
            select(t.refreshes).where(r.appid == appid, r.state == "running").with_for_update()
        ).first()
        return _refresh(row) if row is not None else None

    @staticmethod
    def _users_of(refresh_id: str, appid: str) -> Any:
        """The condition on app_users: the pair is one of the refresh's users."""
        c, u = t.app_users.c, t.refresh_users.c
        return and_(
            c.appid == appid,
            c.user_id.in_(select(u.user_id).where(u.refresh_id == refresh_id)),
        )

    @staticmethod
    def _add_users(
        conn: Any, refresh_id: str, appid: str, users: Sequence[str] | None, active_since: float
    ) -> int:
        """Name the refresh's users (the active ones of those listed, or all active ones);
        how many."""
        c = t.app_users.c
        active = select(literal(refresh_id, String), c.user_id).where(
            c.appid == appid, c.last_launch_at >= active_since
        )
        queries = (
            [active]
            if users is None
            else [
                active.where(c.user_id.in_(list(users[start : start + CHUNK])))
                for start in range(0, len(users), CHUNK)
            ]
        )
        for query in queries:
            conn.execute(insert(t.refresh_users).from_select(["refresh_id", "user_id"], query))
        named = select(func.count()).where(t.refresh_users.c.refresh_id == refresh_id)
        return int(conn.execute(named).scalar_one())

    def _make_due(self, conn: Any, refresh_id: str, appid: str, now: float) -> int:
        """Make the refresh's users due now (the engine fetches them at its own pace). Those
        being fetched right now (leased) are left out of the refresh: their fetch under way
        brings their data. Kept in it, their result (attempted before the start) counted for
        nothing and moved them 12 hours on: the refresh ran for 12 hours and refused every
        other refresh of the app. (Made due as well, they were claimed again while held, and
        the older of two results with one token could land last and win.)"""
        c = t.app_users.c
        lock_pairs(conn, self._users_of(refresh_id, appid))
        leased = and_(c.lease_until.is_not(None), c.lease_until > now)
        in_flight = select(c.user_id).where(c.appid == appid, leased)
        u = t.refresh_users.c
        conn.execute(
            delete(t.refresh_users).where(u.refresh_id == refresh_id, u.user_id.in_(in_flight))
        )
        conn.execute(
            update(t.app_users)
            .where(self._users_of(refresh_id, appid))
            .values(next_due_at=now, failures=0)
        )
        named = select(func.count()).where(u.refresh_id == refresh_id)
        return int(conn.execute(named).scalar_one())

    @staticmethod
    def _attempted(conn: Any, refresh: Refresh) -> tuple[int, float | None]:
        """How many of a running refresh's users are settled: fetched (successfully or not)
        since it started, or out of the due index (``next_due_at`` NULL: the app's periodic
        URL was disabled, say), as they will not be fetched and, counted as pending, kept the
        refresh running for good; and when the last of the fetches was."""
        c, u = t.app_users.c, t.refresh_users.c
        fetched = c.last_attempt_at >= refresh.started_at
        row = conn.execute(
            select(func.count(), func.max(case((fetched, c.last_attempt_at))))
            .select_from(
                t.refresh_users.join(
                    t.app_users, and_(c.appid == refresh.appid, c.user_id == u.user_id)
                )
            )
            .where(u.refresh_id == refresh.id, or_(fetched, c.next_due_at.is_(None)))
        ).one()
        return int(row[0]), row[1]

    def _settle(self, conn: Any, refresh: Refresh) -> Refresh:
        """A locked refresh: when it runs, done (at its last user's attempt) once every user
        was attempted, or still running with the count so far."""
        if refresh.state != "running":
            return refresh
        done, last = self._attempted(conn, refresh)
        if done < refresh.total:
            return dataclasses.replace(refresh, done=done)
        return self._finish(conn, refresh, "done", done, last or refresh.started_at)

    @staticmethod
    def _finish(conn: Any, refresh: Refresh, state: str, done: int, at: float) -> Refresh:
        conn.execute(
            update(t.refreshes)
            .where(t.refreshes.c.id == refresh.id)
            .values(state=state, done=done, finished_at=at)
        )
        conn.execute(delete(t.refresh_users).where(t.refresh_users.c.refresh_id == refresh.id))
        return dataclasses.replace(refresh, state=state, done=done, finished_at=at)

    @staticmethod
    def _prune(conn: Any, appid: str, now: float) -> None:
        """Forget finished refreshes: every app's past ``KEPT_S``, this app's past its
        ``KEPT_PER_APP`` newest."""
        r = t.refreshes.c
        conn.execute(delete(t.refreshes).where(r.finished_at < now - KEPT_S))
        beyond = (
            select(r.id)
            .where(r.appid == appid, r.finished_at.is_not(None))
            .order_by(r.started_at.desc(), r.id.desc())
            .offset(KEPT_PER_APP)
        )
        conn.execute(delete(t.refreshes).where(r.id.in_(beyond)))
