"""Write-behind flushes: when ``flush()`` returns, what was queued before it is stored, even when
the background group commit had already taken the items and was still writing them."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from miniport.services.write_behind import WriteBehind


class SlowDb:
    """A database whose writes wait until released, recording what each one stored."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.stored: list[Any] = []

    async def write(self, fn: Any, launches: Any, records: Any) -> None:
        await self.release.wait()
        self.stored.extend(launches)


async def test_flush_waits_for_a_write_already_in_progress() -> None:
    db = SlowDb()
    store = SimpleNamespace(write_batch=None)
    wb = WriteBehind(db, store, interval_s=0)  # type: ignore[arg-type]
    wb.launch("app", "alice", 1.0)
    await asyncio.sleep(0.01)  # the background flush takes the launch and blocks in write
    assert not db.stored
    waiter = asyncio.create_task(wb.flush())
    await asyncio.sleep(0.01)
    assert not waiter.done()  # the queue is empty, but the launch is not stored yet
    db.release.set()
    await asyncio.wait_for(waiter, 5)
    assert db.stored == [("app", "alice", 1.0)]
    await wb.close()
