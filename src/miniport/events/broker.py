"""The event stream: messages for a user's connected runtimes (server-sent events).

``MemoryBroker`` fans out inside one process (the embedded default). ``RedisBroker`` publishes
through Redis pub/sub so every API node's subscribers get the message, whichever node or worker
produced it. Both deliver to every device of the user, or to one device when ``device_id`` is
given (a test configuration goes to the tester's device only)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

Message = dict[str, Any]
QUEUE_LIMIT = 256
EVERYONE = "*"  # publish(EVERYONE, message) reaches every connected runtime


@dataclass(eq=False)
class Subscription:
    user_id: str
    device_id: str
    broadcast: bool = True  # False: a console channel, not a runtime; skips EVERYONE messages
    queue: asyncio.Queue[Message] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))

    def offer(self, message: Message) -> None:
        target = message.get("device_id")
        if target is not None and target != self.device_id:
            return
        if self.user_id in message.get("exclude_users", ()):
            return
        if self.queue.full():  # a stalled client loses the oldest message, not the newest
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
        self.queue.put_nowait(message)


class Broker(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def publish(self, user_id: str, message: Message) -> None: ...
    def subscribe(self, user_id: str, device_id: str, broadcast: bool = True) -> Subscription: ...
    def unsubscribe(self, sub: Subscription) -> None: ...
    def connected(self, user_id: str) -> list[str]: ...
    def open_connections(self) -> int: ...


class MemoryBroker:
    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = defaultdict(set)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._subs.clear()

    def deliver(self, user_id: str, message: Message) -> None:
        """To every subscription of ``user_id``; ``"*"`` means every connected runtime."""
        if user_id == EVERYONE:
            targets = [s for subs in self._subs.values() for s in subs if s.broadcast]
        else:
            targets = list(self._subs.get(user_id, ()))
        for sub in targets:
            sub.offer(message)

    async def publish(self, user_id: str, message: Message) -> None:
        self.deliver(user_id, message)

    def subscribe(self, user_id: str, device_id: str, broadcast: bool = True) -> Subscription:
        sub = Subscription(user_id, device_id, broadcast)
        self._subs[user_id].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.user_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.user_id]

    def connected(self, user_id: str) -> list[str]:
        return sorted({s.device_id for s in self._subs.get(user_id, ())})

    def open_connections(self) -> int:
        """Runtime streams open on this node (console channels not counted)."""
        return sum(1 for subs in self._subs.values() for s in subs if s.broadcast)


class RedisBroker(MemoryBroker):
    """Local subscribers as in MemoryBroker; messages travel through one Redis channel."""

    CHANNEL = "miniport:events"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._task: asyncio.Task[None] | None = None
        self._redis: Any = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(self.url)
        await self._redis.ping()  # fail at start, not at the first message
        self._task = asyncio.create_task(self._listen())
        await asyncio.wait_for(self._ready.wait(), 5)

    async def _listen(self) -> None:
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self.CHANNEL)
        self._ready.set()
        try:
            async for raw in pubsub.listen():
                if raw.get("type") != "message":
                    continue
                envelope = json.loads(raw["data"])
                self.deliver(envelope["user_id"], envelope["message"])
        finally:
            await pubsub.aclose()

    async def publish(self, user_id: str, message: Message) -> None:
        await self._redis.publish(
            self.CHANNEL, json.dumps({"user_id": user_id, "message": message})
        )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._redis is not None:
            await self._redis.aclose()
        await super().close()


async def stream(sub: Subscription, heartbeat_s: float = 15.0) -> AsyncIterator[Message | None]:
    """Messages as they come; None every ``heartbeat_s`` of silence (a keep-alive)."""
    while True:
        try:
            yield await asyncio.wait_for(sub.queue.get(), heartbeat_s)
        except TimeoutError:
            yield None


def sse_frame(message: Message) -> bytes:
    """One server-sent event: its ``type`` as the event name, the message as JSON data."""
    data = json.dumps(message, ensure_ascii=False)
    return f"event: {message.get('type', 'message')}\ndata: {data}\n\n".encode()


async def sse(
    broker: Broker, sub: Subscription, hello: Message, until: tuple[str, ...] = ()
) -> AsyncIterator[bytes]:
    """A subscription as a server-sent-event body: ``hello`` first, keep-alives in silence,
    ending after a message whose type is in ``until`` (or when the client goes away)."""
    try:
        yield sse_frame(hello)
        async for message in stream(sub):
            if message is None:
                yield b": keep-alive\n\n"
                continue
            yield sse_frame(message)
            if message.get("type") in until:
                return
    finally:
        broker.unsubscribe(sub)
