"""Analytics definitions in the state database: fields (with their event-store slots), events
(draft and published JSON), published versions, and live tests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, delete, func, insert, select, update

from ..errors import Conflict
from . import schema as t
from .db import Database
from .row_locks import held_app_row


@dataclass(frozen=True)
class FieldRow:
    name: str
    type: str
    slot: int
    published: bool
    pending_type: str | None = None
    pending_slot: int | None = None


@dataclass(frozen=True)
class PartRow:
    """One part of a retyped field's history (seq 0: the type it was defined with)."""

    name: str
    seq: int
    type: str
    slot: int
    since_ms: int | None
    version: int | None


@dataclass(frozen=True)
class SlotChange:
    """What a field change does to the slots, decided under the app's lock
    (:meth:`AnalyticsDefsStore.change_slots`): ``add`` a field, ``redefine`` a field never
    published (type and slot), set (or with ``type`` None, cancel) a published field's
    ``pending`` type change. ``fresh``: the slot was free until now (no field holds it), at
    ``at_ms`` (when it was decided)."""

    kind: Literal["add", "redefine", "pending"]
    name: str
    type: str | None
    slot: int | None
    fresh: bool = False
    result: Any = None  # what the deciding code wants back
    at_ms: int = 0


@dataclass(frozen=True)
class EventRow:
    id: int
    name: str
    draft: dict[str, Any] | None
    published: dict[str, Any] | None

    @property
    def revision(self) -> str:
        return draft_revision(self.draft)


def draft_revision(draft: dict[str, Any] | None) -> str:
    """A token of an event's draft, which an edit names as its ``base`` so that a save made
    on a draft someone else has changed since is refused (``""``: no draft, or deleted)."""
    if draft is None:
        return ""
    text = json.dumps(draft, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TestRow:
    id: str
    appid: str
    user_id: str
    config: dict[str, Any]
    status: str
    started_by: str
    started_at: float
    stopped_at: float | None
    synced_at: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "test_id": self.id,
            "appid": self.appid,
            "user_id": self.user_id,
            "status": self.status,
            "started_by": self.started_by,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "synced_at": self.synced_at,
            "config_version": self.config.get("version"),
        }


def _json(value: str | None) -> dict[str, Any] | None:
    return json.loads(value) if value is not None else None


class AnalyticsDefsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- fields ---
    def fields(self, appid: str) -> list[FieldRow]:
        with self.db.reading() as conn:
            return self._fields(conn, appid)

    @staticmethod
    def _fields(conn: Any, appid: str) -> list[FieldRow]:
        c = t.analytics_fields.c
        rows = conn.execute(
            select(c.name, c.type, c.slot, c.published, c.pending_type, c.pending_slot)
            .where(c.appid == appid)
            .order_by(c.created_at, c.name)
        ).all()
        return [
            FieldRow(r.name, r.type, r.slot, bool(r.published), r.pending_type, r.pending_slot)
            for r in rows
        ]

    def field_parts(self, appid: str) -> list[PartRow]:
        """The parts of every retyped field (none for a field never retyped), in order."""
        with self.db.reading() as conn:
            return self._parts(conn, appid)

    @staticmethod
    def _parts(conn: Any, appid: str) -> list[PartRow]:
        c = t.analytics_field_parts.c
        rows = conn.execute(
            select(c.name, c.seq, c.type, c.slot, c.since_ms, c.version)
            .where(c.appid == appid)
            .order_by(c.name, c.seq)
        ).all()
        return [
            PartRow(
                r.name,
                int(r.seq),
                r.type,
                int(r.slot),
                None if r.since_ms is None else int(r.since_ms),
                None if r.version is None else int(r.version),
            )
            for r in rows
        ]

    def change_slots(
        self,
        appid: str,
        decide: Callable[[list[FieldRow], list[PartRow]], SlotChange],
        now: float = 0.0,
    ) -> SlotChange:
        """Give a field a slot, or take its pending one back, with the app's fields locked:
        ``decide(fields, parts)`` (read in this transaction) says what to do, and it is written
        before anyone else can read the fields to choose a slot. So two developers (on two
        servers) adding or retyping fields at the same moment never get the same slot: on
        PostgreSQL the app's row is locked (``SELECT ... FOR UPDATE``), on SQLite the write
        transaction starts ``IMMEDIATE`` (one writer at a time across processes)."""
        fc = t.analytics_fields.c
        with self.db.writing() as conn:
            self._lock(conn, appid)
            change = decide(self._fields(conn, appid), self._parts(conn, appid))
            where = and_(fc.appid == appid, fc.name == change.name)
            if change.kind == "add":
                conn.execute(
                    insert(t.analytics_fields).values(
                        appid=appid,
                        name=change.name,
                        type=change.type,
                        slot=change.slot,
                        published=False,
                        created_at=now,
                    )
                )
            elif change.kind == "redefine":
                conn.execute(
                    update(t.analytics_fields)
                    .where(and_(where, fc.published.is_(False)))
                    .values(type=change.type, slot=change.slot)
                )
            else:
                conn.execute(
                    update(t.analytics_fields)
                    .where(and_(where, fc.published.is_(True)))
                    .values(pending_type=change.type, pending_slot=change.slot)
                )
        return change

    def _lock(self, conn: Any, appid: str) -> None:
        """Changes to an app's definitions one at a time: on PostgreSQL the app's row is
        locked until the transaction ends; a SQLite write transaction starts ``IMMEDIATE``
        (one writer at a time) already."""
        if not self.db.is_sqlite:
            conn.execute(select(t.apps.c.appid).where(t.apps.c.appid == appid).with_for_update())

    # --- events ---
    def events(self, appid: str) -> list[EventRow]:
        with self.db.reading() as conn:
            return self._events(conn, appid)

    @staticmethod
    def _events(conn: Any, appid: str) -> list[EventRow]:
        c = t.analytics_events.c
        rows = conn.execute(
            select(c.id, c.name, c.draft, c.published).where(c.appid == appid).order_by(c.id)
        ).all()
        return [EventRow(r.id, r.name, _json(r.draft), _json(r.published)) for r in rows]

    def save_event(
        self,
        appid: str,
        name: str,
        draft: dict[str, Any] | None,
        now: float,
        base: str | None = None,
    ) -> int:
        """Upsert an event's draft (None: deleted in the draft). Returns its stable id.
        ``base``: the :func:`draft_revision` the edit was made on; Conflict if the draft is
        another by now (someone else saved or deleted it meanwhile)."""
        c = t.analytics_events.c
        with self.db.writing() as conn:
            self._lock(conn, appid)  # never in the middle of a publish
            row = conn.execute(
                select(c.id, c.draft).where(and_(c.appid == appid, c.name == name))
            ).first()
            if base is not None and base != draft_revision(_json(row.draft) if row else None):
                raise Conflict(
                    f"event {name!r} was changed since you opened it (by someone else?): "
                    "reload it; your edit was not saved"
                )
            text = json.dumps(draft, ensure_ascii=False) if draft is not None else None
            if row is None:
                result = conn.execute(
                    insert(t.analytics_events).values(
                        appid=appid, name=name, draft=text, published=None, updated_at=now
                    )
                )
                key = result.inserted_primary_key
                assert key is not None
                return int(key[0])
            conn.execute(
                update(t.analytics_events).where(c.id == row.id).values(draft=text, updated_at=now)
            )
            return int(row.id)

    # --- publish and reset ---
    def latest_version(self, appid: str) -> tuple[int, dict[str, Any]] | None:
        with self.db.reading() as conn:
            return self._latest(conn, appid)

    @staticmethod
    def _latest(conn: Any, appid: str) -> tuple[int, dict[str, Any]] | None:
        c = t.analytics_versions.c
        row = conn.execute(
            select(c.version, c.config).where(c.appid == appid).order_by(c.version.desc()).limit(1)
        ).first()
        return (int(row.version), json.loads(row.config)) if row is not None else None

    def versions_in_force_since(self, appid: str, since: float) -> list[tuple[int, float]]:
        """``(version, published_at)`` of each version in force at some time from ``since``
        on (those published since, and the one in force at ``since``), oldest first."""
        c = t.analytics_versions.c
        with self.db.reading() as conn:
            first = conn.execute(
                select(func.max(c.version)).where(c.appid == appid, c.published_at <= since)
            ).scalar()
            rows = conn.execute(
                select(c.version, c.published_at)
                .where(c.appid == appid, c.version >= (first or 0))
                .order_by(c.version)
            ).all()
        return [(int(r.version), float(r.published_at)) for r in rows]

    def version_configs(self, appid: str, versions: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The runtime configurations of these published versions."""
        c = t.analytics_versions.c
        with self.db.reading() as conn:
            rows = conn.execute(
                select(c.version, c.config).where(c.appid == appid, c.version.in_(list(versions)))
            ).all()
        return {int(r.version): json.loads(r.config) for r in rows}

    def versions(self, appid: str) -> list[dict[str, Any]]:
        c = t.analytics_versions.c
        with self.db.reading() as conn:
            rows = conn.execute(
                select(c.version, c.published_by, c.published_at)
                .where(c.appid == appid)
                .order_by(c.version.desc())
            ).all()
        return [dict(r._mapping) for r in rows]

    def publish(
        self, appid: str, build: Any, actor: str, now: float
    ) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
        """In one transaction, with the app's definitions locked: the next version number,
        ``build(version, fields, events, published config or None)`` -> runtime config from
        what this transaction reads (it raises to publish nothing), drafts become published,
        deleted drafts go, fields are marked published, pending type changes start a new
        part of their field's history (returned). So what is marked published is exactly
        what the version holds, whatever was saved while the publish was on its way."""
        ev = t.analytics_events.c
        with self.db.writing() as conn:
            self._lock(conn, appid)
            latest = self._latest(conn, appid)
            version = (latest[0] if latest else 0) + 1
            config: dict[str, Any] = build(
                version,
                self._fields(conn, appid),
                self._events(conn, appid),
                latest[1] if latest else None,
            )
            conn.execute(
                insert(t.analytics_versions).values(
                    appid=appid,
                    version=version,
                    config=json.dumps(config, ensure_ascii=False),
                    published_by=actor,
                    published_at=now,
                )
            )
            conn.execute(
                delete(t.analytics_events).where(and_(ev.appid == appid, ev.draft.is_(None)))
            )
            conn.execute(
                update(t.analytics_events)
                .where(ev.appid == appid)
                .values(published=ev.draft, updated_at=now)
            )
            conn.execute(
                update(t.analytics_fields)
                .where(t.analytics_fields.c.appid == appid)
                .values(published=True)
            )
            retyped = self._publish_retypes(conn, appid, version, now)
        return version, config, retyped

    @staticmethod
    def _publish_retypes(conn: Any, appid: str, version: int, now: float) -> list[dict[str, Any]]:
        """Pending type changes become a new part of each field's history (seq 0, the type
        the field had until now, is written on its first change)."""
        fc, pc = t.analytics_fields.c, t.analytics_field_parts.c
        pending = conn.execute(
            select(fc.name, fc.type, fc.slot, fc.pending_type, fc.pending_slot).where(
                and_(fc.appid == appid, fc.pending_type.is_not(None))
            )
        ).all()
        since_ms = int(now * 1000)
        out: list[dict[str, Any]] = []
        for row in pending:
            parts = conn.execute(
                select(pc.seq, pc.since_ms).where(and_(pc.appid == appid, pc.name == row.name))
            ).all()
            seqs = [p.seq for p in parts]
            # a part never starts before the one it follows, even if the clock stepped back or
            # another node's clock is behind (the history's order is checked when it is read)
            started = max((p.since_ms for p in parts if p.since_ms is not None), default=None)
            part_since = since_ms if started is None else max(since_ms, started)
            if not seqs:
                conn.execute(
                    insert(t.analytics_field_parts).values(
                        appid=appid,
                        name=row.name,
                        seq=0,
                        type=row.type,
                        slot=row.slot,
                        since_ms=None,
                        version=None,
                    )
                )
                seqs = [0]
            conn.execute(
                insert(t.analytics_field_parts).values(
                    appid=appid,
                    name=row.name,
                    seq=max(seqs) + 1,
                    type=row.pending_type,
                    slot=row.pending_slot,
                    since_ms=part_since,
                    version=version,
                )
            )
            conn.execute(
                update(t.analytics_fields)
                .where(and_(fc.appid == appid, fc.name == row.name))
                .values(
                    type=row.pending_type,
                    slot=row.pending_slot,
                    pending_type=None,
                    pending_slot=None,
                )
            )
            out.append(
                {
                    "name": row.name,
                    "from": row.type,
                    "to": row.pending_type,
                    "slot": row.pending_slot,
                    "since_ms": since_ms,
                }
            )
        return out

    def reset(self, appid: str, now: float) -> None:
        """Drafts back to the published version: unpublished events and fields and pending
        type changes go."""
        ev, fc = t.analytics_events.c, t.analytics_fields.c
        with self.db.writing() as conn:
            self._lock(conn, appid)
            conn.execute(
                delete(t.analytics_events).where(and_(ev.appid == appid, ev.published.is_(None)))
            )
            conn.execute(
                update(t.analytics_events)
                .where(ev.appid == appid)
                .values(draft=ev.published, updated_at=now)
            )
            conn.execute(
                delete(t.analytics_fields).where(and_(fc.appid == appid, fc.published.is_(False)))
            )
            conn.execute(
                update(t.analytics_fields)
                .where(fc.appid == appid)
                .values(pending_type=None, pending_slot=None)
            )

    # --- tests ---
    @staticmethod
    def _test(row: Any) -> TestRow:
        return TestRow(
            row.id,
            row.appid,
            row.user_id,
            json.loads(row.config),
            row.status,
            row.started_by,
            row.started_at,
            row.stopped_at,
            row.synced_at,
        )

    def start_test(
        self, test_id: str, appid: str, user_id: str, config: dict[str, Any], actor: str, now: float
    ) -> list[str]:
        """A new running test; an earlier running test for the same tester is stopped (its ids
        are returned), so one device never holds two test configurations."""
        c = t.analytics_tests.c
        with self.db.writing() as conn:
            running = (
                conn.execute(
                    select(c.id).where(
                        and_(c.appid == appid, c.user_id == user_id, c.status == "running")
                    )
                )
                .scalars()
                .all()
            )
            if running:
                conn.execute(
                    update(t.analytics_tests)
                    .where(c.id.in_(running))
                    .values(status="stopped", stopped_at=now)
                )
            conn.execute(
                insert(t.analytics_tests).values(
                    id=test_id,
                    appid=appid,
                    user_id=user_id,
                    config=json.dumps(config, ensure_ascii=False),
                    status="running",
                    started_by=actor,
                    started_at=now,
                )
            )
        return list(running)

    def set_test_config(self, test_id: str, config: dict[str, Any]) -> bool:
        """Give a running test another configuration; False if it is not running."""
        c = t.analytics_tests.c
        with self.db.writing() as conn:
            return bool(
                conn.execute(
                    update(t.analytics_tests)
                    .where(and_(c.id == test_id, c.status == "running"))
                    .values(config=json.dumps(config, ensure_ascii=False))
                ).rowcount
            )

    def get_test(self, test_id: str) -> TestRow | None:
        with self.db.reading() as conn:
            row = conn.execute(
                select(t.analytics_tests).where(t.analytics_tests.c.id == test_id)
            ).first()
        return self._test(row) if row is not None else None

    def running_tests(self, appid: str) -> dict[str, TestRow]:
        """The running test of each tester of an app, by user id."""
        c = t.analytics_tests.c
        with self.db.reading() as conn:
            rows = conn.execute(
                select(t.analytics_tests).where(and_(c.appid == appid, c.status == "running"))
            ).all()
        return {r.user_id: self._test(r) for r in rows}

    def list_tests(self, appid: str, limit: int = 50) -> list[TestRow]:
        c = t.analytics_tests.c
        with self.db.reading() as conn:
            rows = conn.execute(
                select(t.analytics_tests)
                .where(c.appid == appid)
                .order_by(c.started_at.desc())
                .limit(limit)
            ).all()
        return [self._test(r) for r in rows]

    def stop_test(self, test_id: str, now: float) -> bool:
        c = t.analytics_tests.c
        with self.db.writing() as conn:
            return bool(
                conn.execute(
                    update(t.analytics_tests)
                    .where(and_(c.id == test_id, c.status == "running"))
                    .values(status="stopped", stopped_at=now)
                ).rowcount
            )

    def mark_synced(self, test_id: str, now: float) -> None:
        with self.db.writing() as conn:
            conn.execute(
                update(t.analytics_tests)
                .where(t.analytics_tests.c.id == test_id)
                .values(synced_at=now)
            )

    def forget_tests(self, appid: str, user_id: str) -> list[TestRow]:
        """Delete every test of one tester of an app (running or not); returns them."""
        c = t.analytics_tests.c
        where = and_(c.appid == appid, c.user_id == user_id)
        with self.db.writing() as conn:
            rows = conn.execute(select(t.analytics_tests).where(where)).all()
            conn.execute(delete(t.analytics_tests).where(where))
        return [self._test(r) for r in rows]

    # --- settings ---
    def builtin_events(self, appid: str) -> bool:
        """Whether the app takes built-in events (``$launch``...): on unless switched off."""
        c = t.analytics_settings.c
        with self.db.reading() as conn:
            row = conn.execute(select(c.builtin_events).where(c.appid == appid)).first()
        return True if row is None else bool(row.builtin_events)

    def set_builtin_events(self, appid: str, on: bool, actor: str, now: float) -> bool:
        """Switch built-in events on or off; returns whether the setting changed. The app's
        row is made first (on: the default) and held, so two switches at once change it once
        (a delete then an insert was a unique-key 500 for the second on PostgreSQL, and both
        could say they changed it)."""
        c = t.analytics_settings.c
        with self.db.writing() as conn:
            made = {"builtin_events": True, "updated_by": actor, "updated_at": now}
            before = bool(held_app_row(conn, t.analytics_settings, appid, made)["builtin_events"])
            if before != on:
                conn.execute(
                    update(t.analytics_settings)
                    .where(c.appid == appid)
                    .values(builtin_events=on, updated_by=actor, updated_at=now)
                )
        return before != on
