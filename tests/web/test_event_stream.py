"""The runtime event stream as served at scale (issue 13): answered ahead of the framework, its
frames written by the publisher, keep-alives from one timer, a client that stops reading held
back by flow control without losing order, the access log, CORS, and uvicorn's lean protocol."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn

from miniport import memory
from miniport.events.broker import QUEUE_LIMIT
from miniport.web import event_stream
from miniport.web.event_stream import run_eagerly
from miniport.web.lean_http import LeanEvent, LeanHttpToolsProtocol
from tests.conftest import LiveServer, free_port
from tests.support.platforms import SSE, eventually

Live = Callable[..., Awaitable[LiveServer]]
EVENTS = "/runtime/v1/events"
LONG = aiohttp.ClientTimeout(total=60)


async def test_a_suspended_send_is_finished_in_a_task_and_a_finished_one_is_not() -> None:
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def quick() -> None:
        seen.append("quick")

    async def held() -> None:
        seen.append("held: " + await gate)

    assert run_eagerly(quick()) is None and seen == ["quick"]
    pending = run_eagerly(held())
    assert pending is not None and not pending.done()
    gate.set_result("opened")
    await asyncio.wait_for(pending, 5)
    assert seen == ["quick", "held: opened"]


async def test_a_send_that_fails_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise ConnectionResetError("gone")

    with caplog.at_level(logging.DEBUG, "miniport.web"):
        assert run_eagerly(broken()) is None
    assert "gone" in caplog.text


async def test_the_stream_writes_keep_alives_in_silence(
    live: Live, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(event_stream, "HEARTBEAT_S", 2.0)
    event_stream._pumps.clear()  # the next stream's pump takes the short heartbeat
    server = await live()
    token = server.platform.auth.runtime_token("alice", "phone")
    async with session.get(f"{server.url}{EVENTS}", params={"access_token": token},
                           timeout=LONG) as stream:
        assert (await SSE(stream).next())[0] == "connected"
        line = await asyncio.wait_for(stream.content.readline(), 10)
        while line.strip() == b"" or line.startswith(b"retry: "):  # (when to reconnect)
            line = await asyncio.wait_for(stream.content.readline(), 10)
        assert line == b": keep-alive\n"


def test_each_stream_draws_when_a_browser_reconnects_it() -> None:
    assert event_stream.reconnect_field(lambda: 0.0) == b"retry: 1000\n\n"
    assert event_stream.reconnect_field(lambda: 0.5) == b"retry: 3000\n\n"
    assert event_stream.reconnect_field(lambda: 0.9999) == b"retry: 5000\n\n"


async def test_a_runtime_stream_tells_the_browser_when_to_reconnect_after_its_hello(
    live: Live, session: aiohttp.ClientSession,
) -> None:
    """A browser's EventSource reconnects a dropped stream after its own fixed time (about
    3 s, no jitter): the 10,000 streams of a node that restarted came back at the same
    instant, and again every 3 s while it was down. Each stream now says its own time, drawn
    between 1 and 5 s, right after its hello (which stays the first frame)."""
    server = await live()
    token = server.platform.auth.runtime_token("alice", "browser")
    async with session.get(f"{server.url}{EVENTS}", params={"access_token": token},
                           timeout=LONG) as stream:
        lines = [await asyncio.wait_for(stream.content.readline(), 10) for _ in range(5)]
    assert lines[0] == b"event: connected\n" and lines[1].startswith(b"data: {")
    assert lines[2] == b"\n" and lines[4] == b"\n"
    retry = re.fullmatch(rb"retry: (\d+)\n", lines[3])
    assert retry is not None and 1000 <= int(retry[1]) <= 5000


async def test_a_client_that_stops_reading_gets_every_frame_in_order_once_it_reads(
    live: Live, session: aiohttp.ClientSession,
) -> None:
    server = await live()
    p = server.platform
    token = p.auth.runtime_token("alice", "phone")
    async with session.get(f"{server.url}{EVENTS}", params={"access_token": token},
                           timeout=LONG, read_bufsize=4096) as stream:
        events = SSE(stream)
        assert (await events.next())[0] == "connected"
        pad = "x" * 7000  # 1000 of these, one write each: more than the socket buffers hold
        for i in range(1000):
            await p.broker.publish("alice", {"type": "n", "i": i, "pad": pad})
            await asyncio.sleep(0)
        await asyncio.sleep(0.5)  # the server's writes wait for the client now
        got: list[int] = []
        while not got or got[-1] != 999:
            _, message = await events.next(30)
            got.append(message["i"])
        assert got == sorted(got) and len(set(got)) == len(got)
        await p.broker.publish("alice", {"type": "after"})
        assert (await events.next())[0] == "after"


async def test_the_stream_is_access_logged_when_it_ends(
    live: Live, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture,
) -> None:
    server = await live()
    token = server.platform.auth.runtime_token("alice", "phone")
    with caplog.at_level(logging.INFO, "miniport.access"):
        async with session.get(f"{server.url}{EVENTS}?access_token={token}",
                               timeout=LONG) as stream:
            assert (await SSE(stream).next())[0] == "connected"
        async with session.get(f"{server.url}{EVENTS}?access_token=nope") as refused:
            assert refused.status == 401

        async def logged() -> list[int]:
            return [r.__dict__["fields"]["status"] for r in caplog.records
                    if r.name == "miniport.access" and r.__dict__["fields"]["path"] == EVENTS]

        for _ in range(100):
            if sorted(await logged()) == [200, 401]:
                break
            await asyncio.sleep(0.05)
    assert sorted(await logged()) == [200, 401]
    assert token not in caplog.text  # never the query string


async def test_streams_under_uvicorn_are_written_to_directly_and_others_through_send(
    live: Live, session: aiohttp.ClientSession,
) -> None:
    """A stream served by uvicorn's httptools protocol writes its chunks to the connection
    itself (an upgrade renaming what it relies on fails here, rather than silently going
    back to a coroutine per stream and per write); any other ``send`` keeps the ASGI way."""
    server = await live()
    p = server.platform
    tokens = [p.auth.runtime_token("alice", d) for d in ("phone", "tablet")]
    async with (
        session.get(f"{server.url}{EVENTS}", params={"access_token": tokens[0]},
                    timeout=LONG) as one,
        session.get(f"{server.url}{EVENTS}", params={"access_token": tokens[1]},
                    timeout=LONG) as two,
    ):
        streams = [SSE(one), SSE(two)]
        for events in streams:
            assert (await events.next())[0] == "connected"
        subs = [s for group in p.broker._users["alice"].values() for s in group]  # type: ignore[attr-defined]
        assert len(subs) == 2
        assert all(isinstance(s.sink, event_stream.Stream) and s.sink._cycle is not None
                   for s in subs)
        # two messages in one turn: one chunk per stream, each message intact and in order
        await p.broker.publish("alice", {"type": "a", "n": 1})
        await p.broker.publish("alice", {"type": "b", "text": "é" * 3})
        for events in streams:
            assert await events.next() == ("a", {"type": "a", "n": 1})
            assert await events.next() == ("b", {"type": "b", "text": "ééé"})

    async def plain_send(message: Any) -> None:
        pass

    assert event_stream.direct_target(plain_send) is None


async def test_a_device_that_does_not_read_holds_a_bounded_backlog_and_blocks_no_one(
    live: Live, session: aiohttp.ClientSession,
) -> None:
    """A device that stops reading: its connection's buffers fill, then what comes for it
    waits in a backlog of at most QUEUE_LIMIT writes (the oldest dropped), while a device
    that reads gets every message at once."""
    server = await live()
    p = server.platform
    stalled_token = p.auth.runtime_token("alice", "stalled")
    reader_token = p.auth.runtime_token("alice", "reader")
    async with (
        session.get(f"{server.url}{EVENTS}", params={"access_token": stalled_token},
                    timeout=LONG, read_bufsize=4096) as stuck,
        session.get(f"{server.url}{EVENTS}", params={"access_token": reader_token},
                    timeout=LONG) as live_stream,
    ):
        assert (await SSE(stuck).next())[0] == "connected"  # then never read again
        reading = SSE(live_stream)
        assert (await reading.next())[0] == "connected"
        subs = {s.device_id: s for group in p.broker._users["alice"].values() for s in group}  # type: ignore[attr-defined]
        stalled = subs["stalled"].sink
        assert isinstance(stalled, event_stream.Stream)
        pad = "x" * 20_000
        for i in range(3 * QUEUE_LIMIT):
            await p.broker.publish("alice", {"type": "n", "i": i, "pad": pad})
            await asyncio.sleep(0)
            assert (await reading.next())[1]["i"] == i
        assert stalled._backlog is not None  # held back by flow control
        assert len(stalled._backlog) <= QUEUE_LIMIT


async def test_routes_are_built_before_the_first_request(tmp_path: Path) -> None:
    """``warm_routes`` builds what FastAPI would build at the first request through each
    included router (a release that stops building them lazily makes it return 0)."""
    from miniport.config import Settings
    from miniport.platform import create_platform
    from miniport.web.app import create_app, warm_routes

    platform = create_platform(Settings(data_dir=tmp_path, dev=True))
    try:
        app = create_app(platform)
        included = [r for r in app.router.routes if hasattr(r, "effective_candidates")]
        assert len(included) >= 10
        assert warm_routes(app.router.routes) >= len(included)
        for route in included:  # built: the same list from now on, nothing rebuilt
            assert route.effective_candidates() is route.effective_candidates()
    finally:
        await platform.close()


async def test_a_browser_on_a_listed_origin_gets_cors_headers_on_the_stream(
    live: Live, session: aiohttp.ClientSession,
) -> None:
    origin = "http://127.0.0.2:8080"
    server = await live(cors_origins=origin)
    token = server.platform.auth.runtime_token("alice", "browser")
    async with session.get(f"{server.url}{EVENTS}", params={"access_token": token},
                           headers={"Origin": origin}, timeout=LONG) as stream:
        assert stream.status == 200
        assert stream.headers["Access-Control-Allow-Origin"] == origin
        assert (await SSE(stream).next())[0] == "connected"
        await server.platform.broker.publish("alice", {"type": "x"})
        assert (await SSE(stream).next())[0] == "x"


async def test_shutting_the_broker_down_ends_open_streams(
    live: Live, session: aiohttp.ClientSession,
) -> None:
    server = await live()
    token = server.platform.auth.runtime_token("alice", "phone")
    async with session.get(f"{server.url}{EVENTS}", params={"access_token": token},
                           timeout=LONG) as stream:
        events = SSE(stream)
        assert (await events.next())[0] == "connected"
        await server.platform.broker.close()
        with pytest.raises(EOFError):
            await events.next(10)
    assert server.platform.broker.connected("alice") == []


async def test_release_frees_garbage_in_reference_cycles() -> None:
    class Node:
        other: Any = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    gc.disable()
    try:
        del a, b
        assert gone() is not None  # a cycle: only a collection frees it
        memory.release()
        assert gone() is None
    finally:
        gc.enable()


def test_shrink_rebuilds_an_oversized_table_in_place_and_leaves_a_compact_one() -> None:
    import sys

    emptied, few = set(range(10_000)), {i: str(i) for i in range(10_000)}
    for i in range(10_000):
        emptied.discard(i)
    for i in range(10, 10_000):
        del few[i]
    grown = sys.getsizeof(emptied), sys.getsizeof(few)
    same = emptied, few
    memory.shrink(emptied)
    memory.shrink(few)
    assert (emptied, few) == (set(), {i: str(i) for i in range(10)}) and same == (emptied, few)
    assert sys.getsizeof(emptied) < grown[0] / 100 and sys.getsizeof(few) < grown[1] / 100
    full = set(range(10_000))
    size = sys.getsizeof(full)
    memory.shrink(full)
    assert sys.getsizeof(full) == size and len(full) == 10_000  # nothing to gain: untouched


def test_release_hooks_are_called_while_their_object_lives() -> None:
    calls: list[str] = []

    class Cache:
        def forget(self) -> None:
            calls.append("forget")

    cache = Cache()
    memory.on_release(cache.forget)
    memory.release()
    assert calls == ["forget"]
    del cache  # held weakly: it goes, and its hook with it
    memory.release()
    assert calls == ["forget"]


async def test_after_a_wave_of_closes_the_pump_shrinks_its_sets_and_the_brokers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """10,000 streams closed: once the closes are over, the pump rebuilds its keep-alive
    buckets (each had grown to a fifteenth of the streams) and the indexes of the brokers it
    served, then gives memory back; the closes themselves kept no object per close."""
    import sys

    from miniport.events.broker import MemoryBroker

    released: list[bool] = []
    monkeypatch.setattr(memory, "release", lambda: released.append(True))

    class Stub:  # what the pump reads of a stream
        def __init__(self) -> None:
            self.wrote, self.bucket = float(len(streams) % 15), 0

    pump = event_stream.Pump(asyncio.get_running_loop())
    broker = MemoryBroker()
    pump.serves(broker)
    pump.serves(broker)
    assert pump.brokers == [broker]
    subs = [broker.subscribe(f"u{i}", "d") for i in range(10_000)]
    streams: list[Stub] = []
    for _ in range(10_000):
        streams.append(Stub())
        pump.add(streams[-1])  # type: ignore[arg-type]
    grown = max(sys.getsizeof(b) for b in pump.buckets)
    before = sys.getallocatedblocks()
    for stream in streams[1:]:
        pump.remove(stream)  # type: ignore[arg-type]
    assert sys.getallocatedblocks() - before < 100  # nothing kept per close
    for sub in subs[1:]:
        broker.unsubscribe(sub)
    assert pump.count == 1 and pump.trimming is not None
    users = sys.getsizeof(broker._users)
    pump.last_close[0] = pump.loop.time() - event_stream.TRIM_DELAY_S  # the wave is over
    pump.trimming.cancel()
    pump.trim()
    assert released == [True] and pump.closed == 0 and pump.trimming is None
    assert max(sys.getsizeof(b) for b in pump.buckets) < grown / 20
    assert sum(len(b) for b in pump.buckets) == 1  # the stream still open keeps its bucket
    assert streams[0] in pump.buckets[streams[0].bucket]
    assert sys.getsizeof(broker._users) < users / 50 and broker.open_connections() == 1
    if pump.timer is not None:
        pump.timer.cancel()


def test_lean_event_wakes_every_waiter_and_clears() -> None:
    async def run() -> None:
        event = LeanEvent()
        waiters = [asyncio.ensure_future(event.wait()) for _ in range(3)]
        await asyncio.sleep(0)
        assert not event.is_set() and not any(w.done() for w in waiters)
        event.set()
        assert await asyncio.gather(*waiters) == [True, True, True]
        event.clear()
        assert not event.is_set()
        late = asyncio.ensure_future(event.wait())
        await asyncio.sleep(0)
        late.cancel()  # a cancelled waiter leaves nothing behind
        with pytest.raises(asyncio.CancelledError):
            await late
        assert event._waiters is None

    asyncio.run(run())


async def test_uvicorn_runs_the_lean_protocol_with_pipelined_requests() -> None:
    """The swap of uvicorn's events and pipeline took (an upgrade renaming them fails here),
    and pipelined requests are still answered in order."""
    seen: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        cycle = receive.__self__  # uvicorn's request cycle
        seen.append((type(cycle.message_event), type(cycle.flow._is_writable_event)))
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                           log_level="warning", http=LeanHttpToolsProtocol))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                await task
            await asyncio.sleep(0.02)
        protocols = server.server_state.connections
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        data = b""
        while data.count(b"HTTP/1.1 200") < 2:
            data += await asyncio.wait_for(reader.read(4096), 5)
        assert re.findall(rb"\r\n\r\n(/one|/two)", data) == [b"/one", b"/two"]
        assert [getattr(p, "lean", None) for p in protocols] == [True]
        writer.close()
    finally:
        server.should_exit = True
        await task
    assert seen == [(LeanEvent, LeanEvent)] * 2



async def test_a_stream_with_a_request_pipelined_behind_it_ends_when_the_client_goes(
    live_server: LiveServer,
) -> None:
    """uvicorn told only the last request of a connection that it was lost: a stream with any
    request sent behind it in the same write never ended (its subscription and keep-alives
    stayed for good, and a client with a token could pile them up)."""
    broker, token = live_server.platform.broker, live_server.platform.auth.runtime_token("alice")
    port = int(live_server.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /runtime/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
                 "\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".encode())  # fmt: skip
    await writer.drain()
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # the stream's headers

    async def open_streams(n: int) -> bool:
        return broker.open_connections() == n

    await eventually(lambda: open_streams(1), timeout_s=5)
    writer.transport.abort()
    await eventually(lambda: open_streams(0), timeout_s=5)
