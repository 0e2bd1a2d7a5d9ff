"""Pre-fetch at cold start: one in-flight fetch per (app, user) at a time, shared by every reader
of the same launch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..domain.requests import Launch
from ..storage.fetches import FetchRecord

log = logging.getLogger("miniport.prefetch")
Key = tuple[str, str]


class SingleFlight:
    """Runs at most one ``work(appid, user_id, launch)`` per key at a time. A second launch
    with the same path, query and scene while one is in flight joins it instead of fetching
    again; a launch that differs (the user reopened the app elsewhere before the first answer
    came) runs after it, so its data, not the earlier launch's, is what the user reads last."""

    def __init__(self, work: Callable[[str, str, Launch], Awaitable[FetchRecord | None]]) -> None:
        self._work = work
        # the newest task per key, and the launch it fetches for
        self._inflight: dict[Key, tuple[asyncio.Task[FetchRecord | None], Launch]] = {}

    def start(self, appid: str, user_id: str, launch: Launch) -> asyncio.Task[FetchRecord | None]:
        key = (appid, user_id)
        current = self._inflight.get(key)
        if current is not None and current[1] == launch:
            return current[0]
        after = current[0] if current is not None else None
        task = asyncio.create_task(self._run(key, launch, after=after))
        self._inflight[key] = (task, launch)
        return task

    async def _run(
        self, key: Key, launch: Launch, after: asyncio.Task[FetchRecord | None] | None
    ) -> FetchRecord | None:
        try:
            if after is not None:
                await asyncio.wait({after})  # never raises: the earlier launch's outcome is its own
            return await self._work(key[0], key[1], launch)
        except Exception:
            log.exception("pre-fetch for %s/%s failed", *key)
            return None
        finally:
            current = self._inflight.get(key)
            if current is not None and current[0] is asyncio.current_task():
                del self._inflight[key]

    def in_flight(self, appid: str, user_id: str) -> asyncio.Task[FetchRecord | None] | None:
        current = self._inflight.get((appid, user_id))
        return current[0] if current is not None else None

    def in_flight_count(self) -> int:
        return len(self._inflight)

    async def wait(self, appid: str, user_id: str, timeout_s: float) -> None:
        task = self.in_flight(appid, user_id)
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            return

    async def drain(self) -> None:
        tasks = [task for task, _ in self._inflight.values()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
