"""The in-process event-stream broker: who receives what."""

from __future__ import annotations

import asyncio

from miniport.events.broker import (
    EVERYONE,
    QUEUE_LIMIT,
    MemoryBroker,
    Subscription,
    sse_frame,
)


def drain(sub: Subscription) -> list[dict[str, object]]:
    return sub.take()


async def test_a_message_reaches_every_device_of_its_user_only() -> None:
    broker = MemoryBroker()
    phone, tablet = broker.subscribe("ann", "phone"), broker.subscribe("ann", "tablet")
    other = broker.subscribe("bob", "phone")
    await broker.publish("ann", {"type": "x"})
    assert drain(phone) == drain(tablet) == [{"type": "x"}]
    assert drain(other) == []


async def test_a_device_targeted_message_reaches_that_device_only() -> None:
    broker = MemoryBroker()
    phone, tablet = broker.subscribe("ann", "phone"), broker.subscribe("ann", "tablet")
    await broker.publish("ann", {"type": "x", "device_id": "tablet"})
    assert drain(phone) == [] and len(drain(tablet)) == 1


async def test_everyone_skips_excluded_users_and_console_channels() -> None:
    broker = MemoryBroker()
    ann, bob = broker.subscribe("ann", "d"), broker.subscribe("bob", "d")
    console = broker.subscribe("test:t1", "console", broadcast=False)
    await broker.publish(EVERYONE, {"type": "analyticsConfig", "exclude_users": ["bob"]})
    assert len(drain(ann)) == 1
    assert drain(bob) == [] and drain(console) == []


async def test_a_stalled_client_loses_the_oldest_messages_not_the_newest() -> None:
    broker = MemoryBroker()
    sub = broker.subscribe("ann", "d")
    for i in range(QUEUE_LIMIT + 5):
        await broker.publish("ann", {"type": "n", "i": i})
    got = drain(sub)
    assert len(got) == QUEUE_LIMIT and got[-1]["i"] == QUEUE_LIMIT + 4 and got[0]["i"] == 5


async def test_unsubscribed_devices_are_forgotten() -> None:
    broker = MemoryBroker()
    sub = broker.subscribe("ann", "d")
    assert broker.connected("ann") == ["d"]
    broker.unsubscribe(sub)
    assert broker.connected("ann") == []


def test_sse_frame_names_the_event_after_the_message_type() -> None:
    assert (
        sse_frame({"type": "t", "v": "值"})
        == 'event: t\ndata: {"type": "t", "v": "值"}\n\n'.encode()
    )


async def test_an_app_wide_message_reaches_only_that_apps_runtimes() -> None:
    broker = MemoryBroker()
    shop, blog = (
        broker.subscribe("ann", "d", appid="shop"),
        broker.subscribe("bob", "d", appid="blog"),
    )
    anywhere = broker.subscribe("cat", "d")  # a stream opened without an app: every app's
    await broker.publish(EVERYONE, {"type": "analyticsConfig", "appid": "shop"})
    assert [m["appid"] for m in drain(shop)] == ["shop"]
    assert drain(blog) == []
    assert len(drain(anywhere)) == 1


async def test_a_users_message_for_one_app_skips_the_users_streams_of_other_apps() -> None:
    broker = MemoryBroker()
    shop, blog = (
        broker.subscribe("ann", "d1", appid="shop"),
        broker.subscribe("ann", "d2", appid="blog"),
    )
    await broker.publish("ann", {"type": "backgroundFetchData", "appid": "blog"})
    await broker.publish("ann", {"type": "note"})  # no app: every stream of the user
    assert [m["type"] for m in drain(shop)] == ["note"]
    assert [m["type"] for m in drain(blog)] == ["backgroundFetchData", "note"]


async def test_a_message_is_encoded_once_for_all_its_streams() -> None:
    broker = MemoryBroker()
    subs = [broker.subscribe("ann", f"d{i}") for i in range(3)]
    await broker.publish("ann", {"type": "x", "v": 1})
    frames = [sse_frame(drain(s)[0]) for s in subs]
    assert frames[0] == b'event: x\ndata: {"type": "x", "v": 1}\n\n'
    assert frames[1] is frames[0] and frames[2] is frames[0]


async def test_a_waiting_stream_gets_a_keep_alive_and_ends_when_closed() -> None:
    broker = MemoryBroker()
    sub = broker.subscribe("ann", "d")
    assert await sub.next(0.01) is None  # silence: a keep-alive
    waiting = asyncio.ensure_future(sub.next(60))
    await asyncio.sleep(0)
    await broker.publish("ann", {"type": "x"})
    assert await waiting == {"type": "x"}
    waiting = asyncio.ensure_future(sub.next(60))
    await asyncio.sleep(0)
    broker.unsubscribe(sub)  # the client went away: the waiter returns at once
    assert await asyncio.wait_for(waiting, 5) is None
    assert sub.closed and broker.connected("ann") == []


async def test_compact_shrinks_the_indexes_a_wave_of_closes_emptied() -> None:
    """A dict or set keeps the table it grew to when its entries leave: 10,000 users' streams
    closed left the broker's indexes holding room for 10,000. ``compact`` rebuilds them at
    their present size, and the streams still open get what they should."""
    import sys

    broker = MemoryBroker()
    subs = [broker.subscribe(f"u{i}", "d", appid="app") for i in range(10_000)]
    grown = sys.getsizeof(broker._users), sys.getsizeof(broker._by_app["app"])
    for sub in subs[2:]:
        broker.unsubscribe(sub)
    assert (sys.getsizeof(broker._users), sys.getsizeof(broker._by_app["app"])) == grown
    broker.compact()
    assert sys.getsizeof(broker._users) < grown[0] / 50
    assert sys.getsizeof(broker._by_app["app"]) < grown[1] / 50
    assert broker.open_connections() == 2 and broker.connected("u1") == ["d"]
    await broker.publish("u1", {"type": "x"})
    await broker.publish(EVERYONE, {"type": "y", "appid": "app"})
    assert drain(subs[0]) == [{"type": "y", "appid": "app"}]
    assert drain(subs[1]) == [{"type": "x"}, {"type": "y", "appid": "app"}]
    broker.unsubscribe(subs[0])
    broker.unsubscribe(subs[1])
    broker.compact()
    assert broker.open_connections() == 0 and broker._users == {} and not broker._by_app
    assert broker.subscribe("u1", "d").user_id == "u1"  # the new indexes take new streams
    assert broker.open_connections() == 1


async def test_ending_a_users_streams_of_tokens_issued_before_a_time() -> None:
    """A revocation: the user's streams whose token was issued before the cut-off get the
    notice, then end; the user's newer streams, other users' and console channels go on."""
    broker = MemoryBroker()
    old = broker.subscribe("ann", "phone", issued_at=100)
    old_shop = broker.subscribe("ann", "tablet", appid="shop", issued_at=150)
    new = broker.subscribe("ann", "laptop", issued_at=200)
    bob = broker.subscribe("bob", "phone", issued_at=100)
    console = broker.subscribe("ann", "console", broadcast=False)  # no runtime token
    notice = {"type": "unauthorized", "message": "runtime token revoked"}
    assert broker.end_streams("ann", 200, notice) == 2
    for sub in (old, old_shop):
        assert await sub.next(1) == notice and await sub.next(1) is None and sub.closed
    await broker.publish("ann", {"type": "x"})
    assert drain(old) == [] and drain(new) == drain(console) == [{"type": "x"}]
    assert not new.closed and not bob.closed and not console.closed
    assert broker.end_streams("nobody", 200, notice) == 0
    for sub in (old, old_shop):  # what the streams do once ended
        broker.unsubscribe(sub)
    assert broker.connected("ann") == ["console", "laptop"]


async def test_ending_the_streams_of_expired_tokens_of_every_user() -> None:
    broker = MemoryBroker()
    ann = broker.subscribe("ann", "d", appid="shop", issued_at=100)
    bob = broker.subscribe("bob", "d", issued_at=100)
    cat = broker.subscribe("cat", "d", issued_at=300)
    console = broker.subscribe("test:t1", "console", broadcast=False)
    notice = {"type": "unauthorized", "message": "runtime token expired"}
    assert broker.end_expired(200, notice) == 2
    assert drain(ann) == drain(bob) == [notice] and ann.closed and bob.closed
    assert not cat.closed and not console.closed and drain(cat) == []
