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
- every ``SWEEP_S`` while console streams are open on the node: a session that expired,
  and a word lost (Redis away when it was said, the CLI without Redis) end within a sweep.

A stream whose check now refuses is told why first: an ``unauthorized`` message with the
error body a request with that credential now gets (``error``: unauthorized, forbidden or
not_found), then it ends; its client reconnects and is refused. A check that cannot be made
(the database away for a moment) ends nothing: the next word or sweep checks again.

Cost: console streams are few (one per open console page), each a few reads per check. The
runtimes' streams (10,000 a node) are not looked at, and get nothing added: this keeps its
own table of console streams, and its sweep runs only while one is open. The word and the sweep
are ``services.node_watch``'s, shared with the runtime streams' guard."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from ..errors import MiniportError, Unavailable
from ..events.broker import Broker, Message, Subscription, end_with
from .node_watch import NodeWatch

log = logging.getLogger(__name__)

# a broker key no runtime can have (a user id never holds a control character: validate_id)
CHANGED_CHANNEL = "\x00console-access:changed"

Check = Callable[[], Awaitable[object]]
"""Checks again whether a console stream's opener may still have it: raises the
``MiniportError`` a request with that credential now gets, else returns."""


def notice(exc: MiniportError) -> Message:
    """A console stream's last message when its access is gone ("invalid API key")."""
    return {"type": "unauthorized", **exc.as_dict()}


class ConsoleStreamGuard(NodeWatch):
    word = "changed"

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker, CHANGED_CHANNEL)
        self._open: dict[Subscription, Check] = {}
        self.changes = 0  # words heard: a stream opened across one is checked again at once

    def watch(self, sub: Subscription, check: Check, since: int) -> None:
        """A console stream opened on this node; ``check`` let it open and says whether it
        still may. ``since``: ``changes`` when that check began (a word heard since may have
        been said before the stream was here to be checked again: it is, at once)."""
        self._open[sub] = check
        if since != self.changes:
            self.recheck_soon()
        self.start_sweeping()

    def streams(self) -> int:
        """Console streams open on this node (watched)."""
        return sum(1 for sub in self._open if not sub.closed)

    def watching(self) -> bool:
        return bool(self._open)

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
            except Unavailable as exc:  # not an answer: the next round checks
                log.warning("could not check a console stream's access: %s", exc.message)
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

    async def recheck(self) -> int:
        return await self.check()

    async def sweep(self) -> int:
        return await self.check()

    def heard(self, message: Message) -> None:
        self.changes += 1
        if self._open:
            self.recheck_soon()

    async def announce(self) -> None:
        """Tell every node that access changed, and check this node's streams before
        returning: the change's caller goes on (sends the app's next events, say) only once
        the streams it ended here are told. Never raises: said to nobody (the broker away),
        the other nodes find it at their sweep."""
        try:
            await self.say({"type": self.word})
        except Exception as exc:
            log.warning("could not tell the other nodes of an access change: %r", exc)
        await self.check()

    async def close(self) -> None:
        await super().close()
        self._open.clear()
