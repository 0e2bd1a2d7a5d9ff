"""Stopping background tasks (a sweep, a relay, a reader) when what owns them closes."""

from __future__ import annotations

import asyncio
import contextlib


async def stop_tasks(*tasks: asyncio.Task[object] | asyncio.Task[None] | None) -> None:
    """Cancel these tasks (None: none), then wait for each to end, whatever it raised: a
    task that failed has nothing more to say at close."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
