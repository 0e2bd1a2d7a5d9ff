"""The in-process event-stream broker: who receives what."""

from __future__ import annotations

from miniport.events.broker import EVERYONE, QUEUE_LIMIT, MemoryBroker, sse_frame


def drain(sub: object) -> list[dict[str, object]]:
    queue = sub.queue  # type: ignore[attr-defined]
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


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
