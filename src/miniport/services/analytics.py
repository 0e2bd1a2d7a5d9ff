"""Custom analytics: definitions and their lifecycle (save, test, publish, reset), ingestion of
reported batches, the live test view, erasure and retention (the reports: ``analytics_reports``).

The rules are pure code in ``miniport.analytics`` (definitions, coercion, batch checks, report
queries); this service joins them to the state database (definitions), the event store
(DuckDB, opened on first use so commands that never touch events do not lock its file) and the
event stream (test configurations to a tester's devices, live test reports to the console)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

from ..analytics.definitions import (
    MAX_FIELDS_PER_TYPE,
    AnalyticsConfig,
    DefinitionError,
    DefinitionsInvalid,
    EventDef,
    FieldDef,
    config_for_runtime,
    parse_event,
    parse_field,
    validate_config,
)
from ..analytics.event_store import AppendResult, DuckDBEventStore, EventStore, StoredEvent
from ..analytics.field_history import (
    FieldHistory,
    FieldPart,
    RetypeError,
    SlotMap,
    column_of,
    describe,
    plan_retype,
    taken_slots,
    value_type,
)
from ..analytics.ingest_rules import (
    PAST_CODES,
    PAST_VERSION_DAYS,
    CheckedEvent,
    ConfigHistory,
    RuntimeConfigView,
    check_batch,
)
from ..analytics.reports import FieldSlots, FieldType
from ..analytics.system_props import NEW_USER_COLUMN, is_new_user, utc_day
from ..clock import Clock
from ..domain import zones
from ..domain.shown import short_repr
from ..domain.tokens import validate_id
from ..errors import AnalyticsUnavailable, Conflict, InvalidInput, NotFound
from ..events.broker import EVERYONE, Broker
from ..metrics import Metrics
from ..storage.analytics_defs import (
    AnalyticsDefsStore,
    EventRow,
    FieldRow,
    PartRow,
    SlotChange,
    TestRow,
    draft_revision,
)
from ..storage.db import Database
from ..storage.registry import RegistryStore
from .analytics_reports import DAY_MS, ReportQueries
from .live_feed import LiveFeed

log = logging.getLogger("miniport.analytics")
EMPTY_CONFIG: dict[str, Any] = {"version": 0, "fields": [], "events": []}
APPEND_THREADS = 32
CACHE_S = 2.0
"""How long this process trusts what it read of an app's existence and field slots (changes
made through this process are seen at once; the CLI goes through the running server)."""
_INDEXED_PATH = re.compile(r"^(fields|events)\[(\d+)\](?:\.(.*))?$")
_ALSO = re.compile(r"\(also (fields|events)\[(\d+)\]\)")


MAX_MS_DIGITS = 15  # ms since the epoch up to the year 33658


def parse_time(value: str | int | None, tz: str, *, end: bool = False) -> int | None:
    """ms since the epoch from ms, an ISO date (a whole day in ``tz``; as an end, the day is
    included) or an ISO date-time (naive ones in ``tz``)."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    if str(value).isdigit():  # ms; not "²" (a digit to isdigit, not to int) nor past 64 bits
        if not (str(value).isascii() and len(str(value)) <= MAX_MS_DIGITS):
            raise InvalidInput(f"invalid date {value!r}: use YYYY-MM-DD or an ISO date-time")
        return int(value)
    zone = zones.zone(tz)
    if zone is None:
        raise InvalidInput(f"unknown time zone {short_repr(tz)}")
    text = str(value)
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text) + dt.timedelta(days=1 if end else 0)
            moment = dt.datetime.combine(day, dt.time(), zone)
        else:
            moment = dt.datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
    except (ValueError, OverflowError) as exc:  # 9999-12-31 as an end: the day after overflows
        raise InvalidInput(f"invalid date {text!r}: use YYYY-MM-DD or an ISO date-time") from exc
    return int(moment.timestamp() * 1000)


def relative_errors(
    errors: list[DefinitionError], kind: str, index: int, names: list[str]
) -> list[DefinitionError]:
    """Errors of a whole configuration as seen from the one object being saved: the paths of
    ``<kind>[index]`` become relative to it (``events[3].display_name`` -> ``display_name``)
    and "(also events[1])" names the other object (``(also event 'purchase')``)."""
    noun = "field" if kind == "fields" else "event"

    def also(match: re.Match[str]) -> str:
        j = int(match.group(2))
        if match.group(1) == kind and j < len(names):
            return f"(also {noun} {names[j]!r})"
        return match.group(0)

    out = []
    for error in errors:
        path = error.path
        found = _INDEXED_PATH.match(path)
        if found and found.group(1) == kind and int(found.group(2)) == index:
            path = found.group(3) or ""
        out.append(DefinitionError(path, _ALSO.sub(also, error.message)))
    return out


def test_channel(test_id: str) -> str:
    """The event-stream key the console's test view listens on: one no runtime can have (a
    user id never holds a control character), so no device stream, whatever user id a host
    key mints a token for, ever receives a test's reports."""
    return f"\x00test:{test_id}"


def view_of(config: dict[str, Any]) -> RuntimeConfigView:
    """Lookups over a runtime configuration (published or under test); built-in events are
    taken unless it says ``"builtin_events": false``."""
    parsed = AnalyticsConfig(
        fields=[FieldDef(name=f["name"], type=f["type"]) for f in config["fields"]],
        events=[
            EventDef.model_validate({k: v for k, v in e.items() if k != "id"})
            for e in config["events"]
        ],
    )
    return RuntimeConfigView.from_config(
        parsed,
        {e["name"]: e["id"] for e in config["events"]},
        builtin_events=config.get("builtin_events") is not False,
    )


@dataclass(frozen=True)
class _Effective:
    """The configuration in force for one user: a running test's, or the published one."""

    config: dict[str, Any]
    view: RuntimeConfigView
    test: TestRow | None


class AnalyticsService(ReportQueries):
    """Definitions and their lifecycle, ingestion, live tests, erasure and retention; the
    reports come from :class:`~miniport.services.analytics_reports.ReportQueries`."""

    def __init__(
        self,
        *,
        db: Database,
        registry: RegistryStore,
        defs: AnalyticsDefsStore,
        broker: Broker,
        clock: Clock,
        retention_days: float,
        open_store: Callable[[], EventStore],
        metrics: Metrics | None = None,
        live: LiveFeed | None = None,
    ) -> None:
        self.db, self.registry, self.defs, self.broker, self.clock = (
            db,
            registry,
            defs,
            broker,
            clock,
        )
        self.retention_days = retention_days
        self.live = live or LiveFeed(broker)
        self.metrics = metrics or Metrics()
        self._open_store = open_store
        self._store: EventStore | None = None
        self._published: dict[str, tuple[float, dict[str, Any], RuntimeConfigView]] = {}
        # appid -> (read at, version in force then, past versions)
        self._histories: dict[str, tuple[float, int, ConfigHistory | None]] = {}
        self._version_views: dict[tuple[str, int, bool], RuntimeConfigView] = {}
        self._tests: dict[str, tuple[float, dict[str, TestRow]]] = {}
        self._test_views: dict[tuple[str, bool], RuntimeConfigView] = {}
        self._apps_seen: dict[str, float] = {}
        # first-day lookups of new users (a store round trip each, many at once when a wave of
        # new users arrives; the default executor has cores + 4). Appends take no thread: the
        # store's group commit settles a future (the name is older than that)
        self._appenders = ThreadPoolExecutor(APPEND_THREADS, "miniport-analytics-append")
        # fresh slots whose emptying the event store could not take (ClickHouse away):
        # (appid, column, before_ms), emptied at the next batch stored or retention round
        self._unemptied: list[tuple[str, str, int]] = []
        self._slots: dict[str, tuple[float, _FieldState]] = {}
        # (appid, user) -> (first day, when forgotten as the node knew it then)
        self._first_days: dict[tuple[str, str], tuple[int, int | None]] = {}
        self._inflight: dict[int, int] = {}  # received_ms -> batches being checked and stored
        self._stored = asyncio.Event()  # set each time one of them is done

    @property
    def store(self) -> EventStore:
        if self._store is None:
            self._store = self._open_store()
        return self._store

    def close(self) -> None:
        self._appenders.shutdown(wait=True)
        if self._store is not None:
            self._store.close()
            self._store = None

    def _now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    def not_before_ms(self) -> int:
        return self._now_ms() - int(self.retention_days * DAY_MS)

    async def _app(self, appid: str) -> None:
        """NotFound for an unknown app (an app that exists is remembered for CACHE_S)."""
        seen = self._apps_seen.get(appid)
        if seen is not None and time.monotonic() - seen < CACHE_S:
            return
        await self.db.read(self.registry.get_app, appid)
        if len(self._apps_seen) > 10_000:
            self._apps_seen.clear()
        self._apps_seen[appid] = time.monotonic()

    def _forget(self, appid: str) -> None:
        """Drop what is cached of an app's definitions after a change made here."""
        self._slots.pop(appid, None)
        self._published.pop(appid, None)
        self._histories.pop(appid, None)

    # --- definitions ---
    async def _draft(self, appid: str) -> tuple[AnalyticsConfig, dict[str, int], list[str]]:
        """The draft, its events' ids and the fields with a pending type change (all from
        one read of the fields: a change made meanwhile is in all three or in none)."""
        fields = await self.db.read(self.defs.fields, appid)
        return _draft_of(fields, await self.db.read(self.defs.events, appid))

    async def _published_config(self, appid: str) -> AnalyticsConfig | None:
        latest = await self.db.read(self.defs.latest_version, appid)
        return None if latest is None else _published_of(latest[1])

    async def _validate(self, appid: str, config: AnalyticsConfig, retyped: list[str]) -> None:
        errors = validate_config(config, await self._published_config(appid), retyped)
        if errors:
            raise DefinitionsInvalid(errors)

    async def definitions(self, appid: str) -> dict[str, Any]:
        """Fields and events as the console edits them: each event's draft and published
        versions, and the published version number."""
        await self._app(appid)
        fields = await self.db.read(self.defs.fields, appid)
        events = await self.db.read(self.defs.events, appid)
        latest = await self.db.read(self.defs.latest_version, appid)
        histories = _histories(fields, await self.db.read(self.defs.field_parts, appid))
        return {
            "appid": appid,
            "version": latest[0] if latest else 0,
            "fields": [
                {
                    "name": f.name,
                    "type": f.type,
                    "published": f.published,
                    "pending_type": f.pending_type,
                    "history": [
                        {
                            "type": p.type,
                            "column": p.column,
                            "since_ms": p.since_ms,
                            "version": p.version,
                        }
                        for p in histories[f.name].parts
                    ],
                }
                for f in fields
            ],
            "events": [
                {
                    "id": e.id,
                    "name": e.name,
                    "draft": e.draft,
                    "published": e.published,
                    "changed": e.draft != e.published,
                    "revision": e.revision,
                }
                for e in events
            ],
        }

    async def add_field(self, appid: str, obj: object) -> dict[str, Any]:
        """Add a field. Adding an existing field again with another type changes its type,
        unless it is published (a published field's type never changes)."""
        await self._app(appid)
        new = parse_field(obj)
        current = await self.db.read(self.defs.fields, appid)
        existing = next((f for f in current if f.name == new.name), None)
        if existing is not None and existing.type == new.type:
            raise DefinitionsInvalid(
                [DefinitionError("name", f"field {new.name!r} already exists")]
            )
        if existing is not None and existing.published:
            raise DefinitionsInvalid(
                [
                    DefinitionError(
                        "type",
                        f"field {new.name!r} is published as {existing.type}; "
                        "change its type with a retype (the old values stay readable)",
                    )
                ]
            )
        draft, _, pending = await self._draft(appid)
        fields = [f for f in draft.fields if f.name != new.name]
        try:
            await self._validate(
                appid, AnalyticsConfig(fields=[*fields, new], events=draft.events), pending
            )
        except DefinitionsInvalid as exc:
            raise DefinitionsInvalid(
                relative_errors(exc.errors, "fields", len(fields), [f.name for f in fields])
            ) from None
        def decide(fields: list[FieldRow], parts: list[PartRow]) -> SlotChange:
            # under the app's lock: what the slots are now, not what was read above
            mine = next((f for f in fields if f.name == new.name), None)
            if (mine is None) != (existing is None) or (mine is not None and mine.published):
                raise Conflict(f"field {new.name!r} was changed meanwhile: try again")
            others = [f for f in fields if f.name != new.name]
            # slots held by other fields, their earlier types and pending changes stay theirs
            held = taken_slots(_histories(others, parts).values(), _pending(others))[new.type]
            free = next((s for s in range(MAX_FIELDS_PER_TYPE) if s not in held), None)
            if free is None:
                raise DefinitionsInvalid(
                    [
                        DefinitionError(
                            "type",
                            f"no free {new.type} slot: all {MAX_FIELDS_PER_TYPE} are held "
                            "(by fields, and by the earlier types of retyped fields)",
                        )
                    ]
                )
            at = self._now_ms()
            if mine is None:
                return SlotChange("add", new.name, new.type, free, fresh=True, at_ms=at)
            return SlotChange("redefine", new.name, new.type, free, fresh=True, at_ms=at)

        change = await self.db.write(self.defs.change_slots, appid, decide, self.clock.now())
        await self._clear_slot(appid, change)
        slots = {new.name: change.slot}
        self._forget(appid)
        return {"name": new.name, "type": new.type, "slot": slots[new.name]}

    async def retype_field(
        self, appid: str, name: object, new_type: object, actor: str
    ) -> dict[str, Any]:
        """Change a field's type (rules: :mod:`miniport.analytics.field_history`). A published
        field's change waits for the next publish (events stored so far keep their values in
        the old slot); a field never published is simply redefined. Audited."""
        await self._app(appid)
        if not isinstance(name, str) or not isinstance(new_type, str):
            raise InvalidInput("name and type are text")
        fields = await self.db.read(self.defs.fields, appid)
        histories = _histories(fields, await self.db.read(self.defs.field_parts, appid))
        try:
            plan = plan_retype(
                name,
                new_type,
                histories=histories,
                published={f.name: f.published for f in fields},
                pending=_pending(fields),
            )
        except RetypeError as exc:
            if exc.code == "unknown_field":
                raise NotFound(exc.message) from None
            raise DefinitionsInvalid(
                [DefinitionError("name" if exc.code == "system_name" else "type", exc.message)]
            ) from None
        row = next(f for f in fields if f.name == name)
        draft, _, pending = await self._draft(appid)
        changed = [
            FieldDef(name=f.name, type=plan.type if f.name == name else f.type)
            for f in draft.fields
        ]
        retyped = [*pending, name]
        errors = validate_config(
            AnalyticsConfig(fields=changed, events=draft.events),
            await self._published_config(appid),
            retyped,
        )
        if errors:
            raise DefinitionsInvalid(errors)

        decide = _retype_decision(name, new_type, row.published, plan.action, self._now_ms)
        change = await self.db.write(self.defs.change_slots, appid, decide)
        await self._clear_slot(appid, change)
        plan = change.result
        status = (
            "changed"
            if not row.published
            else "cancelled"
            if plan.action == "cancel"
            else "pending publish"
        )
        await self.db.write(
            self.registry.audit,
            self.clock.now(),
            actor,
            "analytics.field.retype",
            appid,
            field=name,
            from_type=row.pending_type or row.type,
            to_type=plan.type,
            slot=plan.slot,
            status=status,
        )
        self._forget(appid)
        return {
            "name": name,
            "type": row.type if row.published and plan.action == "set" else plan.type,
            "pending_type": plan.type if row.published and plan.action == "set" else None,
            "slot": plan.slot,
            "reused_slot": plan.reused and row.published,
            "status": status,
        }

    async def _clear_slot(self, appid: str, change: SlotChange) -> None:
        """Empty a slot just given out fresh of the values received before it was (a live test
        wrote them under a pending change since cancelled or replaced: they must not be read
        as the new owner's). Values received since are the new owner's and stay; the state
        database is not held meanwhile (a ClickHouse mutation may take a while)."""
        if change.fresh and change.type is not None and change.slot is not None:
            self._unemptied.append((appid, column_of(change.type, change.slot), change.at_ms))
            await self._empty_slots()

    async def _empty_slots(self) -> None:
        """Empty the fresh slots still waiting for it. The event store being unreachable does
        not fail the field change (it is in the state database, which alone defines fields):
        the slots are emptied once the store answers again."""
        while self._unemptied:
            item = self._unemptied.pop(0)  # taken: two batches at once never share one
            try:
                await asyncio.to_thread(self.store.clear_slot, *item)
            except AnalyticsUnavailable as exc:
                self._unemptied.insert(0, item)
                log.warning("slot %s of %s not emptied yet: %s", item[1], item[0], exc)
                return

    async def save_event(self, appid: str, obj: object, base: str | None = None) -> dict[str, Any]:
        """Save an event's draft (validated against the other definitions and what is
        published). Errors carry the path of the part at fault. ``base``: the draft's
        ``revision`` the edit started from (Conflict if it changed since; ``""`` for a new
        event); without it the save replaces whatever is there."""
        await self._app(appid)
        event = parse_event(obj)
        draft, _, pending = await self._draft(appid)
        others = [e for e in draft.events if e.name != event.name]
        try:
            await self._validate(
                appid, AnalyticsConfig(fields=draft.fields, events=[*others, event]), pending
            )
        except DefinitionsInvalid as exc:  # paths relative to the event file
            raise DefinitionsInvalid(
                relative_errors(exc.errors, "events", len(others), [e.name for e in others])
            ) from None
        saved = event.model_dump(mode="json")
        event_id = await self.db.write(
            self.defs.save_event, appid, event.name, saved, self.clock.now(), base
        )
        return {
            "id": event_id,
            "name": event.name,
            "status": "draft",
            "revision": draft_revision(saved),
        }

    async def delete_event(self, appid: str, name: str, base: str | None = None) -> dict[str, Any]:
        await self._app(appid)
        events = await self.db.read(self.defs.events, appid)
        if not any(e.name == name for e in events):
            raise NotFound(f"event {name!r} not found")
        await self.db.write(self.defs.save_event, appid, name, None, self.clock.now(), base)
        return {"name": name, "status": "deleted in draft"}

    async def _draft_runtime(self, appid: str, version: int) -> dict[str, Any]:
        draft, ids, pending = await self._draft(appid)
        await self._validate(appid, draft, pending)
        return config_for_runtime(draft, version, ids)

    async def publish(self, appid: str, actor: str) -> dict[str, Any]:
        await self._app(appid)

        def build(
            version: int,
            fields: list[FieldRow],
            events: list[EventRow],
            published: dict[str, Any] | None,
        ) -> dict[str, Any]:
            # the draft as it is in the publish's own transaction: a save or a field change
            # made since any earlier read is in this version, or waits for the next one
            draft, ids, pending = _draft_of(fields, events)
            before = None if published is None else _published_of(published)
            errors = validate_config(draft, before, pending)
            if errors:
                raise DefinitionsInvalid(errors)
            return config_for_runtime(draft, version, ids)

        version, config, retyped = await self.db.write(
            self.defs.publish, appid, build, actor, self.clock.now()
        )
        self._forget(appid)
        for change in retyped:
            await self.db.write(
                self.registry.audit,
                self.clock.now(),
                actor,
                "analytics.retype.published",
                appid,
                version=version,
                **{k: v for k, v in change.items() if k != "name"},
                field=change["name"],
            )
        testers = list((await self._running(appid)).keys())
        on = await self.db.read(self.defs.builtin_events, appid)
        await self.broker.publish(
            EVERYONE,
            {
                "type": "analyticsConfig",
                "appid": appid,
                "config": {**config, "builtin_events": on},
                "test_id": None,
                "exclude_users": testers,
            },
        )
        return {"version": version, **({"retyped": retyped} if retyped else {})}

    async def reset(self, appid: str) -> dict[str, Any]:
        await self._app(appid)
        await self.db.write(self.defs.reset, appid, self.clock.now())
        self._forget(appid)
        return await self.definitions(appid)

    # --- the configuration a runtime gets ---
    async def _published_view(self, appid: str) -> tuple[dict[str, Any], RuntimeConfigView]:
        cached = self._published.get(appid)
        if cached is not None and time.monotonic() - cached[0] < 2.0:
            return cached[1], cached[2]
        latest = await self.db.read(self.defs.latest_version, appid)
        on = await self.db.read(self.defs.builtin_events, appid)
        config = {**(latest[1] if latest else EMPTY_CONFIG), "builtin_events": on}
        view = view_of(config)
        self._published[appid] = (time.monotonic(), config, view)
        return config, view

    def _known_history(self, appid: str, current: object) -> tuple[bool, ConfigHistory | None]:
        """The app's past versions as read lately (within 2 s, with ``current`` the version
        in force then too): ``(True, history)``; ``(False, None)`` when they must be read."""
        cached = self._histories.get(appid)
        if cached is None or time.monotonic() - cached[0] >= 2.0 or cached[1] != current:
            return False, None
        return True, cached[2]

    async def _history(self, appid: str) -> ConfigHistory | None:
        """The app's past published versions that an event may still be checked against
        (superseded within ``PAST_VERSION_DAYS`` and the retention window; None: none), each
        parsed once per node (a published version never changes)."""
        since = max(self.not_before_ms(), self._now_ms() - PAST_VERSION_DAYS * DAY_MS) / 1000
        rows = await self.db.read(self.defs.versions_in_force_since, appid, since)
        on = (await self._published_view(appid))[0]["builtin_events"]
        history = None
        if len(rows) > 1:
            views = self._version_views
            missing = [v for v, _ in rows[:-1] if (appid, v, on) not in views]
            if missing:
                configs = await self.db.read(self.defs.version_configs, appid, missing)
                for version in missing:
                    config = {**configs[version], "builtin_events": on}
                    views[(appid, version, on)] = view_of(config)
                while len(views) > 1000:  # the oldest parsed go first
                    del views[next(iter(views))]
            past = tuple((v, int(at * 1000), views[(appid, v, on)]) for v, at in rows[:-1])
            history = ConfigHistory(past, int(rows[-1][1] * 1000))
        current = rows[-1][0] if rows else 0
        self._histories[appid] = (time.monotonic(), current, history)
        return history

    async def _running(self, appid: str) -> dict[str, TestRow]:
        cached = self._tests.get(appid)
        if cached is not None and time.monotonic() - cached[0] < 1.0:
            return cached[1]
        running = await self.db.read(self.defs.running_tests, appid)
        self._tests[appid] = (time.monotonic(), running)
        return running

    async def _effective(self, appid: str, user_id: str) -> _Effective:
        test = (await self._running(appid)).get(user_id)
        config, view = await self._published_view(appid)
        if test is not None:  # the draft under test, with the app's built-in switch
            config = {**test.config, "builtin_events": config["builtin_events"]}
            key = (test.id, config["builtin_events"])
            view = self._test_views.get(key) or view_of(config)
            self._test_views[key] = view
            return _Effective({**config, "test_id": test.id}, view, test)
        return _Effective({**config, "test_id": None}, view, None)

    async def runtime_config(self, appid: str, user_id: str) -> dict[str, Any]:
        await self._app(appid)
        return (await self._effective(appid, user_id)).config

    def _forget_test_views(self, test_id: str) -> None:
        for on in (True, False):
            self._test_views.pop((test_id, on), None)

    # --- built-in events: on or off per app ---
    async def builtin_events(self, appid: str) -> dict[str, Any]:
        await self._app(appid)
        on = await self.db.read(self.defs.builtin_events, appid)
        return {"appid": appid, "builtin_events": on}

    async def set_builtin_events(self, appid: str, on: object, actor: str) -> dict[str, Any]:
        """Switch the app's built-in events (``$launch``, ``$show``...) on or off: the
        connected runtimes get their configuration with ``builtin_events`` at once, and while
        off the server refuses built-in events one by one (``builtin_off``). Audited when it
        changes."""
        await self._app(appid)
        if not isinstance(on, bool):
            raise InvalidInput("builtin_events must be true or false")
        changed = await self.db.write(
            self.defs.set_builtin_events, appid, on, actor, self.clock.now()
        )
        self._published.pop(appid, None)
        if changed:  # saying it again changes and audits nothing ...
            await self.db.write(
                self.registry.audit,
                self.clock.now(),
                actor,
                "analytics.builtin_events",
                appid,
                builtin_events=on,
            )
        # ... but pushes again: a call made again after its push failed (the switch was
        # committed) reaches the runtimes
        await self._push_configs(appid)
        return {"appid": appid, "builtin_events": on, "changed": changed}

    async def _push_configs(self, appid: str) -> None:
        """The configuration in force to every connected runtime of the app: the published
        one to everyone but the testers, each tester's test configuration to them."""
        config, _ = await self._published_view(appid)
        self._tests.pop(appid, None)
        running = await self._running(appid)
        await self.broker.publish(
            EVERYONE,
            {
                "type": "analyticsConfig",
                "appid": appid,
                "config": config,
                "test_id": None,
                "exclude_users": list(running),
            },
        )
        for user_id, test in running.items():
            mine = (await self._effective(appid, user_id)).config
            await self.broker.publish(
                user_id,
                {"type": "analyticsConfig", "appid": appid, "config": mine, "test_id": test.id},
            )

    # --- tests ---
    async def start_test(self, appid: str, user_id: str, actor: str) -> dict[str, Any]:
        validate_id("user id", user_id)  # "*" would put every device of the app in the test
        await self._app(appid)
        config = await self._draft_runtime(appid, version=0)
        test_id = "t_" + secrets.token_hex(6)
        stopped = await self.db.write(
            self.defs.start_test, test_id, appid, user_id, config, actor, self.clock.now()
        )
        self._tests.pop(appid, None)
        for old in stopped:
            await self.broker.publish(test_channel(old), {"type": "testStopped", "test_id": old})
        on = await self.db.read(self.defs.builtin_events, appid)
        await self.broker.publish(
            user_id,
            {
                "type": "analyticsConfig",
                "appid": appid,
                "config": {**config, "builtin_events": on, "test_id": test_id},
                "test_id": test_id,
            },
        )
        devices = await self.broker.devices(user_id, appid)
        return {"test_id": test_id, "user_id": user_id, "devices": devices}

    async def _retest(self, appid: str, user_id: str, test: TestRow) -> _Effective:
        """A running test whose configuration no longer fits the fields' slots (a pending type
        change it tests was cancelled or replaced) takes the draft as it is now: stored in the
        test, pushed to the tester's devices; the test's id and view stay."""
        try:
            config = await self._draft_runtime(appid, version=0)
        except DefinitionsInvalid:
            raise Conflict(
                "the definitions under test changed and are not valid now: restart the test"
            ) from None
        if not await self.db.write(self.defs.set_test_config, test.id, config):
            raise Conflict(f"test {test.id} is no longer running")
        self._tests.pop(appid, None)
        self._forget_test_views(test.id)
        on = await self.db.read(self.defs.builtin_events, appid)
        await self.broker.publish(
            user_id,
            {
                "type": "analyticsConfig",
                "appid": appid,
                "config": {**config, "builtin_events": on, "test_id": test.id},
                "test_id": test.id,
            },
        )
        effective = await self._effective(appid, user_id)
        if effective.test is None or effective.test.id != test.id:
            raise Conflict(f"test {test.id} is no longer running")
        return effective

    async def get_test(self, appid: str, test_id: str) -> TestRow:
        test = await self.db.read(self.defs.get_test, test_id)
        if test is None or test.appid != appid:
            raise NotFound(f"test {test_id!r} not found")
        return test

    async def stop_test(self, appid: str, test_id: str) -> dict[str, Any]:
        """End a test: the tester's devices get the published configuration back."""
        test = await self.get_test(appid, test_id)
        stopped = await self.db.write(self.defs.stop_test, test_id, self.clock.now())
        self._tests.pop(appid, None)
        self._forget_test_views(test_id)
        if stopped:
            config, _ = await self._published_view(appid)
            await self.broker.publish(
                test.user_id,
                {
                    "type": "analyticsConfig",
                    "appid": appid,
                    "config": {**config, "test_id": None},
                    "test_id": None,
                },
            )
            await self.broker.publish(
                test_channel(test_id), {"type": "testStopped", "test_id": test_id}
            )
        return {"test_id": test_id, "status": "stopped"}

    async def sync_test(self, appid: str, test_id: str) -> dict[str, Any]:
        """Bring a test's events into the reports."""
        await self.get_test(appid, test_id)
        synced = await asyncio.to_thread(self.store.sync_test, appid, test_id)
        await self.db.write(self.defs.mark_synced, test_id, self.clock.now())
        return {"test_id": test_id, "synced": synced}

    # --- ingestion ---
    async def ingest(self, appid: str, user_id: str, batch: object) -> dict[str, Any]:
        """Check a batch against the configuration in force for this user, store what is
        valid (durably, deduplicated), and show everything in a running test's view."""
        await self._app(appid)
        if self._unemptied:  # before any value of this batch can land in such a slot
            await self._empty_slots()
        received = self._now_ms()
        # until stored and handed to the real-time feed, a real-time fetch waits for it
        self._inflight[received] = self._inflight.get(received, 0) + 1
        try:
            return await self._ingest(appid, user_id, batch, received)
        finally:
            left = self._inflight.pop(received) - 1
            if left:
                self._inflight[received] = left
            self._stored.set()

    async def _ingest(
        self, appid: str, user_id: str, batch: object, received: int
    ) -> dict[str, Any]:
        effective = await self._effective(appid, user_id)
        # events recorded under a past version (queued offline, or before the device heard
        # of the publish) are checked against it: with the history at hand (read lately)
        # in the one pass, else in a second pass once it is read, only when needed
        known, history = False, None
        if effective.test is None:
            known, history = self._known_history(appid, effective.config.get("version"))
        verdict = check_batch(
            batch, config=effective.view, received_at_ms=received, history=history
        )
        if (
            effective.test is None
            and not known
            and any(r.code in PAST_CODES for r in verdict.rejected)
        ):
            history = await self._history(appid)
            if history is not None:
                verdict = check_batch(
                    batch, config=effective.view, received_at_ms=received, history=history
                )
        test_id = effective.test.id if effective.test else None
        if verdict.accepted:
            await self._flag_new_user(appid, user_id, verdict.accepted)
        try:
            # a test's rows with the slots as they are now (a pending change may have been
            # cancelled or replaced a moment ago): never into a slot given back
            rows = await self._rows(
                appid, user_id, received, test_id, verdict.accepted, fresh=test_id is not None
            )
        except KeyError:
            if effective.test is None:
                raise
            # the draft under test no longer fits the fields' slots (a pending type change
            # was cancelled or replaced): the test goes on with the draft as it is now
            effective = await self._retest(appid, user_id, effective.test)
            verdict = check_batch(batch, config=effective.view, received_at_ms=received)
            if verdict.accepted:
                await self._flag_new_user(appid, user_id, verdict.accepted)
            try:
                rows = await self._rows(
                    appid, user_id, received, test_id, verdict.accepted, fresh=True
                )
            except KeyError:
                raise Conflict(
                    "the definitions under test changed while this batch was checked: "
                    "send it again, or restart the test"
                ) from None
        # the store's group commit writes the rows: no thread waits here for them
        result: AppendResult | None = None
        if rows:
            result = await asyncio.wrap_future(self.store.submit(rows))
        duplicates = verdict.duplicates_in_batch + (result.duplicates if result else 0)
        self.metrics.events_checked(result.inserted if result else 0, len(verdict.rejected))
        if test_id is None and result is not None and result.inserted:
            # some were stored before (a batch sent again): which ones is not known here
            resync = result.duplicates > 0
            self.live.accepted(appid, user_id, received, verdict.accepted, resync=resync)
        if effective.test is not None:
            await self.broker.publish(
                test_channel(effective.test.id),
                {
                    "type": "testReport",
                    "test_id": effective.test.id,
                    "received_ms": received,
                    "accepted": [ev.as_dict() for ev in verdict.accepted],
                    "rejected": [r.as_dict() for r in verdict.rejected],
                },
            )
        return {
            "accepted": result.inserted if result else 0,
            "duplicates": duplicates,
            "rejected": [r.as_dict() for r in verdict.rejected],
        }

    async def _flag_new_user(self, appid: str, user_id: str, accepted: list[CheckedEvent]) -> None:
        """Set ``$new_user`` on each event: on or before the user's first UTC day for the app
        (recorded by the store the first time the user is seen; cached here with the user's
        forget as the node knew it). A forgotten user's first day comes from the events the
        store keeps (after the forget): those from before it (a device sending them again)
        are dropped, and must not make it; the store refuses such a day too
        (``EventStore.first_days``), for a node that had not heard of the forget yet."""
        key = (appid, user_id)
        forgot = self.store.forgotten_at(appid, user_id)  # as the node knows it: no I/O
        if forgot is not None:
            accepted = [ev for ev in accepted if ev.ts_ms > forgot]
            if not accepted:
                return  # none of them is stored
        cached = self._first_days.get(key)
        if cached is not None and cached[1] == forgot:
            first = cached[0]
        else:
            candidate = utc_day(min(ev.ts_ms for ev in accepted))
            days = await asyncio.get_running_loop().run_in_executor(
                self._appenders, self.store.first_days, appid, {user_id: candidate}
            )
            first = days.get(user_id, candidate)
            if len(self._first_days) > 200_000:
                self._first_days.clear()
            self._first_days[key] = (first, forgot)
        for ev in accepted:
            ev.extra[NEW_USER_COLUMN] = is_new_user(ev.ts_ms, first)

    async def _field_state(self, appid: str, fresh: bool = False) -> _FieldState:
        """The fields' slots for reports and for ingest, cached for CACHE_S (``fresh``: read
        them now)."""
        cached = self._slots.get(appid)
        if not fresh and cached is not None and time.monotonic() - cached[0] < CACHE_S:
            return cached[1]
        fields = await self.db.read(self.defs.fields, appid)
        histories = _histories(fields, await self.db.read(self.defs.field_parts, appid))
        state = _FieldState.of(fields, histories)
        self._slots[appid] = (time.monotonic(), state)
        return state

    async def _slot_map(self, appid: str, fresh: bool = False) -> dict[str, dict[str, int]]:
        """Field name -> {type: slot} of every type the field may be written as."""
        return (await self._field_state(appid, fresh)).ingest

    async def slots(self, appid: str) -> FieldSlots:
        """The fields for the report compiler (a :class:`SlotMap`: with retype histories)."""
        return (await self._field_state(appid)).reports

    async def field_types(
        self,
        appid: str,
        names: list[str],
        metrics: Sequence[str] = (),
    ) -> dict[str, Any]:
        """``field_types`` of a report: each retyped field among ``names`` and how it was
        read (:func:`miniport.analytics.field_history.describe`)."""
        history = (await self._field_state(appid)).reports.history
        out: dict[str, Any] = {}
        for name in dict.fromkeys(names):
            h = history.get(name)
            if h is not None and h.retyped:
                over = [m for m in metrics if m.partition(":")[2].strip() == name]
                out[name] = describe(h, over)
        return out

    async def _rows(
        self,
        appid: str,
        user_id: str,
        received: int,
        test_id: str | None,
        accepted: list[CheckedEvent],
        fresh: bool = False,
    ) -> list[StoredEvent]:
        """Store rows of the accepted events (values already coerced by check_batch); KeyError
        for a value whose field has no slot of its type (``fresh``: with the slots read now)."""
        if not accepted:
            return []
        if fresh:
            slots = await self._slot_map(appid, fresh=True)
            return _stored(appid, user_id, received, test_id, accepted, slots)
        try:
            return _stored(appid, user_id, received, test_id, accepted, await self._slot_map(appid))
        except KeyError:  # a field newer than the cached slots (added by another process)
            slots = await self._slot_map(appid, fresh=True)
            return _stored(appid, user_id, received, test_id, accepted, slots)

    # --- one user: erasure (the lookup is a report: ReportQueries.user_events) ---
    async def forget_user(self, appid: str, user_id: str, actor: str) -> dict[str, Any]:
        """Erase a user's analytics: their events in the event store and their live tests
        (a running one is stopped first, so their devices get the published configuration
        back). Audited with a hash of the user id, not the id itself. The store remembers
        the forget: the user's events from before it (by event time or receipt) that reach
        it later, queued on a node or sent again by a device, are not stored; newer ones
        are (the device went on using the app)."""
        await self._app(appid)
        if not user_id.strip() or len(user_id) > 128:
            raise InvalidInput("a user id of 1 to 128 characters is needed")
        tests = await self.db.write(self.defs.forget_tests, appid, user_id)
        self._tests.pop(appid, None)
        for test in tests:
            self._forget_test_views(test.id)
        if any(test.status == "running" for test in tests):
            config, _ = await self._published_view(appid)
            await self.broker.publish(
                user_id,
                {
                    "type": "analyticsConfig",
                    "appid": appid,
                    "config": {**config, "test_id": None},
                    "test_id": None,
                },
            )
            for test in tests:
                await self.broker.publish(
                    test_channel(test.id), {"type": "testStopped", "test_id": test.id}
                )
        # on the clock that stamps received_ms
        deleted = await asyncio.to_thread(self.store.forget_user, appid, user_id, self._now_ms())
        self._first_days.pop((appid, user_id), None)  # the store forgot it too: new again
        digest = hashlib.sha256(user_id.encode()).hexdigest()
        await self.db.write(
            self.registry.audit,
            self.clock.now(),
            actor,
            "analytics.forget_user",
            appid,
            user_sha256=digest,
            deleted=deleted,
            tests=len(tests),
        )
        return {"deleted": deleted, "tests": len(tests)}

    # --- retention ---
    async def apply_retention(self) -> int:
        return await asyncio.to_thread(self.store.delete_older_than, self.not_before_ms())

    async def _retention_round(self, stop: asyncio.Event) -> None:
        """One round; ``stop`` set meanwhile interrupts the store's wait for its deletes
        (ClickHouse: up to ten minutes), so that a server stopping is not held up by it."""
        round_ = asyncio.ensure_future(self._empty_slots_and_retain())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({round_, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not round_.done():
                self.store.interrupt()
            await round_
        finally:
            stopping.cancel()

    async def _empty_slots_and_retain(self) -> None:
        await self._empty_slots()
        await self.apply_retention()

    async def retention_loop(self, stop: asyncio.Event, every_s: float = 3600) -> None:
        """A round every ``every_s`` seconds; one that failed (ClickHouse or the id index
        away) is logged and the next round tries again: the loop never ends before ``stop``
        (it did on any error but AnalyticsUnavailable, and no event was deleted again)."""
        while not stop.is_set():
            try:
                await self._retention_round(stop)
            except AnalyticsUnavailable as exc:
                log.warning("retention round skipped: %s; trying again in %.0f s", exc, every_s)
            except Exception:  # the loop must outlive it: the next round tries again
                log.exception("retention round failed; trying again in %.0f s", every_s)
            try:
                await asyncio.wait_for(stop.wait(), every_s)
            except TimeoutError:
                continue


def _stored(
    appid: str,
    user_id: str,
    received: int,
    test_id: str | None,
    accepted: list[CheckedEvent],
    slots: dict[str, dict[str, int]],
) -> list[StoredEvent]:
    """The store's rows for checked events: each value in its field's slot of the value's
    type (a field changing type has one per type; see analytics.field_history); KeyError
    for a field without a slot of that type."""
    rows: list[StoredEvent] = []
    append = rows.append
    for ev in accepted:
        ints: dict[int, int] = {}
        strs: dict[int, str] = {}
        floats: dict[int, float] = {}
        bools: dict[int, bool] = {}
        for name, value in ev.values.items():
            kind = value_type(value)
            slot = slots[name][kind]
            if kind == "int":
                ints[slot] = value  # type: ignore[assignment]
            elif kind == "string":
                strs[slot] = value  # type: ignore[assignment]
            elif kind == "float":
                floats[slot] = value  # type: ignore[assignment]
            else:
                bools[slot] = value  # type: ignore[assignment]
        append(
            StoredEvent(
                appid,
                ev.uid,
                ev.event_name,
                user_id,
                ev.ts_ms,
                received,
                ev.time_estimated,
                ev.page,
                ev.trigger,
                ev.action,
                ints,
                strs,
                test_id,
                ev.extra,
                floats,
                bools,
            )
        )
    return rows


def _retype_decision(
    field: str,
    to_type: str,
    published: bool,
    action: str,
    now_ms: Callable[[], int],
) -> Callable[[list[FieldRow], list[PartRow]], SlotChange]:
    """The retype of ``field`` to ``to_type`` planned again under the app's lock (another
    change may have taken the slot meanwhile): what to write, or Conflict when the field is
    no longer what the plan made outside the lock saw (``published``, ``action``)."""

    def decide(fields: list[FieldRow], parts: list[PartRow]) -> SlotChange:
        mine = next((f for f in fields if f.name == field), None)
        if mine is None:
            raise NotFound(f"field {field!r} is not defined")
        try:
            locked = plan_retype(
                field,
                to_type,
                histories=_histories(fields, parts),
                published={f.name: f.published for f in fields},
                pending=_pending(fields),
            )
        except RetypeError as exc:
            raise Conflict(f"field {field!r} was changed meanwhile: {exc.message}") from None
        if mine.published != published or locked.action != action:
            raise Conflict(f"field {field!r} was changed meanwhile: try again")
        fresh = not locked.reused and locked.action == "set"
        at = now_ms()
        if not mine.published:
            return SlotChange("redefine", field, locked.type, locked.slot, fresh, locked, at)
        if locked.action == "cancel":
            return SlotChange("pending", field, None, None, False, locked, at)
        return SlotChange("pending", field, locked.type, locked.slot, fresh, locked, at)

    return decide


def _draft_of(
    fields: list[FieldRow], events: list[EventRow]
) -> tuple[AnalyticsConfig, dict[str, int], list[str]]:
    """The draft configuration, its events' ids and the fields with a pending type change."""
    config = AnalyticsConfig(
        fields=[
            FieldDef(name=f.name, type=f.pending_type or f.type)  # type: ignore[arg-type]
            for f in fields
        ],
        events=[EventDef.model_validate(e.draft) for e in events if e.draft is not None],
    )
    return config, {e.name: e.id for e in events}, [f.name for f in fields if f.pending_type]


def _published_of(config: dict[str, Any]) -> AnalyticsConfig:
    """A published version's runtime configuration as definitions."""
    return AnalyticsConfig(
        fields=[FieldDef(name=f["name"], type=f["type"]) for f in config["fields"]],
        events=[
            EventDef.model_validate({k: v for k, v in e.items() if k != "id"})
            for e in config["events"]
        ],
    )


def _pending(fields: list[FieldRow]) -> dict[str, tuple[str, int]]:
    return {
        f.name: (f.pending_type, f.pending_slot)
        for f in fields
        if f.pending_type is not None and f.pending_slot is not None
    }


def _histories(fields: list[FieldRow], parts: list[PartRow]) -> dict[str, FieldHistory]:
    """Each field's history: its stored parts once retyped, else its one type and slot."""
    by_name: dict[str, list[PartRow]] = {}
    for part in parts:
        by_name.setdefault(part.name, []).append(part)
    out: dict[str, FieldHistory] = {}
    for f in fields:
        rows = by_name.get(f.name)
        if rows:
            out[f.name] = FieldHistory(
                f.name,
                tuple(
                    FieldPart(cast(FieldType, p.type), p.slot, p.since_ms, p.version) for p in rows
                ),
            )
        else:
            out[f.name] = FieldHistory.single(f.name, cast(FieldType, f.type), f.slot)
    return out


@dataclass(frozen=True)
class _FieldState:
    reports: SlotMap
    ingest: dict[str, dict[str, int]]

    @classmethod
    def of(cls, fields: list[FieldRow], histories: dict[str, FieldHistory]) -> _FieldState:
        reports = SlotMap(
            {f.name: (cast(FieldType, f.type), f.slot) for f in fields},
            {n: h for n, h in histories.items() if h.retyped},
        )
        ingest: dict[str, dict[str, int]] = {}
        for f in fields:
            slots: dict[str, int] = {p.type: p.slot for p in histories[f.name].parts}
            slots[f.type] = f.slot
            if f.pending_type is not None and f.pending_slot is not None:
                slots[f.pending_type] = f.pending_slot  # a live test of the draft
            ingest[f.name] = slots
        return cls(reports, ingest)


def open_duckdb(path: str) -> Callable[[], EventStore]:
    def opener() -> EventStore:
        return DuckDBEventStore(path)

    return opener


__all__ = [
    "AnalyticsService",
    "open_duckdb",
    "parse_time",
    "relative_errors",
    "test_channel",
    "view_of",
]
