"""A server-sent-event response fed by a broker subscription, written straight to the ASGI
``send``: no per-message task, no task group. One small task watches ``receive`` for the client
going away, which closes the subscription at once (so a closed stream costs nothing from then
on, and ``connected()`` forgets the device)."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..events.broker import Broker, Message, Subscription, sse

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self, broker: Broker, sub: Subscription, hello: Message, until: tuple[str, ...] = ()
    ) -> None:
        self.broker, self.sub, self.hello, self.until = broker, sub, hello, until
        self.status_code = 200
        self.background = None
        self.init_headers(HEADERS)  # no body: no Content-Length, the server chunks it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(self._watch(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for frame in sse(self.broker, self.sub, self.hello, self.until):
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            if not self.sub.closed or self.until:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away mid-write
            pass
        finally:
            watcher.cancel()
            self.broker.unsubscribe(self.sub)

    async def _watch(self, receive: Receive) -> None:
        with contextlib.suppress(OSError):
            while (await receive())["type"] != "http.disconnect":
                pass
        self.sub.close()
