"""The bare baseline of bench/event_stream.py: a raw asyncio (uvloop) server that keeps each
``GET /runtime/v1/events`` open as a chunked server-sent-event stream and, on ``POST /push``,
writes the same two pre-encoded events Miniport's push sends (the fetched data, then the
refresh) to every open stream. No framework, no per-stream queue.

    python bench/bare_sse.py PORT
"""

from __future__ import annotations

import asyncio
import sys
from typing import ClassVar

import uvloop

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


DATA = (
    b'{"type": "backgroundFetchData", "appid": "mp0123456789abcdef", "fetchType": "periodic", '
    b'"fetchedData": "data", "timeStamp": 1795993333, "path": "", "query": "", "scene": 1001}'
)
REFRESH = (
    b'{"type": "devtoolsRefresh", "appid": "mp0123456789abcdef", "fetchType": "periodic", '
    b'"verdict": "cached"}'
)
# one chunk, one write per stream: the least a server can do for the push
PUSH = chunk(
    b"event: backgroundFetchData\ndata: " + DATA + b"\n\n"
    b"event: devtoolsRefresh\ndata: " + REFRESH + b"\n\n"
)


class Stream(asyncio.Protocol):
    streams: ClassVar[set[asyncio.Transport]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            return
        if self.buffer.startswith(b"GET /runtime/v1/events"):
            self.streams.add(self.transport)
            self.transport.write(HEAD + chunk(b'event: connected\ndata: {"type": "connected"}\n\n'))
        elif self.buffer.startswith(b"POST /push"):
            for transport in self.streams:  # as Miniport's push: the data, then the refresh
                transport.write(PUSH)
            self.transport.write(OK)
        self.buffer = b""

    def connection_lost(self, exc: Exception | None) -> None:
        self.streams.discard(self.transport)


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Stream, "127.0.0.1", port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main(int(sys.argv[1])))
