"""The real-time feed's costs and rules (``LiveFeed`` on the in-process broker): nothing is
done for an app nobody watches, one message per batch when somebody does, batches within the
interval go as one, at most a few messages a second per app (also for a viewer of several
nodes' events: its node relays them merged), a watch announced by another node counts and ends
``WATCH_TTL_S`` after the last announcement, and nothing a stranger sends on the broker breaks
it."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from miniport.analytics.ingest_rules import CheckedEvent
from miniport.events.broker import MemoryBroker
from miniport.services import live_feed
from miniport.services.analytics import test_channel as console_test_channel
from miniport.services.live_feed import (
    MIN_INTERVAL_S,
    WATCH_CHANNEL,
    WATCH_TTL_S,
    LiveFeed,
    live_channel,
)

T0 = 1_764_460_800_000


def ev(uid: str, ts: int = T0) -> CheckedEvent:
    return CheckedEvent(uid=uid, event_name="$launch", event_id=0, ts_ms=ts, time_estimated=False,
                        page=None, trigger=None, action=None, values={})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_nothing_is_done_for_an_app_nobody_watches() -> None:
    broker = MemoryBroker()
    feed = LiveFeed(broker)
    other = await feed.watch("wxB")
    feed.accepted("wxA", "alice", T0, [ev("a1")])
    await asyncio.sleep(0.05)
    assert feed.messages == 0 and "wxA" not in feed._pending  # no digest, no timer
    assert other.take() == []
    await feed.close()


async def test_one_message_per_batch_only_to_that_apps_viewers() -> None:
    broker = MemoryBroker()
    feed = LiveFeed(broker)
    a, b = await feed.watch("wxA"), await feed.watch("wxB")
    feed.accepted("wxA", "alice", T0, [ev("a1"), ev("a2"), ev("a3", T0 + 60_000)])
    message = await a.next(2)
    assert message is not None and message["appid"] == "wxA"
    minutes = [(m["events"], m["users"]) for m in message["minutes"]]
    assert minutes == [(2, ["alice"]), (1, ["alice"])]
    assert b.take() == [] and feed.messages == 1
    feed.accepted("wxB", "bob", T0, [ev("b1")])
    assert (await b.next(2) or {})["appid"] == "wxB"
    assert a.take() == []
    await feed.close()


async def test_batches_within_the_interval_go_as_one_message() -> None:
    broker = MemoryBroker()
    feed = LiveFeed(broker)
    sub = await feed.watch("wxA")
    started = asyncio.get_running_loop().time()
    arrivals: list[float] = []
    for i in range(40):  # 40 batches over ~1 s
        feed.accepted("wxA", f"u{i % 3}", T0 + i, [ev(f"e{i}"), ev(f"f{i}")])
        await asyncio.sleep(0.025)
        for _ in sub.take():
            arrivals.append(asyncio.get_running_loop().time() - started)
    await asyncio.sleep(0.4)
    messages = [*sub.take()]
    arrivals += [asyncio.get_running_loop().time() - started] * len(messages)
    total = feed.messages
    assert 3 <= total <= 7, total  # ~1.25 s at <= 4 a second, the first at once
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(g >= live_feed.MIN_INTERVAL_S - 0.03 for g in gaps), gaps
    await feed.close()


async def test_every_event_is_counted_once_across_coalesced_messages() -> None:
    broker = MemoryBroker()
    feed = LiveFeed(broker)
    sub = await feed.watch("wxA")
    for i in range(30):
        feed.accepted("wxA", "alice", T0 + i, [ev(f"e{i}", T0 + i * 1000)])
        if i % 7 == 0:
            await asyncio.sleep(0.1)
    await asyncio.sleep(0.6)
    got = sub.take()
    assert sum(m["events"] for msg in got for m in msg["minutes"]) == 30
    assert len(got) < 30
    await feed.close()


async def test_a_watch_announced_by_another_node_counts_until_it_expires() -> None:
    clock = Clock()
    broker = MemoryBroker()
    feed = LiveFeed(broker, monotonic=clock)
    assert not feed.watching("wxA")
    for bad in ({"type": "watching", "apps": "wxA"}, {"type": "watching", "apps": 5},
                {"type": "watching"}, {"type": "other", "apps": ["wxA"]}):
        await broker.publish(WATCH_CHANNEL, bad)  # not an announcement: ignored, nothing raised
    assert not feed.watching("wxA") and not feed.watching("w")
    await broker.publish(WATCH_CHANNEL, {"type": "watching", "apps": ["wxA", 7]})  # 7: ignored
    assert feed.watching("wxA")
    remote = broker.subscribe(live_channel("wxA"), "console", broadcast=False)
    feed.accepted("wxA", "alice", T0, [ev("a1")])
    assert (await remote.next(2) or {})["type"] == "realtime"
    clock.now += WATCH_TTL_S + 0.1
    assert not feed.watching("wxA")
    feed.accepted("wxA", "alice", T0, [ev("a2")])
    assert "wxA" not in feed._pending
    await feed.close()


async def test_a_resync_goes_instead_of_counts_it_cannot_tell() -> None:
    broker = MemoryBroker()
    feed = LiveFeed(broker)
    sub = await feed.watch("wxA")
    feed.accepted("wxA", "alice", T0, [ev("a1")], resync=True)
    message = await sub.next(2)
    assert message is not None and message["resync"] is True and message["minutes"] == []
    await feed.close()


async def test_viewers_are_announced_again_while_open_and_forgotten_once_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live_feed, "ANNOUNCE_S", 0.05)
    broker = MemoryBroker()
    feed = LiveFeed(broker)
    heard = broker.subscribe(WATCH_CHANNEL, "spy", broadcast=False)
    sub = await feed.watch("wxA")
    await asyncio.sleep(0.12)
    assert [m["apps"] for m in heard.take()][:2] == [["wxA"], ["wxA"]]
    assert feed.viewers() == 1
    broker.unsubscribe(sub)  # the console went away
    await asyncio.sleep(0.12)
    heard.take()
    await asyncio.sleep(0.1)
    assert heard.take() == [] and feed.viewers() == 0
    await feed.close()


class DownBroker(MemoryBroker):
    """A broker whose publishing fails (Redis gone for a moment)."""

    async def publish(self, user_id: str, message: dict[str, object]) -> None:
        raise ConnectionError("redis is away")


async def test_a_broker_that_cannot_publish_costs_a_warning_not_the_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    feed = LiveFeed(DownBroker())
    sub = await feed.watch("wxA")  # opens all the same: this node's own events still count
    assert not sub.closed and feed.watching("wxA")
    feed.accepted("wxA", "alice", T0, [ev("a1")])
    await asyncio.sleep(0.05)
    assert feed.messages == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("real-time viewer" in w for w in warnings)
    assert any("push real-time events" in w for w in warnings)
    await feed.close()


def test_no_runtime_identity_can_share_a_console_channel() -> None:
    from miniport.domain.tokens import validate_id
    from miniport.errors import InvalidInput

    for key in (live_channel("wxA"), WATCH_CHANNEL):
        with pytest.raises(InvalidInput):
            validate_id("user id", key)  # what every runtime token's user id passes


async def test_a_viewer_gets_a_few_messages_a_second_however_many_nodes_send() -> None:
    broker = MemoryBroker()  # three nodes' feeds on one broker: what Redis does between nodes
    viewer_node, node_1, node_2 = LiveFeed(broker), LiveFeed(broker), LiveFeed(broker)
    sub = await viewer_node.watch("wxA")
    assert node_1.watching("wxA") and node_2.watching("wxA")
    loop = asyncio.get_running_loop()
    started = loop.time()
    arrivals: list[float] = []
    got: list[dict[str, object]] = []
    for i in range(60):  # ~1.5 s of batches on both nodes
        node_1.accepted("wxA", "alice", T0 + i, [ev(f"a{i}")])
        node_2.accepted("wxA", "bob", T0 + i, [ev(f"b{i}"), ev(f"c{i}")])
        await asyncio.sleep(0.025)
        for message in sub.take():
            got.append(message)
            arrivals.append(loop.time() - started)
    await asyncio.sleep(0.6)
    got += sub.take()
    sent = node_1.messages + node_2.messages
    assert sum(m["events"] for msg in got for m in msg["minutes"]) == 180  # type: ignore[attr-defined]
    assert len(got) < sent  # the two nodes' messages were merged on the way to the viewer
    assert all(b - a >= MIN_INTERVAL_S - 0.03 for a, b in itertools.pairwise(arrivals))
    users = {u for msg in got for m in msg["minutes"] for u in m["users"]}  # type: ignore[attr-defined]
    assert users == {"alice", "bob"}
    for feed in (viewer_node, node_1, node_2):
        await feed.close()


async def test_the_relay_stops_listening_once_the_last_viewer_leaves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live_feed, "ANNOUNCE_S", 0.05)
    broker = MemoryBroker()
    feed = LiveFeed(broker)
    first, second = await feed.watch("wxA"), await feed.watch("wxA")
    assert broker.connected(live_channel("wxA")) == ["relay"]  # one listener for both
    broker.unsubscribe(first)
    await asyncio.sleep(0.1)
    assert broker.connected(live_channel("wxA")) == ["relay"]
    broker.unsubscribe(second)
    await asyncio.sleep(0.1)
    assert broker.connected(live_channel("wxA")) == []
    await feed.close()


async def test_a_message_not_understood_is_not_relayed(caplog: pytest.LogCaptureFixture) -> None:
    broker = MemoryBroker()
    feed = LiveFeed(broker)
    sub = await feed.watch("wxA")
    good = {"type": "realtime", "minutes": [], "latest": [], "received_ms": [1, 1],
            "users_cut": False, "resync": True}
    await broker.publish(live_channel("wxA"), {"type": "other"})  # not for the relay
    await broker.publish(live_channel("wxA"), good)
    await broker.publish(live_channel("wxA"), {"type": "realtime", "minutes": 5})
    await broker.publish(live_channel("wxA"), {**good, "latest": [{"ts_ms": 1}]})
    await asyncio.sleep(0.4)
    assert sub.take() == [good]  # the bad ones were dropped, the good one still goes
    assert sum("not understood" in r.getMessage() for r in caplog.records) == 2
    await feed.close()


@pytest.mark.parametrize(
    "channel", [console_test_channel("t-1"), live_channel("wxA"), WATCH_CHANNEL]
)
def test_no_runtime_user_id_can_name_a_console_channel(channel: str) -> None:
    """A host key mints runtime tokens for any user id it gives, and a device's stream is
    keyed by that id: the console's channels (a live test's reports, an app's real time)
    must be keys no user id can be, or a device could read them."""
    from miniport.domain.tokens import validate_id
    from miniport.errors import InvalidInput

    with pytest.raises(InvalidInput, match="printable"):
        validate_id("user id", channel)
