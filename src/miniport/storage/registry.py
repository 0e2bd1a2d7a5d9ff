"""Apps, data-URL settings, change requests, the audit log, keys and login codes."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, update

from ..domain.grey import UrlSettings, replaces_a_url
from ..domain.tokens import CLOCK_SKEW_S
from ..errors import ChangeNotConfirmable, Conflict, NotFound
from . import schema as t
from .db import Database, conflict_on_duplicate, dialect_insert
from .row_locks import held_app_row


@dataclass(frozen=True)
class App:
    appid: str
    name: str
    secret: str
    created_at: float


@dataclass(frozen=True)
class FetchURL:
    appid: str
    kind: str
    url: str | None
    enabled: bool
    updated_at: float
    grey_url: str | None = None
    grey_ratio: int = 0


@dataclass(frozen=True)
class ChangeRequest:
    id: str
    appid: str
    kind: str
    op: str
    url: str | None
    status: str
    requested_by: str
    created_at: float
    expires_at: float
    decided_by: str | None
    decided_at: float | None
    ratio: int | None = None  # grey_set and grey_ratio

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ConfirmedChange:
    """A change just applied, with the kind's URL settings it replaced and the ones it set."""

    change: ChangeRequest
    before: UrlSettings
    after: UrlSettings


@dataclass(frozen=True)
class OwedWake:
    """A confirmed periodic change whose wake (``AppService._wake``) is not done: the users it
    moves between ``before`` and ``after`` whose id sorts after ``wake_from`` are still owed."""

    change_id: str
    appid: str
    op: str
    before: UrlSettings
    after: UrlSettings
    wake_from: str


@dataclass(frozen=True)
class AuditEntry:
    id: int
    ts: float
    actor: str
    action: str
    appid: str | None
    detail: dict[str, Any]


class RegistryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- key/value (server keys) ---
    def kv_get_or_set(self, key: str, make: str) -> str:
        """The value under ``key``, set to ``make`` if there is none. Processes starting at once
        (``serve`` and ``worker`` on PostgreSQL) all get the one value the database kept."""
        found = self._kv_get(key)
        if found is not None:
            return found
        try:
            with conflict_on_duplicate(f"{key!r} is already set"), self.db.writing() as conn:
                conn.execute(insert(t.kv).values(key=key, value=make))
        except Conflict:
            kept = self._kv_get(key)
            assert kept is not None  # a kv row is never deleted, only replaced by kv_set
            return kept
        return make

    def _kv_get(self, key: str) -> str | None:
        with self.db.reading() as conn:
            row = conn.execute(select(t.kv.c.value).where(t.kv.c.key == key)).first()
        return str(row[0]) if row is not None else None

    def kv_get(self, key: str) -> str | None:
        with self.db.reading() as conn:
            row = conn.execute(select(t.kv.c.value).where(t.kv.c.key == key)).first()
        return str(row[0]) if row is not None else None

    def kv_set(self, key: str, value: str) -> None:
        """(An upsert: a delete then an insert, two at once, was a unique-key 500.)"""
        with self.db.writing() as conn:
            conn.execute(
                dialect_insert(self.db.is_sqlite)(t.kv)
                .values(key=key, value=value)
                .on_conflict_do_update(index_elements=["key"], set_={"value": value})
            )

    # --- audit ---
    @staticmethod
    def _audit(
        conn: Any, ts: float, actor: str, action: str, appid: str | None, **detail: Any
    ) -> None:
        conn.execute(
            insert(t.audit_log).values(
                ts=ts, actor=actor, action=action, appid=appid, detail=json.dumps(detail)
            )
        )

    def audit(self, ts: float, actor: str, action: str, appid: str | None, **detail: Any) -> None:
        with self.db.writing() as conn:
            self._audit(conn, ts, actor, action, appid, **detail)

    def audit_actors(self, appids: Collection[str] | None = None) -> list[str]:
        """Who appears in the log (of the entries of ``appids`` only, when given)."""
        log = t.audit_log
        query = select(log.c.actor).distinct().order_by("actor")
        if appids is not None:
            query = query.where(log.c.appid.in_(list(appids)))
        with self.db.reading() as conn:
            return [str(r.actor) for r in conn.execute(query)]

    def list_audit(
        self,
        appid: str | None = None,
        limit: int = 200,
        *,
        actor: str | None = None,
        action: str | None = None,
        before_id: int | None = None,
        appids: Collection[str] | None = None,
    ) -> list[AuditEntry]:
        """Newest first; ``actor`` exact, ``action`` a prefix (``change.`` for every change
        act), ``before_id`` the page after the entry of that id (keyset paging), ``appids``
        the apps a member may see (None: every entry, platform-wide ones included). The
        filters are in the query, so a page is full whenever there are more entries."""
        log = t.audit_log
        query = select(log).order_by(log.c.id.desc()).limit(limit)
        if appid is not None:
            query = query.where(log.c.appid == appid)
        if appids is not None:
            query = query.where(log.c.appid.in_(list(appids)))
        if actor:
            query = query.where(log.c.actor == actor)
        if action:
            query = query.where(log.c.action.startswith(action, autoescape=True))
        if before_id is not None:
            query = query.where(log.c.id < before_id)
        with self.db.reading() as conn:
            return [
                AuditEntry(r.id, r.ts, r.actor, r.action, r.appid, json.loads(r.detail))
                for r in conn.execute(query)
            ]

    # --- apps ---
    def create_app(self, app: App, actor: str) -> App:
        taken = f"an app with the id {app.appid!r} already exists"
        with conflict_on_duplicate(taken), self.db.writing() as conn:
            conn.execute(insert(t.apps).values(**app.__dict__))
            for kind in ("periodic", "pre"):
                conn.execute(
                    insert(t.fetch_urls).values(
                        appid=app.appid,
                        kind=kind,
                        url=None,
                        enabled=False,
                        updated_at=app.created_at,
                    )
                )
            self._audit(conn, app.created_at, actor, "app.create", app.appid, name=app.name)
        return app

    def get_app(self, appid: str) -> App:
        with self.db.reading() as conn:
            row = conn.execute(select(t.apps).where(t.apps.c.appid == appid)).first()
        if row is None:
            raise NotFound(f"app {appid!r} not found")
        return App(row.appid, row.name, row.secret, row.created_at)

    def list_apps(self) -> list[App]:
        with self.db.reading() as conn:
            rows = conn.execute(select(t.apps).order_by(t.apps.c.created_at)).all()
        return [App(r.appid, r.name, r.secret, r.created_at) for r in rows]

    def set_secret(self, appid: str, secret: str, now: float, actor: str) -> None:
        with self.db.writing() as conn:
            result = conn.execute(
                update(t.apps).where(t.apps.c.appid == appid).values(secret=secret)
            )
            if result.rowcount == 0:
                raise NotFound(f"app {appid!r} not found")
            self._audit(conn, now, actor, "app.rotate_secret", appid)

    # --- data URLs ---
    def fetch_urls(self, appid: str) -> dict[str, FetchURL]:
        with self.db.reading() as conn:
            rows = conn.execute(select(t.fetch_urls).where(t.fetch_urls.c.appid == appid)).all()
        return {
            r.kind: FetchURL(
                r.appid, r.kind, r.url, r.enabled, r.updated_at, r.grey_url, r.grey_ratio or 0
            )
            for r in rows
        }

    # --- per-app fetch settings ---
    def fetch_settings(self, appid: str) -> dict[str, Any] | None:
        with self.db.reading() as conn:
            row = conn.execute(
                select(t.app_settings).where(t.app_settings.c.appid == appid)
            ).first()
        return dict(row._mapping) if row is not None else None

    def change_fetch_settings(
        self,
        appid: str,
        merged: Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]],
        now: float,
        actor: str,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Set the app's settings row to what ``merged(current row)`` gives (values, and what
        the audit shows: header values masked), in one transaction holding the row: two
        changes at once are applied one after the other (each read the row before, then
        replaced it whole: one was lost, or a unique-key 500 on PostgreSQL). Returns the row
        as it was and the values stored."""
        c = t.app_settings.c
        with self.db.writing() as conn:
            before = held_app_row(conn, t.app_settings, appid, {"updated_at": now})
            values, shown = merged(before)
            conn.execute(
                update(t.app_settings).where(c.appid == appid).values(updated_at=now, **values)
            )
            self._audit(conn, now, actor, "app.fetch_settings", appid, **shown)
        return before, values

    def sealed_headers(self) -> list[tuple[str, str]]:
        """(appid, sealed headers) of every app that has request headers."""
        c = t.app_settings.c
        with self.db.reading() as conn:
            rows = conn.execute(select(c.appid, c.headers).where(c.headers.is_not(None)))
            return [(str(r[0]), str(r[1])) for r in rows]

    def reseal_headers(self, resealed: list[tuple[str, str, str]]) -> int:
        """Store re-sealed headers (a server key rotation): (appid, the sealed value read, its
        replacement). An app whose headers changed since they were read keeps the new ones
        (they were sealed by a server with a key it holds). Returns how many were replaced."""
        c = t.app_settings.c
        done = 0
        with self.db.writing() as conn:
            for appid, was, sealed in resealed:
                done += conn.execute(
                    update(t.app_settings)
                    .where(and_(c.appid == appid, c.headers == was))
                    .values(headers=sealed)
                ).rowcount
        return done

    # --- testers (always served by the grey URLs) ---
    def testers(self, appid: str) -> list[dict[str, Any]]:
        c = t.app_testers.c
        with self.db.reading() as conn:
            rows = conn.execute(
                select(c.user_id, c.added_by, c.added_at)
                .where(c.appid == appid)
                .order_by(c.user_id)
            ).all()
        return [dict(r._mapping) for r in rows]

    def set_tester(self, appid: str, user_id: str, add: bool, now: float, actor: str) -> bool:
        """Add or remove a tester; False when nothing changed (already one / not one). The
        same add (or remove) twice at once changes the row once: the other finds it done (a
        check, then an insert, was a unique-key 500 on PostgreSQL for the second)."""
        c = t.app_testers.c
        with self.db.writing() as conn:
            if add:  # (an INSERT's rowcount is -1 through psycopg: RETURNING says it)
                row = dict(appid=appid, user_id=user_id, added_by=actor, added_at=now)
                done = conn.execute(
                    dialect_insert(self.db.is_sqlite)(t.app_testers)
                    .values(**row)
                    .on_conflict_do_nothing(index_elements=["appid", "user_id"])
                    .returning(c.user_id)
                ).first()
            else:
                done = conn.execute(
                    delete(t.app_testers)
                    .where(and_(c.appid == appid, c.user_id == user_id))
                    .returning(c.user_id)
                ).first()
            if done is None:
                return False
            action = "tester.add" if add else "tester.remove"
            self._audit(conn, now, actor, action, appid, user_id=user_id)
            return True

    # --- change requests ---
    def create_change(self, change: ChangeRequest, code_hash: str) -> ChangeRequest:
        taken = f"a change request {change.id!r} (or its code) already exists"
        with conflict_on_duplicate(taken), self.db.writing() as conn:
            conn.execute(
                update(t.change_requests)
                .where(
                    and_(
                        t.change_requests.c.appid == change.appid,
                        t.change_requests.c.kind == change.kind,
                        t.change_requests.c.status == "pending",
                    )
                )
                .values(
                    status="superseded",
                    decided_at=change.created_at,
                    decided_by=change.requested_by,
                )
            )
            conn.execute(insert(t.change_requests).values(code_hash=code_hash, **change.__dict__))
            self._audit(
                conn,
                change.created_at,
                change.requested_by,
                "change.request",
                change.appid,
                change_id=change.id,
                kind=change.kind,
                op=change.op,
                url=change.url,
                ratio=change.ratio,
            )
        return change

    @staticmethod
    def _change(row: Any) -> ChangeRequest:
        return ChangeRequest(
            row.id,
            row.appid,
            row.kind,
            row.op,
            row.url,
            row.status,
            row.requested_by,
            row.created_at,
            row.expires_at,
            row.decided_by,
            row.decided_at,
            row.ratio,
        )

    def get_change(self, change_id: str) -> ChangeRequest:
        with self.db.reading() as conn:
            row = conn.execute(
                select(t.change_requests).where(t.change_requests.c.id == change_id)
            ).first()
        if row is None:
            raise NotFound(f"change {change_id!r} not found")
        return self._change(row)

    def change_by_code(self, code_hash: str) -> ChangeRequest:
        with self.db.reading() as conn:
            row = conn.execute(
                select(t.change_requests).where(t.change_requests.c.code_hash == code_hash)
            ).first()
        if row is None:
            raise ChangeNotConfirmable("unknown confirmation code")
        return self._change(row)

    def list_changes(self, appid: str, limit: int = 50) -> list[ChangeRequest]:
        with self.db.reading() as conn:
            rows = conn.execute(
                select(t.change_requests)
                .where(t.change_requests.c.appid == appid)
                .order_by(t.change_requests.c.created_at.desc())
                .limit(limit)
            ).all()
        return [self._change(r) for r in rows]

    def code_hash_of(self, change_id: str) -> str:
        with self.db.reading() as conn:
            found = conn.execute(
                select(t.change_requests.c.code_hash).where(t.change_requests.c.id == change_id)
            ).scalar()
        if found is None:
            raise NotFound(f"change {change_id!r} not found")
        return str(found)

    def reject_change(self, change_id: str, now: float, actor: str) -> ChangeRequest:
        """Close a pending change without applying it (once, atomically), audited."""
        c = t.change_requests.c
        with self.db.writing() as conn:
            row = conn.execute(
                update(t.change_requests)
                .where(and_(c.id == change_id, c.status == "pending"))
                .values(status="rejected", decided_by=actor, decided_at=now)
                .returning(*t.change_requests.c)
            ).first()
            if row is None:
                known = conn.execute(select(c.status).where(c.id == change_id)).scalar()
                if known is None:
                    raise NotFound(f"change {change_id!r} not found")
                raise ChangeNotConfirmable(f"this change was already {known}")
            self._audit(
                conn, now, actor, "change.reject", row.appid,
                change_id=row.id, kind=row.kind, op=row.op, url=row.url,
            )  # fmt: skip
        return self._change(row)

    def confirm_change(self, code_hash: str, now: float, actor: str) -> ConfirmedChange:
        """Apply a pending, unexpired change exactly once (atomically). ``updated_at`` moves
        only when a route's URL (or the switch) changes: a claim sends no validators older than
        it (see ``FetchStore._claim_once``), and a ratio alone leaves every route's URL as it was,
        so the users it does not move keep using theirs."""
        c = t.change_requests.c
        with self.db.writing() as conn:
            # Claim the change first with a conditional UPDATE: of two concurrent confirmations
            # (PostgreSQL runs writers in parallel) exactly one gets the row back.
            row = conn.execute(
                update(t.change_requests)
                .where(and_(c.code_hash == code_hash, c.status == "pending", c.expires_at >= now))
                .values(status="applied", decided_by=actor, decided_at=now)
                .returning(*t.change_requests.c)
            ).first()
            if row is None:
                known = conn.execute(
                    select(c.status, c.expires_at).where(c.code_hash == code_hash)
                ).first()
                if known is None:
                    raise ChangeNotConfirmable("unknown confirmation code")
                if known.status != "pending":
                    raise ChangeNotConfirmable(f"this change was already {known.status}")
                raise ChangeNotConfirmable(
                    "this confirmation code has expired; request the change again"
                )
            previous = self._current_urls(conn, row)
            values = self._applied(previous, row)
            before = UrlSettings(**previous)
            after = UrlSettings(**{**previous, **values})
            stamp = {"updated_at": now} if replaces_a_url(before, after) else {}
            if row.kind == "periodic":  # its wake is owed until done (see owed_wakes)
                urls = {"before": before.__dict__, "after": after.__dict__}
                conn.execute(
                    update(t.change_requests)
                    .where(t.change_requests.c.id == row.id)
                    .values(wake_from="", wake_at=now, wake_urls=json.dumps(urls))
                )
            conn.execute(
                update(t.fetch_urls)
                .where(and_(t.fetch_urls.c.appid == row.appid, t.fetch_urls.c.kind == row.kind))
                .values(**values, **stamp)
            )
            self._audit(
                conn,
                now,
                actor,
                "change.confirm",
                row.appid,
                change_id=row.id,
                kind=row.kind,
                op=row.op,
                url=row.url,
                ratio=row.ratio,
                # what it replaced and set: a promote or a clear carries no URL of its own
                previous=previous,
                applied=values,
            )
        return ConfirmedChange(self._change(row), before, after)

    def owed_wakes(self, idle_since: float) -> list[OwedWake]:
        """The wakes owed by confirmed changes that have not moved on after ``idle_since``:
        the process waking them stopped, or its database went away, in the middle (a wake
        moving on writes ``wake_at`` after each chunk), oldest change first."""
        c = t.change_requests.c
        with self.db.reading() as conn:
            rows = conn.execute(
                select(c.id, c.appid, c.op, c.wake_from, c.wake_urls)
                .where(
                    and_(
                        c.wake_from.is_not(None), c.wake_urls.is_not(None), c.wake_at <= idle_since
                    )
                )
                .order_by(c.decided_at, c.id)
            ).all()
        owed = []
        for row in rows:
            urls = json.loads(row.wake_urls)
            before, after = UrlSettings(**urls["before"]), UrlSettings(**urls["after"])
            owed.append(OwedWake(row.id, row.appid, row.op, before, after, row.wake_from))
        return owed

    def wakes_of(self, appid: str) -> list[dict[str, Any]]:
        """The app's wakes not done yet (in progress, or cut short and waiting for the
        scheduler to resume them), oldest change first: the change, when it was confirmed,
        when its wake last moved on, and the last user woken ("" before the first chunk)."""
        c = t.change_requests.c
        with self.db.reading() as conn:
            rows = conn.execute(
                select(c.id, c.kind, c.op, c.ratio, c.decided_at, c.wake_at, c.wake_from)
                .where(and_(c.appid == appid, c.wake_from.is_not(None)))
                .order_by(c.decided_at, c.id)
            ).all()
        return [
            {
                "change_id": r.id,
                "kind": r.kind,
                "op": r.op,
                "ratio": r.ratio,
                "confirmed_at": r.decided_at,
                "moved_on_at": r.wake_at,
                "after_user": r.wake_from,
            }
            for r in rows
        ]

    @staticmethod
    def wake_moved_on(conn: Connection, change_id: str, wake_from: str | None, now: float) -> None:
        """Record a wake's progress, in the transaction of the wake's write (so a chunk is
        never woken without its progress, nor recorded without its wake): the users up to
        ``wake_from`` are woken (None: all of them, the wake is done). A wake already done
        stays done (two nodes resuming the same one: the second to finish records nothing)."""
        c = t.change_requests.c
        values: dict[str, Any] = {"wake_from": wake_from, "wake_at": now}
        if wake_from is None:
            values["wake_urls"] = None
        conn.execute(
            update(t.change_requests)
            .where(and_(c.id == change_id, c.wake_from.is_not(None)))
            .values(**values)
        )

    @staticmethod
    def _current_urls(conn: Any, row: Any) -> dict[str, Any]:
        """The kind's URL settings a change is about to replace."""
        c = t.fetch_urls.c
        found = conn.execute(
            select(c.url, c.enabled, c.grey_url, c.grey_ratio).where(
                and_(c.appid == row.appid, c.kind == row.kind)
            )
        ).one()
        return {**found._mapping, "enabled": bool(found.enabled)}

    @staticmethod
    def _applied(current: dict[str, Any], row: Any) -> dict[str, Any]:
        """The fetch_urls values a confirmed change sets (Conflict when it cannot apply)."""
        if row.op == "set":
            return {"url": row.url, "enabled": True}
        if row.op == "enable":
            if not current["url"]:
                raise Conflict(f"no {row.kind} URL is set; set one before enabling it")
            return {"enabled": True}
        if row.op == "disable":
            return {"enabled": False}
        if row.op == "grey_set":
            return {"grey_url": row.url, "grey_ratio": row.ratio or 0}
        if row.op == "grey_clear":
            return {"grey_url": None, "grey_ratio": None}
        if not current["grey_url"]:
            raise Conflict(f"no {row.kind} grey URL is set; set one first")
        if row.op == "grey_ratio":
            return {"grey_ratio": row.ratio or 0}
        # grey_promote: the grey URL becomes the main one, for every user
        return {"url": current["grey_url"], "enabled": True, "grey_url": None, "grey_ratio": None}

    # --- login codes ---
    def use_login_code(
        self, nonce_hash: str, appid: str, user_id: str, expires_at: float, now: float
    ) -> bool:
        """Record that a code was exchanged; False when it already was (a code works once).
        The unique key decides (``ON CONFLICT DO NOTHING``), not a read before the insert: two
        exchanges of one code at once on PostgreSQL give one True and one False, not a
        duplicate-key error. Rows outlive their code's expiry by the clock skew allowed
        between nodes, then until the next exchange cleans them up: a node whose clock is
        ahead deleted the row of a code that one behind still took as valid, and the code
        worked twice."""
        kept_until = now - CLOCK_SKEW_S
        with self.db.writing() as conn:
            conn.execute(delete(t.login_codes).where(t.login_codes.c.expires_at < kept_until))
            added = conn.execute(
                dialect_insert(self.db.is_sqlite)(t.login_codes)
                .values(
                    code_hash=nonce_hash,
                    appid=appid,
                    user_id=user_id,
                    expires_at=expires_at,
                    used_at=now,
                )
                .on_conflict_do_nothing(index_elements=["code_hash"])
                .returning(t.login_codes.c.code_hash)
            )
            return added.first() is not None

    # --- host keys and admin API keys ---
    def add_key(
        self, table: str, key_id: str, name: str, key_hash: str, now: float, role: str | None = None
    ) -> None:
        tbl = t.host_keys if table == "host" else t.api_keys
        values: dict[str, Any] = {
            "id": key_id,
            "name": name,
            "key_hash": key_hash,
            "created_at": now,
        }
        if role is not None:
            values["role"] = role
        with self.db.writing() as conn:
            conn.execute(delete(tbl).where(tbl.c.id == key_id))  # a fixed id is replaced
            conn.execute(insert(tbl).values(**values))
            self._audit(
                conn, now, "cli", f"{table}_key.create", None, key_id=key_id, name=name, role=role
            )

    def find_key(self, table: str, key_hash: str) -> dict[str, Any] | None:
        tbl = t.host_keys if table == "host" else t.api_keys
        with self.db.reading() as conn:
            row = conn.execute(
                select(tbl).where(and_(tbl.c.key_hash == key_hash, tbl.c.revoked_at.is_(None)))
            ).first()
        return dict(row._mapping) if row is not None else None
