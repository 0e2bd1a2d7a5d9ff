"""Refreshes asked for by the developer's back end: fetch now for one user, a list, or every
active user of an app, and push the new data to their connected devices.

Invariants: a refresh only makes its users due now; the one periodic engine fetches them, at
its concurrency and per-host limits, and tells connected devices (``onBackgroundFetchData``) as
it does for every fetch. At most one refresh runs per app at a time, across every node sharing
the state database (which enforces it). Progress is read from the users' last attempt times; a
cancelled refresh puts the users not yet fetched back on their regular schedule. Refreshes are
kept in the state database (``storage/refreshes.py``): any node answers for a refresh another
started, and a restart forgets none; finished ones are pruned after a week, or beyond an app's
newest hundred."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from ..clock import Clock
from ..domain.schedule import DAY, ScheduleRules
from ..domain.tokens import validate_id
from ..errors import Conflict, InvalidInput
from ..storage.db import Database
from ..storage.refreshes import RefreshStore
from ..storage.registry import RegistryStore

MAX_LISTED = 10_000


class RefreshService:
    def __init__(
        self,
        db: Database,
        registry: RegistryStore,
        store: RefreshStore,
        clock: Clock,
        rules: ScheduleRules,
        wake_engine: Callable[[], None],
    ) -> None:
        self.db, self.registry, self.store, self.clock = db, registry, store, clock
        self.rules, self.wake_engine = rules, wake_engine

    async def start(self, appid: str, body: Any) -> dict[str, Any]:
        users = self._requested(body)
        await self.db.read(self.registry.get_app, appid)
        urls = (await self.db.read(self.registry.fetch_urls, appid))["periodic"]
        if not (urls.url and urls.enabled):  # counted, then "done" with nothing fetched
            raise Conflict("the app has no enabled periodic data URL: there is nothing to refresh")
        settings = await self.db.read(self.registry.fetch_settings, appid) or {}
        now = self.clock.now()
        # the app's own active window, as the engine's claims read it: a user beyond it was
        # counted, never fetched, and then counted as done
        # (within the platform's, which the claims apply first)
        platform_days = self.rules.active_days
        active_days = min(settings.get("active_days") or platform_days, platform_days)
        # the running check, the insert and making the users due are one write transaction,
        # and the database keeps a second running refresh of the app out (on every node)
        refresh = await self.db.write(
            self.store.start, "rf_" + secrets.token_hex(8), appid, users,
            now - active_days * DAY, now, "app-backend",
        )  # fmt: skip
        self.wake_engine()
        return {"refresh_id": refresh.id, "users": refresh.total}

    @staticmethod
    def _requested(body: Any) -> list[str] | None:
        """The listed users, or None for every active user."""
        if not isinstance(body, dict):
            raise InvalidInput('send {"users": [...]} or {"all": true}')
        if body.get("all") is True and "users" not in body:
            return None
        users = body.get("users")
        if body.get("all") or not isinstance(users, list) or not users:
            raise InvalidInput('send {"users": [...]} (a non-empty list) or {"all": true}')
        if len(users) > MAX_LISTED:
            raise InvalidInput(f'at most {MAX_LISTED} users; use {{"all": true}} for more')
        for user in users:
            if not isinstance(user, str):
                raise InvalidInput("each user is a user id of 1..128 characters")
            validate_id("each user", user)
        return list(dict.fromkeys(users))

    async def progress(self, appid: str, refresh_id: str) -> dict[str, Any]:
        refresh = await self.db.read(self.store.get, appid, refresh_id)
        if refresh.state == "running" and refresh.done >= refresh.total:
            # every user attempted: stored as done, once (a read that finds it unfinished
            # writes nothing)
            refresh = await self.db.write(self.store.settle, appid, refresh_id)
        return refresh.as_dict()

    async def cancel(self, appid: str, refresh_id: str) -> dict[str, Any]:
        settings = await self.db.read(self.registry.fetch_settings, appid) or {}
        interval = settings.get("interval_s") or self.rules.interval_s
        refresh = await self.db.write(
            self.store.cancel, appid, refresh_id, interval, self.clock.now(), "app-backend"
        )
        return refresh.as_dict()
