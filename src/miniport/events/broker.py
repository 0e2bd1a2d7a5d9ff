"""The event stream: messages for a user's connected runtimes (server-sent events).

``MemoryBroker`` fans out inside one process (the embedded default). ``RedisBroker`` publishes
through Redis pub/sub so every API node's subscribers get the message, whichever node or worker
produced it. Both deliver to every device of the user, or to one device when ``device_id`` is
given (a test configuration goes to the tester's device only). A message naming an ``appid``
reaches only the streams opened for that app (and streams opened without one): an analytics
publish goes to that app's runtimes, not to every runtime of every app.

Cost per stream is what 10,000 open streams need: subscriptions are kept per (user, app), so a
message is offered only to the streams it concerns; a subscription is a slotted object. One with
a ``sink`` (an open HTTP stream) has each message's frame written to it at once, by the code
that publishes: no queue, no task and no wake-up per stream; one without (``next``/``take``)
queues in a bounded deque made on first use. A message is encoded once, whatever the number of
streams it reaches (``Event`` keeps its frame).

A runtime's subscription keeps the issue time of the token that opened its stream, so the
streams of tokens that stop being valid can be ended (``end_streams``: a user's tokens revoked;
``end_expired``) with a last message saying why, by whoever learns it (services.stream_guard):
this costs a stream nothing until then, and a revocation looks only at its user's streams."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Any, Protocol

from .. import memory
from ..tasks import stop_tasks

log = logging.getLogger(__name__)

Message = dict[str, Any]
QUEUE_LIMIT = 256
EVERYONE = "*"  # publish(EVERYONE, message) reaches every connected runtime (of message's app)


class Event(dict[str, Any]):
    """A message on its way to many streams: its server-sent-event frame is built once."""

    frame_bytes: bytes | None = None


class Sink(Protocol):
    """Where a subscription's frames go as they are published (an open event stream)."""

    def write(self, frame: bytes, message: Message) -> None: ...
    def end(self) -> None: ...


class Subscription:
    __slots__ = (
        "_waiter", "appid", "broadcast", "closed", "device_id", "issued_at", "pending", "sink",
        "user_id",
    )  # fmt: skip

    def __init__(
        self,
        user_id: str,
        device_id: str,
        broadcast: bool = True,
        appid: str | None = None,
        issued_at: int | None = None,
    ) -> None:
        self.user_id = user_id
        self.device_id = device_id
        self.broadcast = broadcast  # False: a console channel, not a runtime; skips EVERYONE
        self.appid = appid  # None: every app's messages
        # the issue time of the runtime token that opened the stream; None: no runtime token's
        self.issued_at = issued_at
        # made on first use; a stalled client loses the oldest message, not the newest
        self.pending: deque[Message] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.sink: Sink | None = None  # set: messages are written at once, never queued
        self.closed = False

    def offer(self, message: Message) -> None:
        offer_all((self,), message)

    def queue(self, message: Message) -> None:
        """Keep ``message`` for ``next``/``take`` (no sink); not once closed (unsubscribing
        may come later: nothing piles up for a subscription nobody will read)."""
        if self.closed:
            return
        if self.pending is None:
            self.pending = deque(maxlen=QUEUE_LIMIT)
        self.pending.append(message)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def close(self) -> None:
        """The client went away (or the broker closed): a waiting ``next`` returns None at
        once, and a sink is ended."""
        if self.closed:
            return
        self.closed = True
        self._wake()
        if self.sink is not None:
            self.sink.end()

    async def next(self, timeout_s: float) -> Message | None:
        """The next message, or None after ``timeout_s`` of silence (or once closed)."""
        if not self.pending and not self.closed:
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            timer = loop.call_later(timeout_s, self._wake)
            try:
                await self._waiter
            finally:
                timer.cancel()
                self._waiter = None
        return self.pending.popleft() if self.pending else None

    def take(self) -> list[Message]:
        """Everything pending, oldest first."""
        out = list(self.pending or ())
        self.pending = None
        return out


class Broker(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def publish(self, user_id: str, message: Message) -> None: ...
    def deliver(self, user_id: str, message: Message) -> None: ...
    def subscribe(
        self,
        user_id: str,
        device_id: str,
        broadcast: bool = True,
        appid: str | None = None,
        issued_at: int | None = None,
    ) -> Subscription: ...
    def unsubscribe(self, sub: Subscription) -> None: ...
    def end_streams(self, user_id: str, before: float, notice: Message) -> int: ...
    def end_expired(self, before: float, notice: Message) -> int: ...
    def connected(self, user_id: str, appid: str | None = None) -> list[str]: ...
    async def devices(self, user_id: str, appid: str | None = None) -> list[str]: ...
    def open_connections(self) -> int: ...
    def compact(self) -> None: ...


class MemoryBroker:
    def __init__(self) -> None:
        # user -> app of the stream (None: opened for every app) -> its subscriptions
        self._users: dict[str, dict[str | None, set[Subscription]]] = {}
        # runtimes (broadcast subscriptions) by the app their stream is for; None: any app
        self._by_app: dict[str | None, set[Subscription]] = defaultdict(set)

    async def start(self) -> None:
        return None

    def end_local_streams(self) -> int:
        """End every stream of this node (its client reconnects); returns how many."""
        subs = [s for apps in self._users.values() for group in apps.values() for s in group]
        for sub in subs:
            sub.close()
        return len(subs)

    def end_streams(self, user_id: str, before: float, notice: Message) -> int:
        """End this node's streams of ``user_id`` opened with a runtime token issued before
        ``before`` (its tokens were revoked), after ``notice`` (why); returns how many."""
        subs = [
            s
            for group in self._users.get(user_id, {}).values()
            for s in group
            if s.issued_at is not None and s.issued_at < before
        ]
        return end_with(subs, notice)

    def end_expired(self, before: float, notice: Message) -> int:
        """End this node's runtime streams opened with a token issued before ``before`` (it
        has expired), after ``notice``; returns how many. One pass over the runtimes' streams
        (a comparison each)."""
        subs = [
            s
            for group in self._by_app.values()
            for s in group
            if s.issued_at is not None and s.issued_at < before
        ]
        return end_with(subs, notice)

    async def close(self) -> None:
        # their streams end now rather than at the server's shutdown timeout
        self.end_local_streams()
        self._users.clear()
        self._by_app.clear()

    def _targets(self, user_id: str, appid: Any) -> list[Subscription]:
        """The subscriptions a message for ``user_id`` about ``appid`` may concern (a copy:
        writing to one may end it, which changes the sets)."""
        if user_id == EVERYONE:
            if appid is None:
                return [s for subs in self._by_app.values() for s in subs]
            return [*self._by_app.get(appid, ()), *self._by_app.get(None, ())]
        apps = self._users.get(user_id)
        if not apps:
            return []
        if appid is None:
            return [s for subs in apps.values() for s in subs]
        return [*apps.get(appid, ()), *apps.get(None, ())]

    def deliver(self, user_id: str, message: Message) -> None:
        """To every subscription of ``user_id`` (of the message's app, when it names one);
        ``"*"`` means every connected runtime (of the message's app, when it names one)."""
        event = message if isinstance(message, Event) else Event(message)
        offer_all(self._targets(user_id, event.get("appid")), event)

    async def publish(self, user_id: str, message: Message) -> None:
        self.deliver(user_id, message)

    def subscribe(
        self,
        user_id: str,
        device_id: str,
        broadcast: bool = True,
        appid: str | None = None,
        issued_at: int | None = None,
    ) -> Subscription:
        sub = Subscription(user_id, device_id, broadcast, appid, issued_at)
        self._users.setdefault(user_id, {}).setdefault(appid, set()).add(sub)
        if broadcast:
            self._by_app[appid].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.close()
        apps = self._users.get(sub.user_id)
        if apps is not None:
            _discard(apps, sub.appid, sub)
            if not apps:
                del self._users[sub.user_id]
        if sub.broadcast:
            _discard(self._by_app, sub.appid, sub)

    def connected(self, user_id: str, appid: str | None = None) -> list[str]:
        """The user's devices connected to this node; with ``appid``, only those whose stream
        carries that app's messages (opened for it, or for every app): what a member of one
        app may be shown."""
        apps = self._users.get(user_id, {})
        wanted = apps.values() if appid is None else (apps.get(appid, ()), apps.get(None, ()))
        return sorted({s.device_id for subs in wanted for s in subs})

    async def devices(self, user_id: str, appid: str | None = None) -> list[str]:
        """The user's devices connected to any node (one node here: ``connected``)."""
        return self.connected(user_id, appid)

    def open_connections(self) -> int:
        """Runtime streams open on this node (console channels not counted)."""
        return sum(len(subs) for subs in self._by_app.values())

    def compact(self) -> None:
        """Shrink the indexes, in place, after a wave of closes: a dict or set keeps the table
        it grew to when entries leave (10,000 users' streams closed left a table of 10,000
        users' slots; an app's set of 10,000 streams, a few still open, keeps room for
        10,000)."""
        for apps in self._users.values():
            for subs in apps.values():
                memory.shrink(subs)
            memory.shrink(apps)
        memory.shrink(self._users)
        for subs in self._by_app.values():
            memory.shrink(subs)
        memory.shrink(self._by_app)


def offer_all(subs: Iterable[Subscription], message: Message) -> None:
    """Offer ``message`` to each of ``subs`` it concerns: not when it names another device, or
    excludes the subscription's user, or names another app than the stream's. Written at once
    to a subscription's sink (one frame for all of them), else queued. One pass, the message's
    fields read once: a push to 10,000 streams spends its time writing, not filtering."""
    target = message.get("device_id")
    excluded = message.get("exclude_users") or ()
    appid = message.get("appid")
    frame: bytes | None = None
    for sub in subs:
        if target is not None and target != sub.device_id:
            continue
        if excluded and sub.user_id in excluded:
            continue
        if appid is not None and sub.appid is not None and appid != sub.appid:
            continue
        sink = sub.sink
        if sink is None:
            sub.queue(message)
            continue
        if frame is None:
            frame = sse_frame(message)
        sink.write(frame, message)


def end_with(subs: list[Subscription], notice: Message) -> int:
    """Give ``subs`` ``notice`` (written or queued, as any message), then end them: a stream
    ends after it, and a waiting ``next`` gets it before None. (Also for whoever keeps its own
    streams to end: services.console_guard.)"""
    if subs:
        offer_all(subs, Event(notice))
        for sub in subs:
            sub.close()
    return len(subs)


def _discard(index: dict[Any, set[Subscription]], key: Any, sub: Subscription) -> None:
    subs = index.get(key)
    if subs is not None:
        subs.discard(sub)
        if not subs:
            del index[key]


def redis_channel(db: int) -> str:
    """The deployment's channel: named for its Redis database, as Redis's publish/subscribe
    ignores the database index (two deployments on ``/1`` and ``/2`` of one server got each
    other's pushes, fetched data included). Database 0 keeps the name it always had."""
    return "miniport:events" if db == 0 else f"miniport:events:db{db}"


class RedisBroker(MemoryBroker):
    """Local subscribers as in MemoryBroker; messages travel through one Redis channel, that
    of the URL's database (:func:`redis_channel`)."""

    CHANNEL = redis_channel(0)
    DEVICES_WAIT_S = 0.25  # how long ``devices`` collects the other nodes' answers
    PING_S = 5.0  # an idle subscription is pinged this often ...
    SILENT_S = 15.0  # ... and taken for dead after this long without a word, not even a PONG

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._task: asyncio.Task[None] | None = None
        self._redis: Any = None
        self._ready = asyncio.Event()
        self._undelivered = 0  # messages published while Redis was away (this node's only)
        self._undelivered_logged = -10.0  # when that was last logged (monotonic)
        self._answering: set[asyncio.Task[None]] = set()  # answers to other nodes' asks
        self._node = secrets.token_hex(8)  # this node's name in its own asks

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(self.url)
        db = self._redis.connection_pool.connection_kwargs.get("db", 0)
        self.CHANNEL = redis_channel(int(db))
        await self._redis.ping()  # fail at start, not at the first message
        self._task = asyncio.create_task(self._listen())
        await asyncio.wait_for(self._ready.wait(), 5)
        asks = self.subscribe(DEVICES_ASK, "node", broadcast=False)
        asks.sink = _DeviceAsks(self)

    async def devices(self, user_id: str, appid: str | None = None) -> list[str]:
        """The user's devices connected to any node: each node with some answers an ask on
        the channel within ``DEVICES_WAIT_S`` (``connected`` counted this node's only, and a
        push from one node to a device on another answered "no device")."""
        found = set(self.connected(user_id, appid))
        reply = f"{DEVICES_ASK}:{secrets.token_hex(8)}"
        answers = self.subscribe(reply, "node", broadcast=False)
        loop = asyncio.get_running_loop()
        until = loop.time() + self.DEVICES_WAIT_S
        try:
            ask = {"type": "devicesAsk", "user_id": user_id, "for_app": appid, "reply": reply,
                   "node": self._node}  # fmt: skip
            await asyncio.wait_for(self.publish(DEVICES_ASK, ask), self.DEVICES_WAIT_S)
            # (closed: the broker dropped its streams, this one too; next() would not wait)
            while (left := until - loop.time()) > 0 and not answers.closed:
                answer = await answers.next(left)
                if answer is not None and isinstance(answer.get("devices"), list):
                    found.update(str(d) for d in answer["devices"])
        except TimeoutError:  # Redis silent: this node's devices only
            pass
        finally:
            self.unsubscribe(answers)
        return sorted(found)

    def answer_devices(self, ask: Message) -> None:
        """Another node (or this one) asks which devices of a user are connected here."""
        user_id, appid, reply = ask.get("user_id"), ask.get("for_app"), ask.get("reply")
        if ask.get("node") == self._node:
            return  # its own: the asking node counts its devices itself
        if not isinstance(user_id, str) or not isinstance(reply, str):
            return
        here = self.connected(user_id, appid if isinstance(appid, str) else None)
        if here:
            task = asyncio.create_task(self.publish(reply, {"type": "devices", "devices": here}))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)

    async def _listen(self) -> None:
        """Deliver what the channel carries, for as long as the broker runs: a connection
        that drops (a Redis restart or failover, a killed client) is subscribed again after
        a pause, and a message that cannot be read is logged and skipped. (The listener used
        to end at either, and the node's open streams, kept alive, never got a push again.)
        Streams of this node are ended after a drop: what was published meanwhile is lost
        to them, and their clients reconnect and read the data afresh. A connection that goes
        silent without closing (a failover, a host gone, a partition) is found by its
        unanswered pings (``SILENT_S``): waiting on it, the node's streams, kept alive, never
        got a push again and their clients never reconnected."""
        pause = 0.1
        while True:
            pubsub = self._redis.pubsub()
            try:
                # a server that takes the connection and never answers: tried again
                await asyncio.wait_for(pubsub.subscribe(self.CHANNEL), self.SILENT_S)
                self._ready.set()
                pause = 0.1
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("the Redis event channel dropped; subscribing again", exc_info=True)
                ended = self.end_local_streams()
                if ended:
                    log.warning("ended %d event streams that may have missed pushes", ended)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)

    async def _read(self, pubsub: Any) -> None:
        """Deliver the subscription's messages until it fails or stays silent ``SILENT_S``
        (pinged every ``PING_S`` while idle: a PONG is a word too)."""
        heard = pinged = time.monotonic()
        while True:
            raw = await pubsub.get_message(timeout=self.PING_S)
            now = time.monotonic()
            if raw is not None:
                heard = now
                self._receive(raw)
                continue
            if now - heard >= self.SILENT_S:
                raise TimeoutError(f"no word on the Redis channel for {self.SILENT_S:g} s")
            if now - pinged >= self.PING_S:
                pinged = now
                await asyncio.wait_for(pubsub.ping(), self.PING_S)

    def _receive(self, raw: dict[str, Any]) -> None:
        if raw.get("type") != "message":
            return
        try:
            envelope = json.loads(raw["data"])
            user_id, message = envelope["user_id"], envelope["message"]
        except (ValueError, TypeError, KeyError):
            log.warning("skipped an unreadable message on %s", self.CHANNEL)
            return
        self.deliver(user_id, message)

    async def publish(self, user_id: str, message: Message) -> None:
        """To every node's streams through Redis. Redis away: to this node's streams only,
        and a warning; the other nodes' streams are ended when their listener sees the drop
        (their clients reconnect and read the data afresh). It raised, and the API call that
        published after its change was committed (an analytics publish, a refresh) answered
        500 although the change was made."""
        try:
            await asyncio.wait_for(  # a silent server: not an API call held for good
                self._redis.publish(
                    self.CHANNEL, json.dumps({"user_id": user_id, "message": message})
                ),
                self.SILENT_S,
            )
        except Exception as exc:
            from redis.exceptions import RedisError

            if not isinstance(exc, RedisError | OSError):
                raise
            self._undelivered += 1
            now = time.monotonic()
            if now - self._undelivered_logged >= 10:  # not a line per push of an outage
                self._undelivered_logged = now
                log.warning("Redis unreachable (%s): %d messages so far went to this node's "
                            "streams only", exc, self._undelivered)  # fmt: skip
            self.deliver(user_id, message)

    async def close(self) -> None:
        await stop_tasks(self._task, *self._answering)
        if self._redis is not None:
            await self._redis.aclose()
        await super().close()


DEVICES_ASK = "\x00devices:ask"  # a broker key no runtime has (user ids hold no control char)


class _DeviceAsks:
    """The sink of the devices channel: each ask answered (runs in delivery: never raises)."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker

    def write(self, frame: bytes, message: Message) -> None:
        if message.get("type") == "devicesAsk":
            self.broker.answer_devices(message)

    def end(self) -> None:
        return None


def sse_frame(message: Message) -> bytes:
    """One server-sent event: its ``type`` as the event name, the message as JSON data."""
    if isinstance(message, Event) and message.frame_bytes is not None:
        return message.frame_bytes
    data = json.dumps(message, ensure_ascii=False)
    frame = f"event: {message.get('type', 'message')}\ndata: {data}\n\n".encode()
    if isinstance(message, Event):
        message.frame_bytes = frame
    return frame
