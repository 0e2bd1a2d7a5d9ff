"""The console's real-time view, pushed: accepted events go to the viewers of their app's
real-time view over the event stream (the broker the runtimes' stream and the live test view
use: in process, or through Redis to every node).

Cost at ingest: :meth:`LiveFeed.accepted` first asks whether anybody watches the app (one dict
lookup); nobody does, nothing more is done. Somebody does: the batch is folded into the app's
pending :class:`~miniport.analytics.live.LiveDigest` and one message goes out per
:data:`MIN_INTERVAL_S` at most (the first batch after a quiet spell goes at once, the ones
that follow within the interval wait and go together), whatever the number of batches or
viewers.

Who watches: a console stream for an app (:meth:`LiveFeed.watch`) makes its node say so to
every node (a ``watching`` message on the broker's :data:`WATCH_CHANNEL`) when it opens and
every :data:`ANNOUNCE_S` while it stays open; a node takes an app as watched for
:data:`WATCH_TTL_S` after the last word. So a node that accepts events needs no I/O to know,
a console on another node gets them, and once the last viewer leaves pushes stop within
``WATCH_TTL_S``. A node started after an announcement learns of the watch at the next one.
Each app's messages go to its own channel (:func:`live_channel`): a viewer of one app never
receives another app's events. A node with viewers of an app listens on that channel once and
relays what every node sent to its viewers (:func:`viewer_channel`), merged to at most one
message per ``MIN_INTERVAL_S`` (so a viewer gets a few messages a second however many nodes
take the app's events)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..events.broker import Broker, Message, Subscription
from ..tasks import stop_tasks

if TYPE_CHECKING:  # the analytics modules load at the first push (most commands never push)
    from ..analytics.ingest_rules import CheckedEvent
    from ..analytics.live import LiveDigest

log = logging.getLogger("miniport.analytics")

# broker keys no runtime can have (a user id never holds a control character: validate_id),
# so no device's stream, whatever user id a host gives it, ever shares a console's channel
WATCH_CHANNEL = "\x00live:watching"
ANNOUNCE_S = 5.0
WATCH_TTL_S = 15.0
MIN_INTERVAL_S = 0.25


def live_channel(appid: str) -> str:
    """The event-stream key ``appid``'s real-time messages go to, from every node."""
    return f"\x00live:{appid}"


def viewer_channel(appid: str) -> str:
    """The key this node's console streams of ``appid`` listen on: what ``live_channel``
    brought from every node, at most one message per MIN_INTERVAL_S (delivered here only)."""
    return f"\x00live-viewers:{appid}"


class _Relay:
    """The sink of a node's one subscription to an app's ``live_channel`` (while it has
    viewers of that app): hands each message to the feed (never raises: it runs in the
    broker's delivery)."""

    __slots__ = ("appid", "feed")

    def __init__(self, feed: LiveFeed, appid: str) -> None:
        self.feed, self.appid = feed, appid

    def write(self, frame: bytes, message: Message) -> None:
        if message.get("type") != "realtime":
            return
        from ..analytics.live import well_formed

        if well_formed(message):
            self.feed._arrived(self.appid, message)
        else:  # not one of ours (another version on the same Redis?): nothing to relay
            log.warning("real-time message for %s not understood: dropped", self.appid)

    def end(self) -> None:
        return None


class LiveFeed:
    def __init__(self, broker: Broker, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.broker = broker
        self._now = monotonic
        self._until: dict[str, float] = {}  # app -> when its watch ends unless announced again
        self._local: dict[str, set[Subscription]] = {}  # this node's viewers, by app
        self._pending: dict[str, LiveDigest] = {}
        self._sent: dict[str, float] = {}  # app -> when its last message went
        self._tasks: set[asyncio.Task[None]] = set()
        self._announcer: asyncio.Task[None] | None = None
        self._relays: dict[str, Subscription] = {}  # app -> this node's live_channel listener
        self._inbox: dict[str, list[Message]] = {}  # messages waiting for the next relay
        self._relayed: dict[str, float] = {}  # app -> when its viewers here last got one
        self.messages = 0  # sent by this node (a test and benchmark figure)
        self._control = broker.subscribe(WATCH_CHANNEL, "node", broadcast=False)
        self._control.sink = self

    # --- the broker's sink for WATCH_CHANNEL: announcements from every node (this one too)
    def write(self, frame: bytes, message: Message) -> None:
        apps = message.get("apps")
        if message.get("type") != "watching" or not isinstance(apps, list):
            return  # not an announcement (this runs in the broker's delivery: never raise)
        until = self._now() + WATCH_TTL_S
        for appid in apps:
            if isinstance(appid, str):
                self._until[appid] = until

    def end(self) -> None:
        return None

    # --- viewers
    def watching(self, appid: str) -> bool:
        until = self._until.get(appid)
        if until is None:
            return False
        if until > self._now():
            return True
        del self._until[appid]
        self._pending.pop(appid, None)
        self._sent.pop(appid, None)
        return False

    async def watch(self, appid: str) -> Subscription:
        """A subscription for a console stream of ``appid``'s real-time view (the stream
        unsubscribes it when it ends). This node takes the app as watched at once; the others
        as soon as the broker delivers the announcement (through Redis: before the console's
        first fetch, in practice, which needs a round trip over HTTP)."""
        sub = self.broker.subscribe(viewer_channel(appid), "console", broadcast=False)
        self._local.setdefault(appid, set()).add(sub)
        if appid not in self._relays:
            relay = self.broker.subscribe(live_channel(appid), "relay", broadcast=False)
            relay.sink = _Relay(self, appid)
            self._relays[appid] = relay
        self._until[appid] = self._now() + WATCH_TTL_S
        try:
            await self.broker.publish(WATCH_CHANNEL, {"type": "watching", "apps": [appid]})
        except Exception as exc:  # Redis away: this node's events still come; others at the
            log.warning("could not announce a real-time viewer: %r", exc)  # next round
        if self._announcer is None or self._announcer.done():
            self._announcer = asyncio.create_task(self._announce())
        return sub

    def viewers(self) -> int:
        """Open real-time streams on this node."""
        return sum(1 for subs in self._local.values() for sub in subs if not sub.closed)

    async def _announce(self) -> None:
        while True:
            await asyncio.sleep(ANNOUNCE_S)
            for appid in list(self._local):
                open_ = {sub for sub in self._local[appid] if not sub.closed}
                if open_:
                    self._local[appid] = open_
                else:
                    del self._local[appid]
                    self.broker.unsubscribe(self._relays.pop(appid))
                    self._inbox.pop(appid, None)
                    self._relayed.pop(appid, None)
            if not self._local:
                return
            try:
                await self.broker.publish(
                    WATCH_CHANNEL, {"type": "watching", "apps": sorted(self._local)}
                )
            except Exception as exc:  # Redis away for a moment: the next round says it again
                log.warning("could not announce real-time viewers: %r", exc)

    # --- ingest
    def accepted(
        self,
        appid: str,
        user_id: str,
        received_ms: int,
        events: Sequence[CheckedEvent],
        *,
        resync: bool = False,
    ) -> None:
        """A batch of ``user_id``'s events was stored (visible in the reports). ``resync``:
        some of ``events`` had been stored before, so what the batch added is not known: the
        message tells the console to fetch the view again instead."""
        if not events or not self.watching(appid):
            return
        digest = self._pending.get(appid)
        if digest is None:
            from ..analytics.live import LiveDigest

            digest = self._pending[appid] = LiveDigest()
            wait = self._sent.get(appid, -MIN_INTERVAL_S) + MIN_INTERVAL_S - self._now()
            asyncio.get_running_loop().call_later(max(0.0, wait), self._flush, appid)
        if resync:
            digest.resync = True
        else:
            digest.add(user_id, received_ms, events)

    def _flush(self, appid: str) -> None:
        digest = self._pending.pop(appid, None)
        if digest is None or digest.empty:
            return
        self._sent[appid] = self._now()
        self.messages += 1
        task = asyncio.create_task(self._publish(live_channel(appid), digest.message(appid)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- relay: what every node sent about an app, to this node's viewers of it
    def _arrived(self, appid: str, message: Message) -> None:
        inbox = self._inbox.get(appid)
        if inbox is None:
            inbox = self._inbox[appid] = []
            wait = self._relayed.get(appid, -MIN_INTERVAL_S) + MIN_INTERVAL_S - self._now()
            asyncio.get_running_loop().call_later(max(0.0, wait), self._relay, appid)
        inbox.append(message)

    def _relay(self, appid: str) -> None:
        messages = self._inbox.pop(appid, None)
        if not messages:
            return
        from ..analytics.live import merge_messages

        merged = merge_messages(appid, messages)  # each was well formed when it came
        self._relayed[appid] = self._now()
        self.broker.deliver(viewer_channel(appid), merged)

    async def _publish(self, channel: str, message: dict[str, Any]) -> None:
        try:
            await self.broker.publish(channel, message)
        except Exception as exc:  # the console catches up at its next (re)connect
            log.warning("could not push real-time events: %r", exc)

    async def close(self) -> None:
        await stop_tasks(*self._tasks, self._announcer)
        self.broker.unsubscribe(self._control)
        for relay in self._relays.values():
            self.broker.unsubscribe(relay)
        self._relays.clear()
