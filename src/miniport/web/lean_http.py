"""uvicorn's httptools protocol with less memory per connection, for ``miniport serve``
(issue 13: 10,000 open device streams, <= 10 KB each).

Each connection of uvicorn's ``HttpToolsProtocol`` holds two ``asyncio.Event`` (the request
cycle's and flow control's) and a pipeline ``deque``: each of the three allocates a 64-slot
deque block, ~760 bytes, about a quarter of what an idle event stream costs. ``LeanEvent`` does
what uvicorn asks of an event (``set``, ``clear``, ``is_set``, ``wait``) with a list made only
while something waits; the pipeline (pipelined requests, rare) is a list. Behaviour is the same;
``LeanHttpToolsProtocol.lean`` says whether the swap took (tests check it, so an upgrade of
uvicorn that renames these attributes fails a test rather than silently costing memory).

It also mends what uvicorn (0.54) does with a request pipelined behind one still running: the
new request becomes the connection's ``cycle``, and a lost connection tells only that one. An
event stream followed by any request in the same write, then a dropped connection, never
heard it: its subscription, its keep-alives to a closed socket and its slot in the server's
shutdown stayed for good (a client with a token could pile them up). Every request of the
connection still running is now told."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, TypeVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

T = TypeVar("T")


class LeanEvent:
    """``asyncio.Event`` for one event loop, without the deque it allocates up front."""

    __slots__ = ("_value", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._value = value
        self._waiters: list[asyncio.Future[bool]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if not self._value:
            self._value = True
            for fut in self._waiters or ():
                if not fut.done():
                    fut.set_result(True)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        fut = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(fut)
        try:
            await fut
            return True
        finally:
            self._waiters.remove(fut)
            if not self._waiters:
                self._waiters = None


class ListPipeline(list[T]):
    """The two deque operations uvicorn's pipeline uses, on a list (oldest at the end)."""

    def appendleft(self, item: T) -> None:
        self.insert(0, item)


class LeanHttpToolsProtocol(HttpToolsProtocol):
    _earlier: list[RequestResponseCycle]  # requests pipelined behind (set only then)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lean = isinstance(self.pipeline, deque) and not self.pipeline
        if self.lean:
            self.pipeline = ListPipeline()  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        flow = self.flow
        current = getattr(flow, "_is_writable_event", None)
        if isinstance(current, asyncio.Event):  # nothing waits on it yet
            flow._is_writable_event = LeanEvent(current.is_set())  # type: ignore[assignment]
        else:
            self.lean = False

    def on_headers_complete(self) -> None:
        before = self.cycle
        super().on_headers_complete()
        if before is not None and before is not self.cycle and not before.response_complete:
            # pipelined behind a request still running (rare: an attribute made only then)
            earlier = [c for c in getattr(self, "_earlier", ()) if not c.response_complete]
            self._earlier = [*earlier, before]
        cycle = self.cycle
        if cycle is not None and cycle is not before:  # a new request: its task has not run
            if isinstance(cycle.message_event, asyncio.Event) and not cycle.message_event.is_set():
                cycle.message_event = LeanEvent()  # type: ignore[assignment]
            else:
                self.lean = False

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # uvicorn tells ``self.cycle`` only: tell the requests it was pipelined behind, and
        # those queued behind it (a disconnect they read at once, as at the end of any request)
        for cycle in [*getattr(self, "_earlier", ()), *(c for c, _ in self.pipeline)]:
            if not cycle.response_complete:
                cycle.disconnected = True
            cycle.message_event.set()
