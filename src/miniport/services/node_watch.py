"""What the two stream guards share: a node's watch over the event streams open on it.

A guard (``services.stream_guard``: runtime streams and their tokens;
``services.console_guard``: console streams and their access) ends the streams whose access
is gone. It learns of a change in two ways, both here:

- a word on its broker control channel (through Redis: every node, at once). A word carries
  no authority and names nobody: it only makes the node read again from the database
  (``recheck``), so what a node refuses and what it ends are the same. Several words at once
  make one or two rounds, never one per word;
- a sweep every :data:`SWEEP_S` while the guard's streams are open on the node (``watching``),
  which catches what time alone ends (an expired token or session) and a word lost (Redis
  away when it was said, the CLI without Redis).

One task per node for each, and none while nothing is open."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from ..events.broker import Broker, Message
from ..tasks import stop_tasks

SWEEP_S = 15.0  # the keep-alive period: a stream's client hears from it at least this often


class NodeWatch:
    word: ClassVar[str]
    """The ``type`` of the messages on the control channel that say something changed."""

    def __init__(self, broker: Broker, channel: str) -> None:
        self.broker = broker
        self._channel = channel
        self._stale = False  # a word came since the last round began
        self._rechecker: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._control = broker.subscribe(channel, "node", broadcast=False)
        self._control.sink = self

    # --- what each guard says
    def watching(self) -> bool:
        """Whether streams of this guard are open on the node: the sweep runs while so."""
        raise NotImplementedError

    async def recheck(self) -> object:
        """Read again what a word says changed, and end what it refuses. Never raises."""
        raise NotImplementedError

    async def sweep(self) -> int:
        """A sweep's round: ``recheck`` and what time alone ends; how many streams ended."""
        raise NotImplementedError

    def heard(self, message: Message) -> None:
        """A word came (from this node too): a round soon."""
        self.recheck_soon()

    # --- shared machinery
    async def say(self, message: Message) -> None:
        """Tell every node (this one too) on the control channel."""
        await self.broker.publish(self._channel, message)

    def recheck_soon(self) -> None:
        self._stale = True
        if self._rechecker is None or self._rechecker.done():
            self._rechecker = asyncio.create_task(self._recheck_while_stale())

    async def _recheck_while_stale(self) -> None:
        while self._stale:
            self._stale = False
            await self.recheck()

    def start_sweeping(self) -> None:
        """A stream of this guard opened: the sweep runs (until none is open)."""
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        while self.watching():
            await asyncio.sleep(SWEEP_S)
            await self.sweep()

    # --- the broker's sink for the control channel
    def write(self, frame: bytes, message: Message) -> None:
        """Runs in the broker's delivery: never raises."""
        if message.get("type") == self.word:
            self.heard(message)

    def end(self) -> None:
        return None

    async def close(self) -> None:
        await stop_tasks(self._sweeper, self._rechecker)
        self.broker.unsubscribe(self._control)
