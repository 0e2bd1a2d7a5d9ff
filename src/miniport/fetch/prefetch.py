"""Pre-fetch at cold start: one in-flight fetch per (app, user), shared by every reader."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..domain.requests import Launch
from ..storage.fetches import FetchRecord

log = logging.getLogger("miniport.prefetch")
Key = tuple[str, str]


class SingleFlight:
    """Runs at most one ``work(appid, user_id, launch)`` per key; a second launch while one is in
    flight joins it instead of fetching again."""

    def __init__(self, work: Callable[[str, str, Launch], Awaitable[FetchRecord | None]]) -> None:
        self._work = work
        self._inflight: dict[Key, asyncio.Task[FetchRecord | None]] = {}

    def start(self, appid: str, user_id: str, launch: Launch) -> asyncio.Task[FetchRecord | None]:
        key = (appid, user_id)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._run(key, launch))
            self._inflight[key] = task
        return task

    async def _run(self, key: Key, launch: Launch) -> FetchRecord | None:
        try:
            return await self._work(key[0], key[1], launch)
        except Exception:
            log.exception("pre-fetch for %s/%s failed", *key)
            return None
        finally:
            self._inflight.pop(key, None)

    def in_flight(self, appid: str, user_id: str) -> asyncio.Task[FetchRecord | None] | None:
        return self._inflight.get((appid, user_id))

    def in_flight_count(self) -> int:
        return len(self._inflight)

    async def wait(self, appid: str, user_id: str, timeout_s: float) -> None:
        task = self._inflight.get((appid, user_id))
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            return

    async def drain(self) -> None:
        tasks = list(self._inflight.values())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
