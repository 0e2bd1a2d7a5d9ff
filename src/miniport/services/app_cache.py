"""A short-lived in-process cache of each app's secret and data URLs, read on every launch.

Changes made in this process invalidate at once; changes made by another process (the CLI
confirming a URL beside a running server) are seen within ``ttl_s``. The requests that miss
together share one load: when an entry expires under a wave of requests (10,000 devices opening
their event streams, each checking its app), the first starts the load and the others wait
for it, rather than each reading the database (144 loads of the same app in a 6 s wave, whose
leftovers, such as the cursors' references the driver keeps, pinned memory the closed streams
could not give back)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import memory
from ..domain.grey import grey_bucket, route_for
from ..storage.db import Database
from ..storage.registry import App, FetchURL, RegistryStore


@dataclass(frozen=True)
class AppTargets:
    app: App
    urls: dict[str, FetchURL]
    testers: frozenset[str] = frozenset()
    headers: dict[str, str] = field(default_factory=dict)  # the app's own, opened
    timeout_s: float | None = None  # the app's own (None: the platform's)
    interval_s: float | None = None  # the app's own (None: the platform's)

    def enabled_url(self, kind: str) -> str | None:
        url = self.urls.get(kind)
        return url.url if url is not None and url.enabled and url.url else None

    def serving_url(
        self, kind: str, user_id: str, openid: Callable[[str, str], str]
    ) -> tuple[str | None, str]:
        """(url, "main" | "grey"): the URL that serves this user (None when the kind is off)."""
        main = self.enabled_url(kind)
        grey = self.urls[kind].grey_url if main is not None else None
        if main is None or not grey:
            return main, "main"
        appid = self.app.appid
        return route_for(
            main,
            grey,
            self.urls[kind].grey_ratio,
            grey_bucket(appid, openid(appid, user_id)),
            tester=user_id in self.testers,
        )


class AppCache:
    def __init__(
        self,
        db: Database,
        registry: RegistryStore,
        ttl_s: float = 2.0,
        open_headers: Callable[[str], dict[str, str]] | None = None,
    ) -> None:
        self.db, self.registry, self.ttl_s = db, registry, ttl_s
        self.open_headers = open_headers
        self._entries: dict[str, tuple[float, AppTargets]] = {}
        self._generation = 0  # bumped by invalidate(): a load begun before it is not kept
        self._loading: dict[str, asyncio.Task[AppTargets]] = {}  # loads in flight, shared
        memory.on_release(self.forget_expired)

    def _load(self, appid: str) -> AppTargets:
        urls = self.registry.fetch_urls(appid)
        testers: frozenset[str] = frozenset()
        if any(u.grey_url for u in urls.values()):
            testers = frozenset(t["user_id"] for t in self.registry.testers(appid))
        app = self.registry.get_app(appid)
        settings = self.registry.fetch_settings(appid) or {}
        sealed = settings.get("headers")
        headers = self.open_headers(sealed) if sealed and self.open_headers else {}
        return AppTargets(
            app, urls, testers, headers, settings.get("timeout_s"), settings.get("interval_s")
        )

    async def get(self, appid: str) -> AppTargets:
        entry = self._entries.get(appid)
        now = time.monotonic()
        if entry is not None and now - entry[0] < self.ttl_s:
            return entry[1]
        loading = self._loading.get(appid)
        if loading is None:
            load = self._fetch(appid, now, self._generation)
            loading = self._loading[appid] = asyncio.ensure_future(load)
        # shielded: a caller that gives up does not cancel the load the others wait for
        return await asyncio.shield(loading)

    async def _fetch(self, appid: str, now: float, generation: int) -> AppTargets:
        try:
            targets = await self.db.read(self._load, appid)  # NotFound for an unknown app
        finally:
            if self._loading.get(appid) is asyncio.current_task():  # not a newer one
                del self._loading[appid]
        if generation == self._generation:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[appid] = (now, targets)
        return targets

    def forget_expired(self) -> None:
        """Drop the entries past ``ttl_s`` (never served again: the next request loads
        afresh). Called when memory is given back after a wave of event streams closed
        (``memory.release``): an entry loaded while they opened, kept after, holds the
        allocator's arena it was made in, among the streams' freed memory."""
        now = time.monotonic()
        for appid in [a for a, (at, _) in self._entries.items() if now - at >= self.ttl_s]:
            del self._entries[appid]
        memory.shrink(self._entries)

    def invalidate(self, appid: str | None = None) -> None:
        self._generation += 1
        if appid is None:
            self._entries.clear()
            self._loading.clear()  # a request from now on loads afresh
        else:
            self._entries.pop(appid, None)
            self._loading.pop(appid, None)
