"""Server-sent-event responses fed by a broker subscription, at the cost 10,000 open streams
need (issue 13: <= 10 KB per idle stream, one message to 10k streams in < 200 ms).

An open stream is a ``Stream``, the subscription's sink: the code that publishes a message
hands its frame (encoded once for every stream) to each stream, and at the end of that turn of
the event loop each stream is written once. Under uvicorn's httptools protocol (``miniport
serve``) the write is the connection's own ``transport.write`` of an HTTP/1.1 chunk framed once
for all the streams that got the same frames (``direct_target``: what uvicorn's ``send`` would
write, with its checks), so a push to 10,000 streams costs about what the 10,000 socket writes
cost. Elsewhere, or while the transport asks to stop writing, the write is the ASGI ``send``:
it finishes without suspending unless the client is not reading (flow control), so it is run
eagerly, the way ``asyncio.eager_task_factory`` runs a task's first step; only a send that does
suspend is finished in a task, and what comes for that stream meanwhile waits in a bounded
backlog (the oldest dropped first, as in a subscription), behind which no direct write goes.

So a stream costs no task, timer or queue of its own: the request's own task waits in
``receive`` for the client to go away (or for the response to end), which unsubscribes it at
once. What a stream gets in one turn of the event loop goes out in one write (``Pump``), and
one timer for all streams writes a keep-alive comment to those silent for ``HEARTBEAT_S``. A
message whose type is in ``until`` ends the response after it is written; so does the broker
closing.

A runtime's stream tells the browser when to reconnect once it drops (:func:`reconnect_field`):
a browser's EventSource otherwise waits its own fixed time (about 3 s, no jitter), so the
10,000 streams of a node that restarts all came back at the same instant, and again every
3 s while it was down."""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from types import CoroutineType
from typing import Any

from starlette.responses import Response
from starlette.types import Message as AsgiMessage
from starlette.types import Receive, Scope, Send

from .. import memory
from ..events.broker import QUEUE_LIMIT, Broker, Message, Subscription, sse_frame

log = logging.getLogger("miniport.web")

HEARTBEAT_S = 15.0
RECONNECT_MS = (1000, 5000)  # a browser's reconnect wait, drawn per stream: 3 s on average
KEEP_ALIVE = b": keep-alive\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
RAW_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    *((k.lower().encode(), v.encode()) for k, v in HEADERS.items()),
]


def reconnect_field(rand: Callable[[], float] = random.random) -> bytes:
    """An SSE ``retry:`` field (and the blank line that ends its block): how long the browser
    waits before it reconnects a stream that dropped, drawn for each stream in
    ``RECONNECT_MS`` with ``rand()`` in [0, 1) (a browser's own default is a fixed ~3 s). The
    runtimes' own code does not read it: the Python runtime has its own backoff with jitter."""
    low, high = RECONNECT_MS
    return b"retry: %d\n\n" % round(low + (high - low) * min(max(rand(), 0.0), 1.0))


def run_eagerly(step: Awaitable[None]) -> asyncio.Future[None] | None:
    """Run ``step`` now, in the caller's turn of the event loop. None: it finished (or raised,
    which is logged at debug level: a write to a client that went away). Otherwise the task
    that finishes it once what it waits for is done."""
    if type(step) is not CoroutineType:  # not a coroutine: nothing to run eagerly
        return asyncio.ensure_future(step)
    try:
        waiting_on = step.send(None)
    except StopIteration:
        return None
    except Exception as exc:  # the transport is gone; its end is seen in ``receive``
        log.debug("event stream write failed: %r", exc)
        return None
    return asyncio.ensure_future(_resume(step, waiting_on))


async def _resume(step: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    """Drive a coroutine that suspended outside a task, as a task would: resume it each time
    the future it yielded is done (``asyncio.wait`` leaves the outcome for it to take)."""
    try:
        while True:
            if isinstance(waiting_on, asyncio.Future):
                waiting_on._asyncio_future_blocking = False
                await asyncio.wait([waiting_on])
            else:  # a bare yield: give the loop one turn
                await asyncio.sleep(0)
            try:
                waiting_on = step.send(None)
            except StopIteration:
                return
    except asyncio.CancelledError:
        step.close()
        raise
    except Exception as exc:
        log.debug("event stream write failed: %r", exc)


class Pump:
    """What the open streams of one event loop share: the writes of one turn of the loop (each
    stream written once per turn, however many messages it got in it: a push's data and its
    refresh go out in one write) and the keep-alives (one timer ticking every second for all
    streams, not one timer per stream).

    After a wave of closes it gives their memory back (``trim``): the tables of its own sets and
    of the brokers' indexes, which keep the size they grew to when emptied, are shrunk, then
    ``memory.release``. What the pump keeps meanwhile allocates no object per close: an object
    outliving the wave (the time of the last close, as a float) would sit in pymalloc's arena
    among the closed streams' objects and keep that whole arena (1 MiB) from being returned."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dirty: list[Stream] = []
        self.heartbeat_s = HEARTBEAT_S
        # stream sets by the second (mod one per second of heartbeat) of their last write: each
        # tick looks at the streams last written heartbeat_s ago
        self.buckets: list[set[Stream]] = [set() for _ in range(max(1, round(HEARTBEAT_S)))]
        self.count = 0
        self.timer: asyncio.TimerHandle | None = None
        self.closed = 0  # streams closed since memory was last given back
        self.last_close = array("d", [0.0])  # the loop's time then: in place, not a new float
        self.trimming: asyncio.TimerHandle | None = None
        self.brokers: list[Broker] = []  # whose indexes ``trim`` compacts

    def mark(self, stream: Stream) -> None:
        if not self.dirty:
            self.loop.call_soon(self.flush)
        self.dirty.append(stream)

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        # streams that got the same frames share one body (joined once, chunk-framed once)
        sent: dict[Any, Body] = {}
        now = time.monotonic()
        for stream in dirty:
            stream.flush(sent, now)

    def serves(self, broker: Broker) -> None:
        if broker not in self.brokers:  # one, all but always
            self.brokers.append(broker)

    def add(self, stream: Stream) -> None:
        stream.bucket = int(stream.wrote) % len(self.buckets)
        self.buckets[stream.bucket].add(stream)
        self.count += 1
        if self.timer is None:
            self.timer = self.loop.call_later(1.0, self.tick)

    def remove(self, stream: Stream) -> None:
        bucket = self.buckets[stream.bucket]
        if stream in bucket:
            bucket.discard(stream)
            self.count -= 1
            self.closed += 1
            self.last_close[0] = self.loop.time()
            if self.closed >= TRIM_AFTER and self.trimming is None:
                self.trimming = self.loop.call_later(TRIM_DELAY_S, self.trim)

    def trim(self) -> None:
        """Many streams closed: give the memory they held back to the operating system, once
        the wave of closes is over (no close for ``TRIM_DELAY_S``)."""
        quiet = self.loop.time() - self.last_close[0]
        if quiet < TRIM_DELAY_S:
            self.trimming = self.loop.call_later(TRIM_DELAY_S - quiet, self.trim)
            return
        self.trimming = None
        self.closed = 0
        self.compact()
        memory.release()

    def compact(self) -> None:
        """Shrink the bucket sets (each held a fifteenth of the streams that were open), and
        the indexes of the brokers served: a set or dict keeps its table when emptied."""
        for bucket in self.buckets:
            memory.shrink(bucket)
        for broker in self.brokers:
            broker.compact()

    def end_all(self) -> int:
        """End every open stream after what it has been sent (the server is stopping): its
        client reconnects, to another node, at once, and the server need not wait out its
        shutdown timeout and cancel the streams' requests. Returns how many were open."""
        streams = [stream for bucket in self.buckets for stream in bucket]
        for stream in streams:
            stream.end()
        return len(streams)

    def tick(self) -> None:
        now = time.monotonic()
        buckets = self.buckets
        bucket = buckets[int(now) % len(buckets)]
        for stream in list(bucket):
            if now - stream.wrote >= self.heartbeat_s - 1:
                stream.keep_alive()  # written now: it stays in this second's bucket
            else:  # written since: looked at again heartbeat_s after that write
                bucket.discard(stream)
                stream.bucket = int(stream.wrote) % len(buckets)
                buckets[stream.bucket].add(stream)
        self.timer = self.loop.call_later(1.0, self.tick) if self.count else None


class Body:
    """What one turn of the loop writes to the streams that got the same frames: the joined
    body, and, made on first use, its HTTP/1.1 chunk (the direct write) and its ASGI message
    (``send``)."""

    __slots__ = ("body", "chunk", "message")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.chunk: bytes | None = None
        self.message: AsgiMessage | None = None

    def as_chunk(self) -> bytes:
        if self.chunk is None:
            self.chunk = b"%x\r\n%s\r\n" % (len(self.body), self.body)
        return self.chunk

    def as_message(self) -> AsgiMessage:
        if self.message is None:
            self.message = {"type": "http.response.body", "body": self.body, "more_body": True}
        return self.message


def direct_target(send: Send) -> Any:
    """The uvicorn httptools request cycle behind ``send`` when its response body goes out as
    HTTP/1.1 chunks, else None. Its chunks can then be written to the connection's transport
    directly, as its ``send`` would (same framing, same checks: not once the client left, not
    while the transport asks to stop writing), without a coroutine per stream and per write.
    Anything else (another server, a middleware's ``send``) keeps the ASGI ``send``."""
    server = sys.modules.get("uvicorn.protocols.http.httptools_impl")  # not imported: not it
    cycle: Any = getattr(send, "__self__", None)
    if server is None or type(cycle) is not server.RequestResponseCycle:
        return None
    if getattr(send, "__func__", None) is not server.RequestResponseCycle.send:
        return None
    if cycle.chunked_encoding is not True or cycle.response_complete:
        return None
    if cycle.scope.get("method") == "HEAD":
        return None
    return cycle


TRIM_AFTER = 1000  # closed streams
TRIM_DELAY_S = 1.0
_pumps: list[Pump] = []  # the current event loop's (tests run one loop after another)


def end_open_streams() -> int:
    """End the open event streams of the running loop (see ``Pump.end_all``)."""
    loop = asyncio.get_running_loop()
    return _pumps[0].end_all() if _pumps and _pumps[0].loop is loop else 0


def pump() -> Pump:
    loop = asyncio.get_running_loop()
    if not _pumps or _pumps[0].loop is not loop:
        _pumps[:] = [Pump(loop)]
    return _pumps[0]


class Stream:
    """One open event stream; the subscription's sink."""

    __slots__ = (
        "_backlog", "_cycle", "_ending", "_out", "_pump", "_send", "_sub", "_until", "bucket",
        "done", "wrote",
    )  # fmt: skip

    def __init__(self, sub: Subscription, send: Send, until: tuple[str, ...]) -> None:
        self._sub, self._send, self._until = sub, send, until
        self._pump = pump()
        # set while a suspended write finishes: the ASGI messages that wait behind it
        self._backlog: deque[AsgiMessage] | None = None
        self._out: list[bytes] | None = None  # frames for this turn's write
        self._cycle: Any = None  # uvicorn's request cycle, written to directly (direct_target)
        self._ending = False
        self.wrote = time.monotonic()
        self.bucket = 0
        self.done = False  # nothing more is taken: the response ended or the client left

    def open(self, hello: Message | bytes) -> None:
        """Write ``hello`` (a message, or frames as written) and what was published since
        subscribing, then take messages as they are published. Called once the response has
        started."""
        self._cycle = direct_target(self._send)
        self._queue(hello if isinstance(hello, bytes) else sse_frame(hello))
        for message in self._sub.take():
            self.write(sse_frame(message), message)
        if self._sub.closed:  # ended before the response started (its token revoked...)
            self.end()
        if not self.done:
            self._sub.sink = self
            self._pump.add(self)

    def write(self, frame: bytes, message: Message) -> None:
        if self.done:
            return
        out = self._out
        if out is None:
            self._out = [frame]
            self._pump.mark(self)
        else:
            out.append(frame)
        if self._until and message.get("type") in self._until:
            self.end()

    def keep_alive(self) -> None:
        if not self.done:
            self._queue(KEEP_ALIVE)

    def end(self) -> None:
        """End the response after what is written (the request's task, waiting in
        ``receive``, then returns)."""
        if not self.done:
            self._ending = True
            self._queue(b"")
            self._finish()

    def stop(self) -> None:
        """The request is over: nothing more is written, not even what waits."""
        self._finish()
        self._out = self._backlog = None

    def _finish(self) -> None:
        self.done = True
        self._sub.sink = None
        self._pump.remove(self)

    def _queue(self, frame: bytes) -> None:
        if self._out is None:
            self._out = [frame]
            self._pump.mark(self)
        else:
            self._out.append(frame)

    def flush(self, sent: dict[Any, Body], now: float) -> None:
        out, self._out = self._out, None
        if out is None:
            return
        self.wrote = now
        if self._ending:
            self._chunk(b"".join(out), more=False)
            return
        key: Any = out[0] if len(out) == 1 else tuple(out)
        body = sent.get(key)
        if body is None:
            body = sent[key] = Body(out[0] if len(out) == 1 else b"".join(out))
        cycle = self._cycle
        if cycle is not None and self._backlog is None and not cycle.flow.write_paused:
            if not cycle.disconnected:  # as its send: nothing once the client left
                cycle.transport.write(body.as_chunk())
            return
        self._write(body.as_message())

    def _chunk(self, body: bytes, more: bool) -> None:
        self._write({"type": "http.response.body", "body": body, "more_body": more})

    def _write(self, message: AsgiMessage) -> None:
        if self._backlog is not None:  # a write still waits for the client to read
            self._backlog.append(message)
            return
        pending = run_eagerly(self._send(message))
        if pending is not None:
            self._backlog = deque(maxlen=QUEUE_LIMIT)  # the oldest go first, as when queued
            pending.add_done_callback(self._drained)

    def _drained(self, _: asyncio.Future[None]) -> None:
        backlog, self._backlog = self._backlog, None
        while backlog:
            self._write(backlog.popleft())
            if self._backlog is not None:  # suspended again: the rest waits behind it
                self._backlog.extend(backlog)
                return


async def run_stream(
    broker: Broker,
    sub: Subscription,
    hello: Message | bytes,
    receive: Receive,
    send: Send,
    until: tuple[str, ...] = (),
) -> None:
    """Serve ``sub`` as a server-sent-event response until the client goes away or the
    response ends; unsubscribes when done."""
    stream = Stream(sub, send, until)
    stream._pump.serves(broker)
    try:
        await send({"type": "http.response.start", "status": 200, "headers": RAW_HEADERS})
        stream.open(hello)
        del hello  # held for the stream's life otherwise
        while (await receive())["type"] != "http.disconnect":
            pass
    except OSError:  # the client went away
        pass
    finally:
        stream.stop()
        broker.unsubscribe(sub)


class EventStreamResponse(Response):
    """``run_stream`` as a Starlette response, for a route."""

    media_type = "text/event-stream"

    def __init__(
        self,
        broker: Broker,
        sub: Subscription,
        hello: Message | bytes,
        until: tuple[str, ...] = (),
    ) -> None:
        self.broker, self.sub, self.hello, self.until = broker, sub, hello, until
        self.status_code = 200
        self.background = None
        self.init_headers(HEADERS)  # no body: no Content-Length, the server chunks it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await run_stream(self.broker, self.sub, self.hello, receive, send, self.until)
