"""Open console event streams end when the access that opened them is gone.

A console stream (the real-time view, the live test view: an app's live analytics events) is
opened by an API key or a console session, of a member of the app; that is checked when it
opens, and the stream then stays open for as long as its client keeps it. So each console
stream is kept here with the check that let it open (``watch``: the web layer's own check,
run again on what the request presented), and that same check is run again:

- at a word on the broker's :data:`CHANGED_CHANNEL`: whoever changes access (an API key
  revoked, rotated or replaced; a console session ended, a user's sessions ended, role
  changed or account disabled; a member added, changed or removed) says so through
  ``announce`` (through Redis: every node, at once). The word carries no authority and names
  nobody: it only makes each node check its console streams again against the database now
  (a forged one costs a few reads), so what a node refuses and what it ends are the same;
- every :data:`SWEEP_S` while console streams are open on the node: a session that expired,
  and a word lost (Redis away when it was said, the CLI without Redis) end within a sweep.

A stream whose check now refuses is told why first: an ``unauthorized`` message with the
error body a request with that credential now gets (``error``: unauthorized, forbidden or
not_found), then it ends; its client reconnects and is refused. A check that cannot be made
(the database away for a moment) ends nothing: the next word or sweep checks again.

Cost: console streams are few (one per open console page), each a few reads per check. The
runtimes' streams (10,000 a node) are not looked at, and get nothing added: this keeps its
own table of console streams, and its sweep runs only while one is open."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ..errors import MiniportError
from ..events.broker import Broker, Message, Subscription, end_with

log = logging.getLogger(__name__)

# a broker key no runtime can have (a user id never holds a control character: validate_id)
CHANGED_CHANNEL = "\x00console-access:changed"
SWEEP_S = 15.0

Check = Callable[[], Awaitable[object]]
"""Checks again whether a console stream's opener may still have it: raises the
``MiniportError`` a request with that credential now gets, else returns."""


def notice(exc: MiniportError) -> Message:
    """A console stream's last message when its access is gone ("invalid API key")."""
    return {"type": "unauthorized", **exc.as_dict()}


class ConsoleStreamGuard:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._open: dict[Subscription, Check] = {}
        self.changes = 0  # words heard: a stream opened across one is checked again at once
        self._stale = False  # a word came since the checker last began a round
        self._checker: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._control = broker.subscribe(CHANGED_CHANNEL, "node", broadcast=False)
        self._control.sink = self

    def watch(self, sub: Subscription, check: Check, since: int) -> None:
        """A console stream opened on this node; ``check`` let it open and says whether it
        still may. ``since``: ``changes`` when that check began (a word heard since may have
        been said before the stream was here to be checked again: it is, at once)."""
        self._open[sub] = check
        if since != self.changes:
            self._check_soon()
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep())

    def streams(self) -> int:
        """Console streams open on this node (watched)."""
        return sum(1 for sub in self._open if not sub.closed)

    async def check(self) -> int:
        """Check each open console stream's access again; end those refused, after why; how
        many ended."""
        ended = 0
        for sub, check in list(self._open.items()):
            if sub.closed:  # the client went away
                self._open.pop(sub, None)
                continue
            try:
                await check()
            except MiniportError as exc:
                if not sub.closed:
                    end_with([sub], notice(exc))
                    ended += 1
                self._open.pop(sub, None)
            except Exception as exc:  # the database away for a moment: the next round checks
                log.warning("could not check a console stream's access: %r", exc)
        if ended:
            log.info("ended %d console event streams: their access is gone", ended)
        return ended

    async def announce(self) -> None:
        """Tell every node that access changed, and check this node's streams before
        returning: the change's caller goes on (sends the app's next events, say) only once
        the streams it ended here are told. Never raises: said to nobody (the broker away),
        the other nodes find it at their sweep."""
        try:
            await self.broker.publish(CHANGED_CHANNEL, {"type": "changed"})
        except Exception as exc:
            log.warning("could not tell the other nodes of an access change: %r", exc)
        await self.check()

    def _check_soon(self) -> None:
        self._stale = True
        if self._checker is None or self._checker.done():
            self._checker = asyncio.create_task(self._check_while_stale())

    async def _check_while_stale(self) -> None:
        """Several words at once: one or two rounds."""
        while self._stale:
            self._stale = False
            await self.check()

    async def _sweep(self) -> None:
        while self._open:
            await asyncio.sleep(SWEEP_S)
            await self.check()

    # --- the broker's sink for CHANGED_CHANNEL: a node changed access (this one too)
    def write(self, frame: bytes, message: Message) -> None:
        """Runs in the broker's delivery: never raises."""
        if message.get("type") != "changed":
            return
        self.changes += 1
        if self._open:
            self._check_soon()

    def end(self) -> None:
        return None

    async def close(self) -> None:
        tasks = [t for t in (self._sweeper, self._checker) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._open.clear()
        self.broker.unsubscribe(self._control)
