"""The in-process app cache never keeps what an invalidation made stale."""

from __future__ import annotations

import asyncio
from typing import Any

from miniport.services.app_cache import AppCache


class SlowDB:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.loads = 0

    async def read(self, fn: Any, *args: Any) -> Any:
        self.loads += 1
        await self.release.wait()
        return fn(*args)


class Registry:
    def __init__(self) -> None:
        self.secret = "old"

    def get_app(self, appid: str) -> str:
        return self.secret

    def fetch_urls(self, appid: str) -> dict[str, Any]:
        return {}

    def fetch_settings(self, appid: str) -> dict[str, Any] | None:
        return None


async def test_a_load_begun_before_an_invalidation_is_not_kept() -> None:
    db, registry = SlowDB(), Registry()
    cache = AppCache(db, registry)  # type: ignore[arg-type]
    loading = asyncio.create_task(cache.get("a"))
    await asyncio.sleep(0)
    registry.secret = "new"  # changed meanwhile (say, a rotated secret) ...
    cache.invalidate("a")  # ... and invalidated while the old load is in flight
    db.release.set()
    await loading
    assert (await cache.get("a")).app == "new"  # reloaded, not the stale copy
    assert db.loads == 2


async def test_a_cached_entry_is_served_without_a_load() -> None:
    db, registry = SlowDB(), Registry()
    db.release.set()
    cache = AppCache(db, registry)  # type: ignore[arg-type]
    await cache.get("a")
    await cache.get("a")
    assert db.loads == 1
