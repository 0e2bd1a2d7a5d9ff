"""Write-behind flushes: when ``flush()`` returns, what was queued before it is stored, even when
the background group commit had already taken the items and was still writing them."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

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


async def test_the_oldest_launches_go_first_when_the_database_stays_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past MAX_PENDING queued launches, the oldest are given up on. Launches put back after
    a failed write went behind those queued meanwhile, and the trim cut the newest."""
    from miniport.errors import StateUnavailable
    from miniport.services import write_behind

    monkeypatch.setattr(write_behind, "MAX_PENDING", 3)

    class Away:
        async def write(self, fn: Any, launches: Any, records: Any) -> None:
            for n in range(4, 6):  # two more launches arrive while this write fails
                wb.launch("app", f"u{n}", float(n))
            raise StateUnavailable("the state database cannot be reached right now")

    wb = WriteBehind(Away(), SimpleNamespace(write_batch=None), interval_s=60)  # type: ignore[arg-type]
    for n in range(1, 4):
        wb.launch("app", f"u{n}", float(n))
    wb._task.cancel()  # type: ignore[union-attr]  # this test flushes by hand
    with pytest.raises(StateUnavailable):
        await wb.flush()
    assert wb._launches == {("app", "u3"): 3.0, ("app", "u4"): 4.0, ("app", "u5"): 5.0}
