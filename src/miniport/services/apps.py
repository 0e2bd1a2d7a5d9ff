"""Apps and their data-URL settings; every URL change waits for an admin's confirmation."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..clock import Clock
from ..domain import fetch_settings as fs
from ..domain.address_guard import AddressPolicy
from ..domain.grey import UrlSettings, validate_ratio, wakes_everyone
from ..domain.schedule import ScheduleRules
from ..domain.sealed import HeaderSealer
from ..domain.tokens import hash_secret, validate_id
from ..domain.urls import FETCH_KINDS, validate_fetch_url
from ..errors import Forbidden, InvalidInput, StateUnavailable
from ..storage.db import Database
from ..storage.fetches import FetchStore
from ..storage.health import health_series
from ..storage.registry import App, ConfirmedChange, OwedWake, RegistryStore
from ..storage.registry import ChangeRequest as ChangeRequest  # re-exported for the web layer

OPS = ("set", "enable", "disable", "grey_set", "grey_ratio", "grey_promote", "grey_clear")
MAIN_OPS = ("set", "enable", "disable")  # they concern every user of the app
WAKE_CHUNK = 5000  # users read (and their moves written) per transaction by a grey change
WAKE_IDLE_S = 60.0  # a wake whose change has not moved on for this long was cut short
MAX_USER_ID = 128
log = logging.getLogger(__name__)
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O/1/I: it is typed by hand


@dataclass(frozen=True)
class PendingChange:
    change: ChangeRequest
    code: str
    confirm_url: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "change_id": self.change.id,
            "confirm_code": self.code,
            "confirm_url": self.confirm_url,
            "expires_at": self.change.expires_at,
            "kind": self.change.kind,
            "op": self.change.op,
            "url": self.change.url,
            "ratio": self.change.ratio,
        }


def new_confirm_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(10))


class AppService:
    def __init__(
        self,
        db: Database,
        registry: RegistryStore,
        fetches: FetchStore,
        clock: Clock,
        *,
        dev: bool,
        allow_hosts: tuple[str, ...] = (),
        change_ttl_s: float,
        two_person_rule: bool = False,
        public_url: Callable[[], str],
        on_urls_changed: Callable[[str], None] | None = None,
        sealer: HeaderSealer | None = None,
        rules: ScheduleRules | None = None,
    ) -> None:
        self.db, self.registry, self.fetches, self.clock = db, registry, fetches, clock
        self.dev = dev
        self.address_policy = AddressPolicy.build(dev=dev, allow=allow_hosts)
        self.change_ttl_s = change_ttl_s
        self.two_person_rule = two_person_rule
        self.public_url = public_url
        self.on_urls_changed = on_urls_changed
        self.sealer = sealer or HeaderSealer(secrets.token_bytes(32))
        self.rules = rules or ScheduleRules()

    async def create(self, name: str, actor: str) -> App:
        name = name.strip()
        if not name or len(name) > 128:
            raise InvalidInput("app name must be 1..128 characters")
        app = App("mp" + secrets.token_hex(8), name, secrets.token_hex(16), self.clock.now())
        return await self.db.write(self.registry.create_app, app, actor)

    async def get(self, appid: str) -> App:
        return await self.db.read(self.registry.get_app, appid)

    async def rotate_secret(self, appid: str, actor: str) -> str:
        secret = secrets.token_hex(16)
        await self.db.write(self.registry.set_secret, appid, secret, self.clock.now(), actor)
        if self.on_urls_changed is not None:  # cached secrets are dropped too
            self.on_urls_changed(appid)
        return secret

    async def request_change(
        self,
        appid: str,
        kind: str,
        op: str,
        url: str | None,
        actor: str,
        ratio: int | None = None,
    ) -> PendingChange:
        """A URL change waiting for an admin: the main URL (set, enable, disable) or the grey
        release (grey_set with a URL and a ratio, grey_ratio, grey_promote, grey_clear)."""
        if kind not in FETCH_KINDS:
            raise InvalidInput(f"kind must be periodic or pre, not {kind!r}")
        if op not in OPS:
            raise InvalidInput(f"op must be one of {', '.join(OPS)}")
        await self.get(appid)
        with_url = op in ("set", "grey_set")
        url = (
            validate_fetch_url(kind, url or "", dev=self.dev, policy=self.address_policy)
            if with_url
            else None
        )
        if op == "grey_ratio" and ratio is None:
            raise InvalidInput("grey_ratio needs a ratio (0..100)")
        if op in ("grey_set", "grey_ratio"):
            ratio = validate_ratio(0 if ratio is None else ratio)
        elif ratio is not None:
            raise InvalidInput(f"a ratio applies to grey_set and grey_ratio, not {op}")
        now = self.clock.now()
        code = new_confirm_code()
        change = ChangeRequest(
            id="chg_" + secrets.token_hex(8),
            appid=appid,
            kind=kind,
            op=op,
            url=url,
            status="pending",
            requested_by=actor,
            created_at=now,
            expires_at=now + self.change_ttl_s,
            decided_by=None,
            decided_at=None,
            ratio=ratio,
        )
        await self.db.write(self.registry.create_change, change, hash_secret(code))
        return PendingChange(change, code, f"{self.public_url()}/confirm/{code}")

    async def change_for_code(self, code: str) -> ChangeRequest:
        return await self.db.read(self.registry.change_by_code, hash_secret(code.strip().upper()))

    async def confirm(self, code: str, actor: str) -> ChangeRequest:
        return await self._confirm(hash_secret(code.strip().upper()), actor)

    async def confirm_by_id(self, change_id: str, actor: str) -> ChangeRequest:
        """An admin confirms a change from the console (whoever requested it, and however)."""
        return await self._confirm(await self.db.read(self.registry.code_hash_of, change_id), actor)

    async def reject(self, change_id: str, actor: str) -> ChangeRequest:
        return await self.db.write(self.registry.reject_change, change_id, self.clock.now(), actor)

    async def _confirm(self, code_hash: str, actor: str) -> ChangeRequest:
        if self.two_person_rule:
            asked = await self.db.read(self.registry.change_by_code, code_hash)
            if asked.requested_by == actor:
                raise Forbidden(
                    "two-person rule: a change must be confirmed by someone other than "
                    f"who requested it ({actor})"
                )
        confirmed = await self.db.write(
            self.registry.confirm_change, code_hash, self.clock.now(), actor
        )
        change = confirmed.change
        if change.kind == "periodic":
            try:
                await self._wake(confirmed)
            except Exception:  # the change is applied: its wake is owed, and resumed
                log.exception("the wake of change %s was cut short; the scheduler resumes it "
                              "within %.0f s", change.id, 2 * WAKE_IDLE_S)  # fmt: skip
        if self.on_urls_changed is not None:
            self.on_urls_changed(change.appid)
        return change

    async def _wake(self, confirmed: ConfirmedChange) -> None:
        c = confirmed.change
        await self._wake_owed(OwedWake(c.id, c.appid, c.op, confirmed.before, confirmed.after, ""))

    async def _wake_owed(self, owed: OwedWake, stop: asyncio.Event | None = None) -> None:
        """The users a periodic change moves to another URL are fetched from it at once, in
        full. A main URL change or a switch concerns them all (due now, or out of the due index
        when disabled); a grey change only those whose URL differs before and after it (a ramp
        step: the buckets between the two ratios; a promote: the main users), read in chunks
        of WAKE_CHUNK users, each chunk's wake its own short write transaction, so the engine
        keeps claiming meanwhile and the users left alone keep their schedule and validators.
        The change records how far its wake got in each chunk's transaction (``wake_moved_on``):
        one cut short (a restart, a database error) is resumed from there by ``resume_wakes``.
        ``stop`` set (the server stopping) ends it between two chunks, to be resumed so."""
        appid, before, after, now = owed.appid, owed.before, owed.after, self.clock.now
        moved_on = functools.partial(self.registry.wake_moved_on, change_id=owed.change_id)
        if owed.op in MAIN_OPS or wakes_everyone(before, after):
            done = functools.partial(moved_on, wake_from=None, now=now())
            await self.db.write(self.fetches.wake_app, appid, now(), done)
            return
        last: str | None = owed.wake_from
        while last is not None and not (stop is not None and stop.is_set()):
            moved, last = await self.db.read(
                self.fetches.moved_users, appid, before, after, last, WAKE_CHUNK
            )
            record = functools.partial(moved_on, wake_from=last, now=now())
            await self.db.write(self.fetches.wake_users, appid, moved, now(), record)

    async def resume_wakes(self, stop: asyncio.Event | None = None) -> int:
        """Finish the wakes that confirmed changes owe and that nothing has moved on for
        WAKE_IDLE_S (a wake in progress records each chunk far sooner); returns how many.
        Several nodes may resume the same one at once: a user woken twice is due now either
        way."""
        owed = await self.db.read(self.registry.owed_wakes, self.clock.now() - WAKE_IDLE_S)
        for wake in owed:
            log.warning(
                "resuming the wake of change %s (%s %s) after user %r: it was cut short",
                wake.change_id, wake.appid, wake.op, wake.wake_from,
            )  # fmt: skip
            try:
                await self._wake_owed(wake, stop)
            except StateUnavailable:
                raise  # the others would fail too: the next round
            except Exception:  # one wake's trouble does not hold up the others
                log.exception("resuming the wake of change %s failed", wake.change_id)
        return len(owed)

    async def wake_loop(self, stop: asyncio.Event, every_s: float = WAKE_IDLE_S) -> None:
        """The scheduler's: ``resume_wakes`` at its start and every ``every_s`` seconds; a
        failed round (the database away) is logged and tried again next time."""
        while not stop.is_set():
            try:
                await self.resume_wakes(stop)
            except Exception:  # the next round tries again: the wake stays owed
                log.exception("resuming owed wakes failed; trying again in %.0f s", every_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

    async def settings(self, appid: str) -> dict[str, Any]:
        await self.get(appid)
        urls = await self.db.read(self.registry.fetch_urls, appid)
        changes = await self.db.read(self.registry.list_changes, appid)
        now = self.clock.now()
        return {
            "appid": appid,
            "urls": {
                k: {
                    "url": u.url,
                    "enabled": u.enabled,
                    "updated_at": u.updated_at,
                    "grey_url": u.grey_url,
                    "grey_ratio": u.grey_ratio,
                }
                for k, u in urls.items()
            },
            "testers": [t["user_id"] for t in await self.db.read(self.registry.testers, appid)],
            "pending": [
                c.as_dict() for c in changes if c.status == "pending" and c.expires_at >= now
            ],
            "waking": [
                # stalled: cut short (a restart, the database away); the scheduler resumes it
                {**w, "stalled": w["moved_on_at"] <= now - WAKE_IDLE_S}
                for w in await self.db.read(self.registry.wakes_of, appid)
            ],
        }

    async def health_series(
        self, appid: str, since: float, bucket_s: float
    ) -> list[dict[str, Any]]:
        """The app's fetch log since ``since`` in buckets of ``bucket_s`` (see storage.health)."""
        return await self.db.read(health_series, self.db, appid, since, bucket_s)

    # --- testers ---
    async def testers(self, appid: str) -> dict[str, Any]:
        await self.get(appid)
        return {"appid": appid, "testers": await self.db.read(self.registry.testers, appid)}

    async def set_tester(self, appid: str, user_id: str, add: bool, actor: str) -> dict[str, Any]:
        """Name a user as a tester (always served by the grey URLs) or stop doing so."""
        if not isinstance(user_id, str) or not user_id or len(user_id) > MAX_USER_ID:
            raise InvalidInput(f"a tester is a user id of 1..{MAX_USER_ID} characters")
        if add:  # (one an earlier version took can still be removed)
            validate_id("tester", user_id)
        await self.get(appid)
        changed = await self.db.write(
            self.registry.set_tester, appid, user_id, add, self.clock.now(), actor
        )
        urls = (await self.db.read(self.registry.fetch_urls, appid))["periodic"]
        # moved to the grey URL or back: fetched from it at once; woken again when nothing
        # changed too: a call retried after its wake failed (the tester row was written)
        if urls.grey_url:
            settings = UrlSettings(urls.url, urls.enabled, urls.grey_url, urls.grey_ratio)
            await self.db.write(
                self.fetches.wake_tester, appid, user_id, settings, add, self.clock.now()
            )
        if self.on_urls_changed is not None:
            self.on_urls_changed(appid)
        return {**await self.testers(appid), "changed": changed}

    # --- per-app fetch settings ---
    async def fetch_settings(self, appid: str) -> dict[str, Any]:
        """The app's settings as shown (header values masked) with the platform's defaults."""
        await self.get(appid)
        row = await self.db.read(self.registry.fetch_settings, appid) or {}
        try:
            headers = self.sealer.open(row["headers"]) if row.get("headers") else {}
        except InvalidInput:  # sealed with a key this server no longer has: shown as such
            return {**self._shown(appid, row, {}), "headers_unreadable": True}
        return self._shown(appid, row, headers)

    def _shown(self, appid: str, row: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        return {
            "appid": appid,
            "interval_s": row.get("interval_s"),
            "active_days": row.get("active_days"),
            "timeout_s": row.get("timeout_s"),
            "headers": {name: fs.mask(value) for name, value in sorted(headers.items())},
            "defaults": {
                "interval_s": self.rules.interval_s,
                "active_days": self.rules.active_days,
            },
        }

    def _setting_changes(self, changes: dict[str, Any]) -> dict[str, Any]:
        """The checked ``changes``: column values, and header lines as (name, value)."""
        values: dict[str, Any] = {}
        if changes.get("interval") is not None:
            values["interval_s"] = fs.check_interval(fs.parse_duration(changes["interval"], "h"))
        if changes.get("active_days") is not None:
            days = fs.check_active_days(changes["active_days"], self.rules.active_days)
            values["active_days"] = days
        if changes.get("timeout") is not None:
            values["timeout_s"] = fs.check_timeout(fs.parse_duration(changes["timeout"]))
        headers = [fs.parse_header(line) for line in changes.get("headers") or []]
        return {"values": values, "headers": headers}

    def _headers(self, row: dict[str, Any], changes: dict[str, Any]) -> dict[str, str]:
        """The app's stored headers, opened (none when ``clear_headers``: not opened)."""
        if not row.get("headers") or changes.get("clear_headers"):
            return {}
        try:
            return self.sealer.open(row["headers"])
        except InvalidInput:
            raise InvalidInput(
                "the app's stored headers were sealed with a server key this server no"
                " longer has: send clear_headers (with the headers to keep) to replace them"
            ) from None

    async def update_fetch_settings(
        self, appid: str, changes: dict[str, Any], actor: str
    ) -> dict[str, Any]:
        """Apply ``changes`` (interval "6h", active_days, timeout "5s", headers ["Name: value"],
        clear_headers); a changed interval reschedules the app's users without a burst."""
        await self.get(appid)
        update = self._setting_changes(changes)  # each checked before anything is held
        result: dict[str, dict[str, Any]] = {}  # what merged() shows, for the answer

        def merged(row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
            """The row with ``changes`` applied (in the write transaction holding it)."""
            headers = self._headers(row, changes)
            for name, value in update["headers"]:
                headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
                headers[name] = value
            if len(headers) > fs.MAX_HEADERS:
                raise InvalidInput(f"at most {fs.MAX_HEADERS} headers")
            values = {k: row.get(k) for k in ("interval_s", "active_days", "timeout_s")}
            values.update(update["values"])
            result["shown"] = shown = self._shown(appid, values, headers)
            sealed = self.sealer.seal(headers) if headers else None
            audit = {k: shown[k] for k in ("interval_s", "active_days", "timeout_s", "headers")}
            return {**values, "headers": sealed}, audit

        now = self.clock.now()
        row, values = await self.db.write(
            self.registry.change_fetch_settings, appid, merged, now, actor
        )
        shown = result["shown"]
        if values["interval_s"] != row.get("interval_s"):
            interval = values["interval_s"] or self.rules.interval_s
            await self.db.write(
                self.fetches.reschedule_app, appid, interval, now, min(interval, fs.HOUR)
            )
        if self.on_urls_changed is not None:
            self.on_urls_changed(appid)
        return shown
