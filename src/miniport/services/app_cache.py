"""A short-lived in-process cache of each app's secret and data URLs, read on every launch.

Changes made in this process invalidate at once; changes made by another process (the CLI
confirming a URL beside a running server) are seen within ``ttl_s``."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..storage.db import Database
from ..storage.registry import App, FetchURL, RegistryStore


@dataclass(frozen=True)
class AppTargets:
    app: App
    urls: dict[str, FetchURL]

    def enabled_url(self, kind: str) -> str | None:
        url = self.urls.get(kind)
        return url.url if url is not None and url.enabled and url.url else None


class AppCache:
    def __init__(self, db: Database, registry: RegistryStore, ttl_s: float = 2.0) -> None:
        self.db, self.registry, self.ttl_s = db, registry, ttl_s
        self._entries: dict[str, tuple[float, AppTargets]] = {}
        self._generation = 0  # bumped by invalidate(): a load begun before it is not kept

    def _load(self, appid: str) -> AppTargets:
        return AppTargets(self.registry.get_app(appid), self.registry.fetch_urls(appid))

    async def get(self, appid: str) -> AppTargets:
        entry = self._entries.get(appid)
        now = time.monotonic()
        if entry is not None and now - entry[0] < self.ttl_s:
            return entry[1]
        generation = self._generation
        targets = await self.db.read(self._load, appid)  # NotFound for an unknown app
        if generation == self._generation:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[appid] = (now, targets)
        return targets

    def invalidate(self, appid: str | None = None) -> None:
        self._generation += 1
        if appid is None:
            self._entries.clear()
        else:
            self._entries.pop(appid, None)
