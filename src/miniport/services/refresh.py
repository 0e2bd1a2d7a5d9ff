"""Refreshes asked for by the developer's back end: fetch now for one user, a list, or every
active user of an app, and push the new data to their connected devices.

Invariants: a refresh only makes its users due now; the one periodic engine fetches them, at
its concurrency and per-host limits, and tells connected devices (``onBackgroundFetchData``) as
it does for every fetch. At most one refresh runs per app at a time. Progress is read from the
users' last attempt times; a cancelled refresh puts the users not yet fetched back on their
regular schedule. Refreshes are kept in this process (a restart forgets them; the users made
due are still fetched)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..clock import Clock
from ..domain.schedule import ScheduleRules
from ..errors import Conflict, InvalidInput, NotFound
from ..storage.db import Database
from ..storage.fetches import FetchStore
from ..storage.registry import RegistryStore

MAX_LISTED = 10_000
MAX_KEPT = 1000  # finished refreshes remembered for progress reads


@dataclass
class Refresh:
    id: str
    appid: str
    users: list[str]
    started_at: float
    state: str = "running"  # running | done | cancelled
    done: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "refresh_id": self.id,
            "appid": self.appid,
            "state": self.state,
            "done": self.done,
            "total": len(self.users),
            "started_at": self.started_at,
        }


class RefreshService:
    def __init__(
        self,
        db: Database,
        registry: RegistryStore,
        fetches: FetchStore,
        clock: Clock,
        rules: ScheduleRules,
        wake_engine: Callable[[], None],
    ) -> None:
        self.db, self.registry, self.fetches, self.clock = db, registry, fetches, clock
        self.rules, self.wake_engine = rules, wake_engine
        self._refreshes: dict[str, Refresh] = {}
        self._starting = asyncio.Lock()

    async def start(self, appid: str, body: Any) -> dict[str, Any]:
        users = self._requested(body)
        await self.db.read(self.registry.get_app, appid)
        # the check and the keep under one lock: four concurrent starts all passed the check
        # before any was kept (at most one refresh per app, on this node)
        async with self._starting:
            for other in list(self._refreshes.values()):
                if other.appid == appid and (await self._progress(other)).state == "running":
                    raise Conflict(f"refresh {other.id} of this app is still running")
            now = self.clock.now()
            targets = await self.db.read(
                self.fetches.refresh_users, appid, users, self.rules.active_since(now)
            )
            refresh = Refresh("rf_" + secrets.token_hex(8), appid, targets, now)
            await self.db.write(self.fetches.make_due, appid, targets, now)
            self._keep(refresh)
        self.wake_engine()
        await self.db.write(
            self.registry.audit, now, "app-backend", "refresh.start", appid,
            refresh_id=refresh.id, users=len(targets), all=users is None,
        )  # fmt: skip
        return {"refresh_id": refresh.id, "users": len(targets)}

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
        if not all(isinstance(u, str) and 0 < len(u) <= 128 for u in users):
            raise InvalidInput("each user is a user id of 1..128 characters")
        return list(dict.fromkeys(users))

    def _keep(self, refresh: Refresh) -> None:
        if len(self._refreshes) >= MAX_KEPT:
            for old in [r for r in self._refreshes.values() if r.state != "running"][:100]:
                self._refreshes.pop(old.id, None)
        self._refreshes[refresh.id] = refresh

    def _get(self, appid: str, refresh_id: str) -> Refresh:
        refresh = self._refreshes.get(refresh_id)
        if refresh is None or refresh.appid != appid:
            raise NotFound(f"refresh {refresh_id!r} not found")
        return refresh

    async def _progress(self, refresh: Refresh) -> Refresh:
        if refresh.state == "running":
            refresh.done = await self.db.read(
                self.fetches.attempted_since, refresh.appid, refresh.users, refresh.started_at
            )
            if refresh.done >= len(refresh.users):
                refresh.state = "done"
        return refresh

    async def progress(self, appid: str, refresh_id: str) -> dict[str, Any]:
        return (await self._progress(self._get(appid, refresh_id))).as_dict()

    async def cancel(self, appid: str, refresh_id: str) -> dict[str, Any]:
        refresh = await self._progress(self._get(appid, refresh_id))
        if refresh.state == "running":
            settings = await self.db.read(self.registry.fetch_settings, appid) or {}
            interval = settings.get("interval_s") or self.rules.interval_s
            await self.db.write(
                self.fetches.cancel_due,
                appid,
                refresh.users,
                refresh.started_at,
                interval,
                self.clock.now(),
            )
            refresh.state = "cancelled"
        return refresh.as_dict()
