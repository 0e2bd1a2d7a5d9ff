"""The in-process app cache never keeps what an invalidation made stale, and the requests that
miss together share one load."""

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


async def test_requests_that_miss_together_share_one_load() -> None:
    """A wave of requests for an app whose entry expired (10,000 event streams opening) reads
    the database once, not once per request."""
    db, registry = SlowDB(), Registry()
    cache = AppCache(db, registry)  # type: ignore[arg-type]
    waiting = [asyncio.create_task(cache.get("a")) for _ in range(50)]
    await asyncio.sleep(0)
    db.release.set()
    assert {t.app for t in await asyncio.gather(*waiting)} == {"old"}
    assert db.loads == 1
    assert not cache._loading  # nothing in flight is kept


async def test_a_request_that_gives_up_does_not_cancel_the_shared_load() -> None:
    db, registry = SlowDB(), Registry()
    cache = AppCache(db, registry)  # type: ignore[arg-type]
    first = asyncio.create_task(cache.get("a"))
    second = asyncio.create_task(cache.get("a"))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    db.release.set()
    assert (await second).app == "old"
    assert first.cancelled() and db.loads == 1


async def test_a_failed_load_fails_every_request_sharing_it_and_the_next_loads_again() -> None:
    db, registry = SlowDB(), Registry()
    cache = AppCache(db, registry)  # type: ignore[arg-type]
    registry.get_app = lambda appid: (_ for _ in ()).throw(LookupError(appid))  # type: ignore[method-assign]
    waiting = [asyncio.create_task(cache.get("a")) for _ in range(3)]
    await asyncio.sleep(0)
    db.release.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, LookupError) for r in results) and db.loads == 1
    del registry.get_app  # the app is there now
    assert (await cache.get("a")).app == "old" and db.loads == 2


async def test_expired_entries_are_dropped_when_memory_is_given_back() -> None:
    """After a wave of event streams closed (``memory.release``), an entry past its time is
    dropped rather than kept until the app is next asked for; a fresh one stays."""
    from miniport import memory

    db, registry = SlowDB(), Registry()
    db.release.set()
    cache = AppCache(db, registry, ttl_s=60)  # type: ignore[arg-type]
    await cache.get("old")
    await cache.get("new")
    cache._entries["old"] = (cache._entries["old"][0] - 61, cache._entries["old"][1])
    memory.release()
    assert list(cache._entries) == ["new"]
    await cache.get("new")
    assert db.loads == 2  # still served from the cache
