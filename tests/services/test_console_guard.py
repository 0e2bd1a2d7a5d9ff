"""The console stream guard on one node (memory broker): a word makes it check every console
stream it keeps again, ending (after why) those refused; a check that cannot be made ends
nothing; a stream opened across a word is checked at once; the sweep ends what no word said,
and stops once no console stream is open. (Over HTTP: tests/web/test_console_stream_access.py;
across nodes: tests/events/test_redis_broker.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from miniport.errors import NotFound, StateUnavailable, Unauthorized
from miniport.events.broker import MemoryBroker, Subscription
from miniport.services import node_watch
from miniport.services.console_guard import CHANGED_CHANNEL, ConsoleStreamGuard


class Access:
    """A check whose answer the test sets: None (let in) or the error to raise."""

    def __init__(self) -> None:
        self.refuse: Exception | None = None
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.refuse is not None:
            raise self.refuse


def watched() -> tuple[MemoryBroker, ConsoleStreamGuard, Subscription, Access]:
    """A node's broker and guard, and one console stream open on it with its check."""
    broker = MemoryBroker()
    guard = ConsoleStreamGuard(broker)
    access = Access()
    sub = broker.subscribe("\x00test:t1", "console", broadcast=False)
    guard.watch(sub, access, guard.changes)
    return broker, guard, sub, access


async def settled() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_word_ends_the_refused_streams_only_after_why() -> None:
    broker = MemoryBroker()
    guard = ConsoleStreamGuard(broker)
    kept, gone = Access(), Access()
    sub_kept = broker.subscribe("\x00live-viewers:wxa", "console", broadcast=False)
    sub_gone = broker.subscribe("\x00live-viewers:wxa", "console", broadcast=False)
    runtime = broker.subscribe("alice", "phone", appid="wxa", issued_at=1)
    guard.watch(sub_kept, kept, guard.changes)
    guard.watch(sub_gone, gone, guard.changes)
    gone.refuse = Unauthorized("invalid API key")
    await broker.publish(CHANGED_CHANNEL, {"type": "changed"})
    await settled()
    assert sub_gone.closed and not sub_kept.closed and not runtime.closed
    assert sub_gone.take() == [
        {"type": "unauthorized", "error": "unauthorized", "message": "invalid API key"}]
    assert (kept.calls, gone.calls) == (1, 1) and guard.streams() == 1
    await broker.publish(CHANGED_CHANNEL, {"type": "something else"})  # not a word: nothing
    await settled()
    assert kept.calls == 1
    await guard.close()


async def test_a_check_that_cannot_be_made_ends_nothing() -> None:
    _, guard, sub, access = watched()
    access.refuse = OSError("database away")
    assert await guard.check() == 0 and not sub.closed
    # the same, as the storage boundary says it (a MiniportError, but not a refusal)
    access.refuse = StateUnavailable("the state database cannot be reached right now")
    assert await guard.check() == 0 and not sub.closed
    access.refuse = NotFound("app 'wxa' not found")
    assert await guard.check() == 1 and sub.closed
    assert sub.take()[0]["error"] == "not_found"
    assert guard.streams() == 0
    await guard.close()


async def test_a_stream_opened_across_a_word_is_checked_at_once() -> None:
    """Its check began before a word it could not hear yet: the word's round may have run
    before the stream was kept."""
    broker = MemoryBroker()
    guard = ConsoleStreamGuard(broker)
    access = Access()
    since = guard.changes
    await broker.publish(CHANGED_CHANNEL, {"type": "changed"})  # the access goes meanwhile
    access.refuse = Unauthorized("invalid API key")
    sub = broker.subscribe("\x00test:t1", "console", broadcast=False)
    guard.watch(sub, access, since)
    await settled()
    assert sub.closed and access.calls == 1
    # opened after the word: no check until the next one
    other = broker.subscribe("\x00test:t1", "console", broadcast=False)
    guard.watch(other, Access(), guard.changes)
    await settled()
    assert not other.closed
    await guard.close()


async def test_announce_checks_this_node_even_when_the_broker_is_away() -> None:
    broker, guard, sub, access = watched()

    async def away(user_id: str, message: Any) -> None:
        raise ConnectionError("Redis away")

    broker.publish = away  # type: ignore[method-assign]
    access.refuse = Unauthorized("invalid API key")
    await guard.announce()  # does not raise
    assert sub.closed
    await guard.close()


async def test_the_sweep_ends_what_no_word_said_and_stops_when_none_is_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(node_watch, "SWEEP_S", 0.05)
    broker = MemoryBroker()
    guard = ConsoleStreamGuard(broker)
    access, other = Access(), Access()
    sub = broker.subscribe("\x00test:t1", "console", broadcast=False)
    left = broker.subscribe("\x00test:t1", "console", broadcast=False)
    guard.watch(sub, access, guard.changes)
    guard.watch(left, other, guard.changes)
    broker.unsubscribe(left)  # its client went away: no longer checked, let go
    access.refuse = Unauthorized("sign in")
    await asyncio.sleep(0.3)
    assert sub.closed and other.calls == 0
    assert guard._sweeper is not None and guard._sweeper.done()  # nothing left to sweep
    await guard.close()
