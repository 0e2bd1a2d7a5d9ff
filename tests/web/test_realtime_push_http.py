"""The console's real-time view pushed over HTTP (``GET …/analytics/realtime/events``): the
session cookie of a member (a viewer is enough) opens it, anyone else is refused; a viewer of
one app gets that app's accepted events and never another's; what a push carries adds up to
what the real-time report then says; and, with Redis, events accepted by one node reach a
console connected to another."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from miniport.platform import Platform
from tests.conftest import LiveServer
from tests.support.platforms import SSE, eventually
from tests.web.console.test_console_http import PASSWORD, client, sign_in

Make = Callable[..., Awaitable[Platform]]


def batch(prefix: str, n: int, now: int, **context: Any) -> dict[str, Any]:
    return {"sent_at": now, "context": {"$platform": "ios", **context}, "events": [
        {"id": f"{prefix}-{i}", "event": "$pageview", "ts": now - i * 1000,
         "page": f"pages/p{i}", "data": {"path": f"pages/p{i}"}} for i in range(n)]}


async def console_user(p: Platform, name: str, role: str, *appids: str) -> None:
    await p.console_users.create_user(name, "viewer" if role == "viewer" else "developer",
                                      PASSWORD)
    for appid in appids:
        await p.members.add(appid, name, role, "test")


async def open_stream(s: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    return await s.get(url, timeout=aiohttp.ClientTimeout(total=60))


async def test_a_viewer_gets_only_their_apps_events_and_they_add_up(
    live_server: LiveServer,
) -> None:
    base, p = live_server.url, live_server.platform
    app_a, app_b = await p.apps.create("A", "test"), await p.apps.create("B", "test")
    await console_user(p, "vic", "viewer", app_a.appid)
    url = f"{base}/admin/v1/apps/{app_a.appid}/analytics/realtime/events"
    async with client() as s:
        await sign_in(s, base, "vic")
        # app B: not a member, refused (as if it did not exist) before any stream opens
        async with s.get(f"{base}/admin/v1/apps/{app_b.appid}/analytics/realtime/events") as r:
            assert r.status == 404
        stream = await open_stream(s, url)
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = SSE(stream)
        assert await events.next() == ("connected", {"type": "connected", "appid": app_a.appid})
        async with s.get(f"{base}/metrics") as r:
            assert "miniport_realtime_viewers 1.0" in await r.text()
        now = int(time.time() * 1000)
        await p.analytics.ingest(app_b.appid, "bob", batch("b", 3, now))  # not this viewer's
        await p.analytics.ingest(app_a.appid, "alice", batch("a", 3, now, **{"$scene": 1001}))
        name, message = await events.next(5)
        assert name == "realtime" and message["appid"] == app_a.appid
        assert [e["user"] for e in message["latest"]] == ["alice"] * 3
        assert sum(m["events"] for m in message["minutes"]) == 3
        # the pushed latest events are the report's, row for row
        report = await p.analytics.realtime(app_a.appid, latest=3)
        assert message["latest"] == report["latest"]
        pushed = {m["minute_ms"] for m in message["minutes"]}
        assert sum(m["events"] for m in report["minutes"]) == 3 and len(pushed) >= 1
        # B's events were never offered to this stream: the next frame is A's again
        await p.analytics.ingest(app_b.appid, "bob", batch("b2", 1, now))
        await asyncio.sleep(0.3)
        await p.analytics.ingest(app_a.appid, "carol", batch("c", 1, now))
        name, message = await events.next(5)
        assert message["appid"] == app_a.appid and message["latest"][0]["user"] == "carol"
        # a batch sent again adds nothing: nothing is pushed for it
        await p.analytics.ingest(app_a.appid, "carol", batch("c", 1, now))
        # half sent before: what it added is not known here, the console is told to fetch
        await asyncio.sleep(0.3)
        await p.analytics.ingest(app_a.appid, "carol", batch("c", 2, now))
        name, message = await events.next(5)
        assert message["resync"] is True and message["minutes"] == []
        stream.close()


async def test_only_members_with_a_session_open_the_stream(live_server: LiveServer) -> None:
    base, p = live_server.url, live_server.platform
    app = await p.apps.create("A", "test")
    await console_user(p, "dev", "developer")  # a developer, but no member of the app
    url = f"{base}/admin/v1/apps/{app.appid}/analytics/realtime/events"
    async with client() as s:
        async with s.get(url) as r:
            assert r.status == 401
        await sign_in(s, base, "dev")
        async with s.get(url) as r:
            assert r.status == 404
        async with s.get(f"{base}/admin/v1/apps/wxnope/analytics/realtime/events") as r:
            assert r.status == 404
    assert p.live.viewers() == 0


@pytest.mark.redis
async def test_events_accepted_on_one_node_reach_a_console_on_another(
    redis_url: str, live: Callable[..., Awaitable[LiveServer]], platforms: Make,
) -> None:
    console_node = await live(redis_url=redis_url, start_scheduler=False)
    ingest_node = await platforms(
        redis_url=redis_url, database_url=console_node.platform.settings.state_url
    )
    p = console_node.platform
    app = await p.apps.create("A", "test")
    other = await p.apps.create("B", "test")
    await console_user(p, "vic", "viewer", app.appid, other.appid)
    base = console_node.url
    async with client() as s:
        await sign_in(s, base, "vic")
        stream = await open_stream(s, f"{base}/admin/v1/apps/{app.appid}/analytics/realtime/events")
        events = SSE(stream)
        assert (await events.next())[0] == "connected"
        # the ingesting node hears of the watch through Redis (at once, in practice)
        await eventually(lambda: asyncio.sleep(0, ingest_node.live.watching(app.appid)), 2)
        assert not ingest_node.live.watching(other.appid)
        now = int(time.time() * 1000)
        await ingest_node.analytics.ingest(other.appid, "bob", batch("b", 1, now))
        started = time.monotonic()
        await ingest_node.analytics.ingest(app.appid, "alice", batch("a", 2, now))
        name, message = await events.next(5)
        assert time.monotonic() - started < 2
        assert name == "realtime" and message["appid"] == app.appid
        assert [e["user"] for e in message["latest"]] == ["alice", "alice"]
        assert ingest_node.live.messages == 1  # B: nobody watches it, nothing was sent
        stream.close()


def page_view(fetched: dict[str, Any], pushes: list[dict[str, Any]]) -> tuple[int, set[str]]:
    """What the console's script makes of a fetch and the pushes after it (insights.js:
    applyFetch, applyPush): events in the window, and the users it knows were active."""
    cut = fetched["received_before_ms"]
    events = sum(m["events"] for m in fetched["minutes"])
    users = {e["user"] for e in fetched["latest"]}
    for message in pushes:
        first, last = message["received_ms"]
        if last < cut:
            continue
        if first is None or first >= cut:
            events += sum(m["events"] for m in message["minutes"])
            users |= {u for m in message["minutes"] for u in m["users"]}
            continue
        assert message["batches"] is not None  # else the page fetches again
        for received, _minute, n, user in message["batches"]:
            if received >= cut:
                events += n
                users.add(user)
    return events, users


async def test_a_push_that_spans_the_pages_fetch_counts_nothing_twice(
    live_server: LiveServer,
) -> None:
    """A push that waited (the interval between two) while the page fetched carries batches
    from before the fetch and after it: the fetch says up to which receipt it counted, the
    push what each batch added, and the page adds only what the fetch did not count."""
    base, p = live_server.url, live_server.platform
    app = await p.apps.create("A", "test")
    await console_user(p, "vic", "viewer", app.appid)
    url = f"{base}/admin/v1/apps/{app.appid}/analytics"
    async with client() as s:
        await sign_in(s, base, "vic")
        stream = await open_stream(s, f"{url}/realtime/events")
        events = SSE(stream)
        assert (await events.next())[0] == "connected"
        now = int(time.time() * 1000)
        await p.analytics.ingest(app.appid, "alice", batch("a", 2, now))  # pushed at once
        first = (await events.next(5))[1]
        # bob's batch waits for the next push; the page fetches; carol's joins bob's push
        await p.analytics.ingest(app.appid, "bob", batch("b", 3, now))
        await asyncio.sleep(0.005)
        async with s.get(f"{url}/realtime", params={"latest": "100"}) as r:
            assert r.status == 200
            fetched = await r.json()
        await asyncio.sleep(0.005)
        await p.analytics.ingest(app.appid, "carol", batch("c", 1, now))
        spanning = (await events.next(5))[1]
        stream.close()
    cut = fetched["received_before_ms"]
    assert spanning["received_ms"][0] < cut <= spanning["received_ms"][1]  # the case at hand
    assert sum(m["events"] for m in fetched["minutes"]) == 5  # alice's and bob's
    # the old rule (apply a push whose last receipt is after the fetch) counted bob's twice
    assert sum(m["events"] for m in fetched["minutes"]) + sum(
        m["events"] for m in spanning["minutes"]
    ) == 9
    assert page_view(fetched, [first, spanning]) == (6, {"alice", "bob", "carol"})
    truth = await p.analytics.realtime(app.appid)
    assert sum(m["events"] for m in truth["minutes"]) == 6


async def test_the_fetch_counts_a_batch_received_before_it_and_stored_after(
    platform: Platform, clock: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch received before the fetch's instant but still being stored: the fetch waits
    for it (its push says it was received before, so the page would drop it: were the fetch
    not to count it, it would be missed)."""
    import concurrent.futures
    import threading

    app = await platform.apps.create("A", "test")
    store = platform.analytics.store
    gate = threading.Event()
    submit = store.submit

    def slow_submit(rows: Any) -> Any:
        """The store's own group commit, reached only once the gate opens."""
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def later() -> None:
            gate.wait(10)
            inner = submit(rows)
            inner.add_done_callback(lambda f: _settle(done, f))

        threading.Thread(target=later, daemon=True).start()
        return done

    monkeypatch.setattr(store, "submit", slow_submit)
    now = int(clock.now() * 1000)
    ingest = asyncio.create_task(platform.analytics.ingest(app.appid, "alice", batch("a", 2, now)))
    await asyncio.sleep(0.2)  # checked, waiting in the store
    assert not ingest.done()
    clock.advance(1.0)
    fetch = asyncio.create_task(platform.analytics.realtime(app.appid))
    await asyncio.sleep(0.2)
    assert not fetch.done()  # waits for the batch received before its instant
    gate.set()
    found = await fetch
    assert (await ingest)["accepted"] == 2
    assert found["received_before_ms"] == now + 1000
    assert sum(m["events"] for m in found["minutes"]) == 2


def _settle(target: Any, source: Any) -> None:
    """Copy a finished future's outcome to another."""
    error = source.exception()
    if error is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())
