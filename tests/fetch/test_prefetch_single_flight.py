"""Pre-fetch's single flight per (app, user): the same launch joins the fetch in flight; a
launch that differs runs after it, so the newest launch's data is what is read last."""

from __future__ import annotations

import asyncio

from miniport.domain.requests import Launch
from miniport.fetch.prefetch import SingleFlight
from miniport.storage.fetches import FetchRecord


class Work:
    def __init__(self, fail_first: bool = False) -> None:
        self.calls: list[Launch] = []
        self.running = 0
        self.most_at_once = 0
        self.gate = asyncio.Event()
        self.fail_first = fail_first

    async def __call__(self, appid: str, user_id: str, launch: Launch) -> FetchRecord | None:
        self.calls.append(launch)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.gate.wait()
            if self.fail_first and len(self.calls) == 1:
                raise RuntimeError("the developer's server is down")
            return None
        finally:
            self.running -= 1


async def test_the_same_launch_joins_the_fetch_in_flight() -> None:
    work = Work()
    flight = SingleFlight(work)
    first = flight.start("app", "u1", Launch(path="pages/a", scene=1001))
    second = flight.start("app", "u1", Launch(path="pages/a", scene=1001))
    assert second is first
    work.gate.set()
    await first
    assert len(work.calls) == 1
    assert flight.in_flight("app", "u1") is None


async def test_a_launch_elsewhere_runs_after_the_one_in_flight_not_instead() -> None:
    work = Work()
    flight = SingleFlight(work)
    first = flight.start("app", "u1", Launch(path="pages/a", query="id=1"))
    await asyncio.sleep(0)
    second = flight.start("app", "u1", Launch(path="pages/b", query="id=2", scene=1047))
    assert second is not first
    assert flight.in_flight("app", "u1") is second  # readers wait for the newest launch
    await asyncio.sleep(0)
    assert [c.path for c in work.calls] == ["pages/a"]  # one request at a time per user
    work.gate.set()
    await second
    assert [(c.path, c.query, c.scene) for c in work.calls] == [
        ("pages/a", "id=1", 1001),
        ("pages/b", "id=2", 1047),
    ]
    assert work.most_at_once == 1
    assert flight.in_flight("app", "u1") is None and flight.in_flight_count() == 0


async def test_a_failed_earlier_launch_does_not_stop_the_next() -> None:
    work = Work(fail_first=True)
    flight = SingleFlight(work)
    first = flight.start("app", "u1", Launch(path="pages/a"))
    second = flight.start("app", "u1", Launch(path="pages/b"))
    work.gate.set()
    assert await first is None
    await second
    assert [c.path for c in work.calls] == ["pages/a", "pages/b"]


async def test_other_users_are_not_held_up() -> None:
    work = Work()
    flight = SingleFlight(work)
    flight.start("app", "u1", Launch(path="pages/a"))
    flight.start("app", "u2", Launch(path="pages/a"))
    await asyncio.sleep(0)
    assert work.running == 2
    work.gate.set()
    await flight.drain()
