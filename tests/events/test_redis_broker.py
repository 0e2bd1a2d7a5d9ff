"""The event stream across API nodes through the real Redis: a message published on one broker
reaches subscribers on another, and data fetched by one platform reaches a runtime connected to
another."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from miniport.domain.requests import Launch
from miniport.events.broker import RedisBroker
from miniport.platform import Platform
from tests.conftest import LiveServer, confirm_url
from tests.support.platforms import SSE, Counter, eventually, settle

pytestmark = pytest.mark.redis
Make = Callable[..., Awaitable[Platform]]


@pytest.fixture
async def brokers(redis_url: str) -> AsyncIterator[Callable[[], Awaitable[RedisBroker]]]:
    started: list[RedisBroker] = []

    async def make() -> RedisBroker:
        broker = RedisBroker(redis_url)
        await broker.start()
        started.append(broker)
        return broker

    try:
        yield make
    finally:
        for broker in started:
            await broker.close()


async def test_a_message_reaches_subscribers_on_another_node(
    brokers: Callable[[], Awaitable[RedisBroker]],
) -> None:
    node_a, node_b = await brokers(), await brokers()
    on_b = node_b.subscribe("alice", "phone")
    on_a = node_a.subscribe("alice", "tablet")
    bob = node_b.subscribe("bob", "phone")
    await node_a.publish("alice", {"type": "backgroundFetchData", "fetchedData": "hi"})
    hi = {"type": "backgroundFetchData", "fetchedData": "hi"}
    assert await on_b.next(10) == hi
    assert await on_a.next(10) == hi
    await node_b.publish("bob", {"type": "ping"})
    assert (await bob.next(10))["type"] == "ping"
    assert not on_a.pending and not on_b.pending
    assert node_b.connected("alice") == ["phone"]  # devices connected to this node


async def test_deployments_on_two_databases_of_one_redis_hear_only_their_own(
    redis_url: str,
) -> None:
    """Redis's publish/subscribe ignores the database index: a staging deployment on /2
    received production's pushes (fetched data included) from /1."""
    base = redis_url.rsplit("/", 1)[0]
    mine, other = RedisBroker(f"{base}/13"), RedisBroker(f"{base}/12")
    await mine.start()
    await other.start()
    try:
        assert mine.CHANNEL != other.CHANNEL and RedisBroker(base).CHANNEL == "miniport:events"
        staging = mine.subscribe("alice", "phone")
        await other.publish("alice", {"type": "backgroundFetchData", "fetchedData": "prod"})
        await mine.publish("alice", {"type": "ping"})  # after the other's, on its own channel
        assert (await staging.next(10))["type"] == "ping"
        assert not staging.pending
    finally:
        await mine.close()
        await other.close()


async def test_a_device_targeted_message_reaches_only_that_device(
    brokers: Callable[[], Awaitable[RedisBroker]],
) -> None:
    node_a, node_b = await brokers(), await brokers()
    phone = node_b.subscribe("alice", "phone")
    tablet = node_b.subscribe("alice", "tablet")
    await node_a.publish("alice", {"type": "test", "device_id": "tablet"})
    assert (await tablet.next(10))["type"] == "test"
    await node_a.publish("alice", {"type": "after"})
    assert (await phone.next(10))["type"] == "after"


async def test_data_fetched_by_a_worker_reaches_a_runtime_on_an_api_node(
    redis_url: str, live: Callable[..., Awaitable[LiveServer]], platforms: Make, counter: Counter,
) -> None:
    """Two platforms on one database and one Redis: the API node holds the runtime's event
    stream; a separate worker platform does the fetch."""
    api = await live(redis_url=redis_url, start_scheduler=False)
    worker = await platforms(redis_url=redis_url, database_url=api.platform.settings.state_url)
    app = await worker.apps.create("shop", "dev")
    await confirm_url(worker, app.appid, "periodic", counter.url)
    token = api.platform.auth.runtime_token("alice", "phone")
    async with aiohttp.ClientSession() as s, s.get(
        f"{api.url}/runtime/v1/events", headers={"Authorization": f"Bearer {token}"},
        timeout=aiohttp.ClientTimeout(total=60),
    ) as stream:
        events = SSE(stream)
        assert (await events.next())[0] == "connected"
        await worker.background.set_token(app.appid, "alice", "tok")
        await worker.background.launch(app.appid, "alice", Launch())
        await settle(worker)
        engine = worker.make_engine()
        await asyncio.wait_for(engine.run(asyncio.Event(), until_idle=True), 30)
        message = await events.until("backgroundFetchData")
    assert message["appid"] == app.appid
    assert message["fetchedData"] == "data for tok"


async def test_the_listener_survives_a_dropped_connection_and_an_unreadable_message(
    brokers: Callable[[], Awaitable[RedisBroker]], redis_url: str
) -> None:
    """It ended at either, and the node's streams, still kept alive, never got a push again.
    Now a message it cannot read is skipped, and after a drop it subscribes again and ends
    the node's streams (their clients reconnect; what was published meanwhile is lost)."""
    import redis.asyncio as aioredis

    node_a, node_b = await brokers(), await brokers()
    raw = aioredis.from_url(redis_url)
    try:
        await raw.publish(RedisBroker.CHANNEL, b"not json")
        await raw.publish(RedisBroker.CHANNEL, b'{"no": "user"}')
        alice = node_b.subscribe("alice", "phone")
        await node_a.publish("alice", {"type": "ping", "n": 1})
        assert await alice.next(10) == {"type": "ping", "n": 1}
        # drop node B's subscription connection, as a Redis restart or failover would
        clients = await raw.client_list(_type="pubsub")
        for client in clients:
            await raw.client_kill_filter(_id=client["id"])
        for _ in range(500):  # ended: its client reconnects
            if alice.closed:
                break
            await alice.next(0.02)
        assert alice.closed
        again = node_b.subscribe("alice", "phone")
        for _ in range(100):  # until B has subscribed again
            await node_a.publish("alice", {"type": "ping", "n": 2})
            got = await again.next(0.1)
            if got is not None:
                break
        assert got == {"type": "ping", "n": 2}
    finally:
        await raw.aclose()



async def test_revoking_on_one_node_ends_the_tokens_streams_on_another(
    redis_url: str, live: Callable[..., Awaitable[LiveServer]],
) -> None:
    """Two API nodes on one database and one Redis: a revocation through node A's admin API
    ends the stream the token holds on node B at once (not at B's next sweep), before the
    user's next push reaches it; B refuses the token right after (it read the revocation
    when told, not a poll interval later), and another user's stream on B goes on."""
    a = await live(redis_url=redis_url, start_scheduler=False)
    b = await live(redis_url=redis_url, start_scheduler=False,
                   database_url=a.platform.settings.state_url)
    alice, bob = a.platform.auth.runtime_token("alice"), a.platform.auth.runtime_token("bob")
    events_url = f"{b.url}/runtime/v1/events"
    long = aiohttp.ClientTimeout(total=60)
    async with (
        aiohttp.ClientSession() as s,
        s.get(events_url, params={"access_token": alice}, timeout=long) as on_b,
        s.get(events_url, params={"access_token": bob}, timeout=long) as bob_on_b,
    ):
        alices, bobs = SSE(on_b), SSE(bob_on_b)
        assert (await alices.next())[0] == "connected" and (await bobs.next())[0] == "connected"
        async with s.post(f"{a.url}/admin/v1/runtime-tokens/revoke", json={"user_id": "alice"},
                          headers={"Authorization": f"Bearer {a.admin_key}"}) as r:
            assert r.status == 200, await r.text()
        assert await alices.next(5) == ("unauthorized", {
            "type": "unauthorized", "error": "unauthorized", "message": "runtime token revoked"})
        await a.platform.broker.publish("alice", {"type": "backgroundFetchData"})
        await a.platform.broker.publish("bob", {"type": "backgroundFetchData"})
        with pytest.raises(EOFError):
            await alices.next(5)
        assert (await bobs.next(5))[0] == "backgroundFetchData"
        async with s.get(events_url, params={"access_token": alice}) as again:
            assert again.status == 401
            assert (await again.json())["message"] == "runtime token revoked"


async def test_access_taken_away_on_one_node_ends_console_streams_on_another(
    redis_url: str, live: Callable[..., Awaitable[LiveServer]],
) -> None:
    """Two API nodes on one database and one Redis, console streams of an app's real-time view
    on node B: a member removed through node A's admin API ends the stream that member's
    session opened on B at once (not at B's next sweep, 15 s away), before the app's next
    events reach it, while an API key's stream goes on; the key revoked on A then ends its
    stream on B too."""
    from tests.web.console.test_console_http import client, sign_in
    from tests.web.test_console_stream_access import viewer_key
    from tests.web.test_realtime_push_http import batch, console_user

    a = await live(redis_url=redis_url, start_scheduler=False)
    b = await live(redis_url=redis_url, start_scheduler=False,
                   database_url=a.platform.settings.state_url)
    app = await a.platform.apps.create("A", "test")
    await console_user(a.platform, "vic", "viewer", app.appid)
    key = await viewer_key(a.platform, "reader", app.appid)
    url = f"{b.url}/admin/v1/apps/{app.appid}/analytics/realtime/events"
    long = aiohttp.ClientTimeout(total=60)
    async with client() as s:
        await sign_in(s, b.url, "vic")
        async with (
            s.get(url, timeout=long) as vics_stream,
            s.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=long) as keys_stream,
        ):
            vics, keys = SSE(vics_stream), SSE(keys_stream)
            assert (await vics.next())[0] == "connected" and (await keys.next())[0] == "connected"
            async with s.delete(f"{a.url}/admin/v1/apps/{app.appid}/members/vic",
                                headers={"Authorization": f"Bearer {a.admin_key}"}) as r:
                assert r.status == 200, await r.text()
            await told_and_ended(vics, "not_found", f"app {app.appid!r} not found")
            now = int(time.time() * 1000)
            await b.platform.analytics.ingest(app.appid, "alice", batch("a", 2, now))
            assert (await keys.next(5))[0] == "realtime"  # the key's stream goes on
            await a.platform.auth.revoke_key("api", "reader", "test")
            await told_and_ended(keys, "unauthorized", "invalid API key")
    assert b.platform.console_guard.streams() == 0


async def told_and_ended(events: SSE, error: str, message: str) -> None:
    """``events`` is told why within 5 s (a sweep is 15 s away: a word ended it), then ends."""
    assert await events.next(5) == (
        "unauthorized", {"type": "unauthorized", "error": error, "message": message})
    with pytest.raises(EOFError):
        await events.next(5)


async def test_a_publish_while_redis_is_away_reaches_this_nodes_streams(
    brokers: Callable[[], Awaitable[RedisBroker]], caplog: pytest.LogCaptureFixture
) -> None:
    """Redis refusing connections (a restart): a publish raised, and the API call that
    published after committing its change (an analytics publish, a devtools refresh)
    answered 500. It now reaches this node's streams and says so in a warning."""
    import redis.asyncio as aioredis

    from tests.conftest import free_port

    node = await brokers()
    alice = node.subscribe("alice", "phone")
    working = node._redis
    node._redis = aioredis.from_url(f"redis://127.0.0.1:{free_port()}")  # nothing listens
    try:
        await node.publish("alice", {"type": "ping", "n": 1})
        await node.publish("alice", {"type": "ping", "n": 1.5})
    finally:
        await node._redis.aclose()
        node._redis = working
    assert await alice.next(5) == {"type": "ping", "n": 1}
    assert await alice.next(5) == {"type": "ping", "n": 1.5}
    said = [r for r in caplog.records if "went to this node's streams only" in r.getMessage()]
    assert len(said) == 1  # one line per 10 s of an outage, not one per push
    await node.publish("alice", {"type": "ping", "n": 2})  # Redis back: through it again
    assert await alice.next(10) == {"type": "ping", "n": 2}


class SilencingProxy:
    """A loopback TCP proxy to Redis whose connections can be silenced: bytes are dropped
    both ways while the sockets stay open (a failover, a partition), as no close tells."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.silenced = target, False
        self.pairs: list[list[bool]] = []  # per connection: [silenced]
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def silence(self) -> None:  # the connections open now go silent; new ones work
        for flag in self.pairs:
            flag[0] = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]
        flag = [False]
        self.pairs.append(flag)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    if not flag[0]:
                        dst.write(data)
                        await dst.drain()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        for w in (writer, up_writer):
            w.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()


async def test_a_subscription_gone_silent_is_found_and_made_again(redis_url: str) -> None:
    """A connection that goes silent without closing: the listener waited on it for good,
    and the node's streams, kept alive, never got a push again nor reconnected."""
    host_port, _, db = redis_url.removeprefix("redis://").rpartition("/")
    host, port = host_port.rsplit(":", 1)
    proxy = SilencingProxy((host, int(port)))
    through = RedisBroker(f"redis://127.0.0.1:{await proxy.start()}/{db}")
    through.PING_S, through.SILENT_S = 0.3, 2.0
    direct = RedisBroker(redis_url)
    await through.start()
    await direct.start()
    try:
        sub = through.subscribe("alice", "phone")
        await asyncio.sleep(3.0)  # idle longer than SILENT_S: its pings are answered
        assert not sub.closed
        await direct.publish("alice", {"type": "ping", "n": 1})
        assert (await sub.next(10))["n"] == 1
        proxy.silence()
        await eventually(lambda: asyncio.sleep(0, sub.closed), timeout_s=10)
        again = through.subscribe("alice", "phone")  # the client reconnects

        async def heard() -> bool:
            await direct.publish("alice", {"type": "ping", "n": 2})
            await asyncio.sleep(0.2)
            return bool(again.pending)

        await eventually(heard, timeout_s=10)  # subscribed again, on a new connection
    finally:
        await through.close()
        await direct.close()
        await proxy.close()


async def test_a_users_devices_are_counted_on_every_node(
    brokers: Callable[[], Awaitable[RedisBroker]],
) -> None:
    """Devtools push, a live test's start and the devices lookup counted the devices of the
    node that answered: "no device" for a device that got the push through another node."""
    node_a, node_b = await brokers(), await brokers()
    alice = f"alice-{os.getpid()}-{time.monotonic_ns()}"  # the channel is shared with others
    node_b.subscribe(alice, "phone", appid="wx1")
    node_a.subscribe(alice, "tablet", appid="wx1")
    node_b.subscribe(alice, "watch", appid="wx2")
    assert node_a.connected(alice, "wx1") == ["tablet"]
    assert await node_a.devices(alice, "wx1") == ["phone", "tablet"]
    assert await node_b.devices(alice) == ["phone", "tablet", "watch"]
    assert await node_a.devices(alice + "-nobody") == []


async def test_the_devices_ask_neither_spins_nor_waits_on_a_silent_redis(redis_url: str) -> None:
    """Its answers' subscription ended (the node dropped its streams) made next() return at
    once: the wait spun, holding the event loop; and a silent Redis held the ask for good."""
    host_port, _, db = redis_url.removeprefix("redis://").rpartition("/")
    host, port = host_port.rsplit(":", 1)
    proxy = SilencingProxy((host, int(port)))
    node = RedisBroker(f"redis://127.0.0.1:{await proxy.start()}/{db}")
    node.DEVICES_WAIT_S = 1.0
    await node.start()
    try:
        node.subscribe("alice", "phone", appid="wx1")
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                gaps.append(time.monotonic() - last)
                last = time.monotonic()

        counting = asyncio.create_task(ticker())
        asking = asyncio.create_task(node.devices("alice", "wx1"))
        await asyncio.sleep(0.05)
        node.end_local_streams()  # as after a drop of the subscription
        assert await asking == ["phone"]
        await asyncio.sleep(0.05)
        counting.cancel()
        assert max(gaps) < 0.5, max(gaps)  # spinning held the loop for the rest of the wait
        proxy.silence()  # Redis takes the ask and never answers
        started = time.monotonic()
        assert await node.devices("alice", "wx1") == ["phone"]
        assert time.monotonic() - started < 5
    finally:
        await node.close()
        await proxy.close()
