"""The Python runtime's analytics against the real server: codeless events from the host
container's calls, reportAnalytics/reportEvent, batching, the offline queue and retries."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from miniport.runtime import RuntimeClient
from tests.conftest import LiveServer
from tests.support.analytics_api import GOODS_CLICK, PURCHASE, Api, watching

NESTED = {
    "name": "sku_click",
    "display_name": "规格点击",
    "mode": "configured",
    "fields": ["price", "color", "position", "channel", "stay"],
    "actions": [
        {
            "trigger": "click",
            "action": "report",
            "page": "ANY_PAGE",
            "element": "#sku",
            "data": {
                "price": "shops[][].price",
                "position": "shops[][].$INDEX",
                "color": "$DATASET.color",
                "channel": "$APP.channel",
                "stay": "$PAGE_TIME",
            },
        }
    ],
}
LAUNCHED = {
    "name": "app_launch",
    "display_name": "启动",
    "mode": "configured",
    "fields": ["channel"],
    "actions": [{"trigger": "launch", "action": "report", "data": {"channel": "$APP.channel"}}],
}


@pytest.fixture
async def api(live_server: LiveServer) -> AsyncIterator[Api]:
    p = live_server.platform
    appid = (await p.apps.create("rt-analytics", "test")).appid
    svc = p.analytics
    for name, kind in (
        ("price", "int"),
        ("color", "string"),
        ("position", "int"),
        ("channel", "string"),
        ("stay", "int"),
    ):
        await svc.add_field(appid, {"name": name, "type": kind})
    for event in (PURCHASE, GOODS_CLICK, NESTED, LAUNCHED):
        await svc.save_event(appid, event)
    await svc.publish(appid, "test")
    async with aiohttp.ClientSession() as session:
        yield Api(live_server.url, p, live_server.admin_key, appid, session)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def client(api: Api, user: str = "dev1", **kw: Any) -> RuntimeClient:
    """A runtime for custom events only (built-in events: test_runtime_system.py)."""
    token = api.platform.auth.runtime_token(user, "phone")
    kw.setdefault("builtin_events", False)
    return RuntimeClient(api.url, api.appid, token, **kw)


async def test_codeless_events_fire_on_the_right_page_and_element(api: Api) -> None:
    test_id = (await api.ok("POST", "/tests", {"user_id": "dev1"}))["test_id"]
    clock = Clock(1_800_000_000.0)
    async with (
        client(api, clock=clock, app_data={"channel": "ad"}) as rt,
        watching(api, test_id) as view,
    ):
        await rt.launch(path="pages/index/index")
        assert rt.analytics.test_id == test_id
        rt.page_load("pages/list/list", {"goods": [{"price": 5}, {"price": 9}]})
        rt.page_show("pages/list/list")
        clock.now += 1.5
        buy = {"id": None, "classes": ["btn", "buy"], "dataset": {"color": "red"}, "indexes": [1]}
        # not this page, not this element: nothing
        assert rt.click("pages/detail/detail", buy) == []
        assert rt.click("pages/list/list", {**buy, "classes": ["buy-now"]}) == []
        [clicked] = rt.click("/pages/list/list?from=home", buy)
        assert clicked["event"] == "goods_click"
        assert clicked["data"] == {"price": 9, "color": "red"}
        assert (clicked["page"], clicked["trigger"], clicked["action"]) == (
            "pages/list/list",
            "click",
            "report",
        )
        assert clicked["ts"] == 1_800_000_001_500

        # two list levels, the element's index, $APP, $PAGE_TIME, after setData
        rt.set_page_data(
            "pages/list/list", {"shops": [[{"price": 1}], [{"price": 2}, {"price": 3}]]}
        )
        rt.set_app_data({"channel": "search"})
        clock.now += 2
        [sku] = rt.click(
            "pages/list/list", {"id": "sku", "dataset": {"color": "blue"}, "indexes": [1, 1]}
        )
        assert sku["data"] == {
            "price": 3,
            "position": 1,
            "color": "blue",
            "channel": "search",
            "stay": 3500,
        }

        sent = await rt.flush_analytics()
        # the two clicks, and the launch's event unless launch()'s own flush sent it already
        assert sent["accepted"] in (2, 3) and (sent["rejected"], sent["pending"]) == ([], 0)
        await view.wait_for(lambda: len(view.accepted()) == 3)
    shown = {ev["event_name"]: ev for ev in view.accepted()}
    assert shown["app_launch"]["values"] == {"channel": "ad"}  # launch() ran the evaluator
    assert shown["app_launch"]["trigger"] == "launch"
    assert shown["goods_click"]["values"] == {"price": 9, "color": "red"}
    assert shown["goods_click"]["page"] == "pages/list/list"
    assert shown["sku_click"]["values"]["stay"] == 3500


async def test_report_analytics_and_report_event(api: Api) -> None:
    defs = await api.ok("GET", "/definitions")
    purchase_id = next(e["id"] for e in defs["events"] if e["name"] == "purchase")
    async with client(api, "u5") as rt:
        first = rt.report_analytics("purchase", {"price": 3, "color": "red"})
        second = rt.report_event(purchase_id, {"price": 4})
        third = rt.report_event(str(purchase_id), {"price": 5})
        assert len({first, second, third}) == 3 and len(first) == 32  # uuid4 hex
        refused = rt.report_analytics("purchase", {"size": 1})
        reasons: list[dict[str, Any]] = []
        rt.analytics.on_rejected(reasons.append)
        result = await rt.flush_analytics()
    assert result["accepted"] == 3
    assert reasons == [
        {
            "index": 3,
            "id": refused,
            "reason": "unknown field 'size' for event 'purchase'",
            "code": "unknown_field",
            "event": "purchase",
        }
    ]
    rows = (
        await api.ok(
            "POST", "/report", {"event": "purchase", "metrics": ["sum:price"], "granularity": "all"}
        )
    )["rows"]
    assert rows == [{"bucket": "all", "sum:price": 12}]


async def test_batches_go_when_full_on_a_timer_and_at_close(api: Api) -> None:
    async with client(api, "u6", analytics_batch_size=3, analytics_flush_interval_s=60) as rt:
        rt.report_analytics("purchase", {"price": 1})
        rt.report_analytics("purchase", {"price": 1})
        await asyncio.sleep(0.3)
        assert await api.count() == 0  # not full yet, and the timer is a minute
        rt.report_analytics("purchase", {"price": 1})  # full: sent now
        for _ in range(200):
            if await api.count() == 3:
                break
            await asyncio.sleep(0.02)
        assert await api.count() == 3 and rt.analytics.pending == []
        rt.report_analytics("purchase", {"price": 1})
    assert await api.count() == 4  # close() sent the last one

    async with client(api, "u7", analytics_flush_interval_s=0.05) as rt:
        rt.report_analytics("purchase", {"price": 1})
        for _ in range(200):
            if await api.count() == 5:
                break
            await asyncio.sleep(0.02)
        assert await api.count() == 5  # the timer sent it


async def test_the_offline_queue_survives_a_restart_without_duplicates(
    api: Api, tmp_path: Path
) -> None:
    queue = tmp_path / "analytics.jsonl"
    token = api.platform.auth.runtime_token("u8", "phone")
    offline = RuntimeClient(
        "http://127.0.0.1:9", api.appid, token, analytics_queue_path=queue, analytics_retry_base_s=5
    )
    ids = [offline.report_analytics("purchase", {"price": n}) for n in range(5)]
    result = await offline.flush_analytics()
    assert result["pending"] == 5 and "error" in result  # the server cannot be reached
    assert offline.analytics.retry_delay_s == 5
    await offline.close()  # one more try at close; still unreachable: it stays on disk
    assert queue.exists()

    # the host restarts with the server reachable: the queued reports go at launch
    snapshot = tmp_path / "before-ack.jsonl"
    shutil.copy(queue, snapshot)
    async with RuntimeClient(api.url, api.appid, token, analytics_queue_path=queue) as rt:
        assert [e["id"] for e in rt.analytics.pending] == ids
        await rt.launch()
        for _ in range(200):
            if not rt.analytics.pending:
                break
            await asyncio.sleep(0.02)
        assert rt.analytics.pending == []
    assert await api.count("purchase") == 5

    # an acknowledgement lost in a crash: the same reports again, stored once
    shutil.copy(snapshot, queue)
    async with RuntimeClient(api.url, api.appid, token, analytics_queue_path=queue) as rt:
        again = await rt.flush_analytics()
    assert again == {"accepted": 0, "duplicates": 5, "rejected": [], "pending": 0}
    assert await api.count("purchase") == 5
    async with RuntimeClient(api.url, api.appid, token, analytics_queue_path=queue) as rt:
        assert rt.analytics.pending == []  # acknowledged in the file too


async def test_the_last_configuration_is_kept_for_an_offline_launch(
    api: Api, tmp_path: Path
) -> None:
    queue = tmp_path / "q.jsonl"
    token = api.platform.auth.runtime_token("u9", "phone")
    async with RuntimeClient(
        api.url, api.appid, token, analytics_queue_path=queue, builtin_events=False
    ) as rt:
        await rt.launch()
        assert rt.analytics.config["version"] == 1
    offline = RuntimeClient(
        "http://127.0.0.1:9", api.appid, token, analytics_queue_path=queue,
        app_data={"channel": "qr"}, builtin_events=False,
    )  # fmt: skip
    with pytest.raises(Exception, match="network"):
        await offline.launch()
    assert offline.analytics.config["version"] == 1
    assert [e["event"] for e in offline.analytics.pending] == ["app_launch"]
    await offline.close()
    async with RuntimeClient(
        api.url, api.appid, token, analytics_queue_path=queue, builtin_events=False
    ) as rt:
        await rt.flush_analytics()
    assert await api.count("app_launch") == 2


async def test_retries_back_off_and_resend_the_same_ids(tmp_path: Path) -> None:
    """A server that fails twice (503, then a dropped connection), then answers."""
    seen: list[list[str]] = []

    async def events(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        seen.append([e["id"] for e in body["events"]])
        if len(seen) == 1:
            return web.json_response({"error": "busy", "message": "busy"}, status=503)
        if len(seen) == 2:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        return web.json_response({"accepted": len(body["events"]), "duplicates": 0, "rejected": []})

    app = web.Application()
    app.router.add_post("/runtime/v1/apps/mp1/analytics/events", events)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with RuntimeClient(
            url, "mp1", "tok", analytics_retry_base_s=0.5, analytics_flush_interval_s=60
        ) as rt:
            rt.report_analytics("purchase", {})
            rt.report_analytics("purchase", {})
            first = await rt.flush_analytics()
            assert first["pending"] == 2 and rt.analytics.retry_delay_s == 0.5
            rt.analytics.flush_soon()  # backing off: nothing is sent before the retry time
            await asyncio.sleep(0.05)
            assert len(seen) == 1
            for _ in range(500):  # the timer retries: dropped (next delay 1 s), then accepted
                if not rt.analytics.pending:
                    break
                await asyncio.sleep(0.02)
            assert rt.analytics.pending == [] and rt.analytics.retry_delay_s == 0
    finally:
        await runner.cleanup()
    assert len(seen) == 3 and seen[0] == seen[1] == seen[2]


async def test_a_batch_refused_as_a_whole_is_not_retried(api: Api) -> None:
    token = api.platform.auth.runtime_token("u10", "phone")
    async with RuntimeClient(api.url, "mp_nope", token) as rt:
        uid = rt.report_analytics("purchase", {"price": 1})
        result = await rt.flush_analytics()
        assert result["pending"] == 0 and rt.analytics.retry_delay_s == 0
        [refused] = result["rejected"]
        assert refused["id"] == uid and refused["code"] == "not_found"
        assert "app 'mp_nope' not found" in refused["reason"]
        assert list(rt.analytics.rejected) == [refused]


async def test_a_token_the_server_refuses_keeps_the_events_until_a_good_one_sends_them(
    api: Api,
) -> None:
    """The real server answers 403 to a token minted for another app and 401 to one it cannot
    verify: the events are not at fault, so they wait (the 403 dropped them here, while the
    JavaScript runtime kept them) and go once the host gives a token for this app."""
    auth = api.platform.auth
    async with RuntimeClient(
        api.url, api.appid, auth.runtime_token("u12", "phone", appid="another-app"),
        analytics_flush_interval_s=60, builtin_events=False,
    ) as rt:  # fmt: skip
        ids = [rt.report_analytics("purchase", {"price": n}) for n in range(3)]
        refused = await rt.flush_analytics()
        assert refused["pending"] == 3 and refused["rejected"] == []
        assert "this runtime token is for app another-app" in refused["error"]
        rt.token = "not-a-token"
        expired = await rt.flush_analytics()
        assert expired["pending"] == 3 and "invalid runtime token" in expired["error"]
        rt.token = auth.runtime_token("u12", "phone")
        sent = await rt.flush_analytics()
        assert sent == {"accepted": 3, "duplicates": 0, "rejected": [], "pending": 0}
    assert await api.count("purchase") == 3
    assert len(set(ids)) == 3


async def test_a_batch_over_the_servers_request_size_goes_in_smaller_ones(
    tmp_path: Path, open_api: Any
) -> None:
    """An operator's smaller ``max_request_bytes`` made the server answer 413, and the whole
    batch was dropped; one event larger than the limit alone is refused, the rest go."""
    from tests.conftest import make_settings, running_server

    async with running_server(make_settings(tmp_path, max_request_bytes=8_000)) as server:
        api = await open_api(server, None)
        await api.define(PURCHASE, publish=True)
        token = api.platform.auth.runtime_token("u13", "phone")
        async with RuntimeClient(
            api.url, api.appid, token, analytics_flush_interval_s=60, analytics_batch_size=500,
            builtin_events=False,
        ) as rt:  # fmt: skip
            for n in range(40):  # ~12 kB: more than one request may carry
                rt.report_analytics("purchase", {"price": n, "color": "红" * 80})
            huge = rt.report_analytics("purchase", {"price": 99, "color": "x" * 9_000})
            result = await rt.flush_analytics()
            assert result["pending"] == 0 and result["accepted"] == 40
            [refused] = result["rejected"]
            assert refused["id"] == huge and refused["code"] == "too_large"
            assert rt.analytics.retry_delay_s == 0
        assert await api.count("purchase") == 40


async def _events_server(
    answer: Any,
) -> tuple[str, list[bytes], web.AppRunner]:
    """A loopback /analytics/events answering ``answer(body_bytes)`` (an aiohttp response)."""
    bodies: list[bytes] = []

    async def events(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        bodies.append(body)
        return answer(body)  # type: ignore[no-any-return]

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post("/runtime/v1/apps/mp1/analytics/events", events)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return f"http://127.0.0.1:{runner.addresses[0][1]}", bodies, runner


async def test_an_answer_that_is_not_json_backs_off_and_close_still_closes() -> None:
    """A proxy's HTML 502 raised JSONDecodeError out of the flush: no backoff (the timer task
    died, and every report sent the whole queue at once), and close() raised it too."""
    url, bodies, runner = await _events_server(
        lambda body: web.Response(status=502, text="<html>bad gateway</html>")
    )
    try:
        rt = await RuntimeClient(url, "mp1", "tok", analytics_retry_base_s=30).__aenter__()
        rt.report_analytics("purchase", {})
        result = await rt.flush_analytics()
        assert result["pending"] == 1 and "HTTP 502" in result["error"]
        assert rt.analytics.retry_delay_s == 30
        await rt.close()  # no exception, the queue kept for the next start
    finally:
        await runner.cleanup()
    assert len(bodies) == 2  # the flush, and close()'s one try


async def test_a_409_keeps_the_batch_and_long_text_goes_in_batches_the_server_takes() -> None:
    """409 says "send it again" and was taken as a refusal (the events dropped); 500 events of
    long Chinese text went as one 1.6 MB body (escaped \\uXXXX), over the server's 1,000,000
    bytes, refused whole and dropped."""
    conflict = True

    def answer(body: bytes) -> web.StreamResponse:
        if conflict:
            return web.json_response({"error": "conflict", "message": "send it again"}, status=409)
        if len(body) > 1_000_000:
            return web.json_response({"error": "invalid", "message": "too large"}, status=422)
        n = len(json.loads(body)["events"])
        return web.json_response({"accepted": n, "duplicates": 0, "rejected": []})

    url, bodies, runner = await _events_server(answer)
    try:
        async with RuntimeClient(
            url, "mp1", "tok", analytics_flush_interval_s=60, analytics_batch_size=500
        ) as rt:
            text = "数" * 255
            for _ in range(400):  # ~1.3 MB as UTF-8: more than one request can carry
                rt.report_event("purchase", {"a": text, "b": text, "c": text, "d": text})
            first = await rt.flush_analytics()
            assert first["pending"] == 400 and first["rejected"] == []
            conflict = False
            done = await rt.flush_analytics()
            assert done["pending"] == 0 and done["accepted"] == 400 and done["rejected"] == []
    finally:
        await runner.cleanup()
    assert all(len(b) <= 1_000_000 for b in bodies) and len(bodies) == 3  # 409, then two
    assert "数" in bodies[-1].decode()  # sent as UTF-8, not escaped


REPORT_STATUS = json.loads(
    (Path(__file__).parents[2] / "src/miniport/runtime/vectors/report_status.json").read_text()
)["cases"]


def _case_id(row: dict[str, Any]) -> str:
    body = row["body"]
    what = body.get("error", "verdict") if isinstance(body, dict) else "text"
    after = row.get("headers", {}).get("Retry-After")
    told = "" if after is None else f"-retry-after-{after.split(',')[0]}"
    return f"{row['status']}-{what}{told}-{row.get('events', 2)}-{row['outcome']}"


@pytest.mark.parametrize("row", REPORT_STATUS, ids=[_case_id(r) for r in REPORT_STATUS])
async def test_the_answer_to_a_batch_decides_its_fate_as_the_shared_table_says(
    row: dict[str, Any],
) -> None:
    """The shared table (src/miniport/runtime/vectors/report_status.json; the JavaScript
    runtime runs it too). A 403 (a token minted for another app) dropped the batch here while
    the JavaScript runtime kept it; a 413 dropped a batch that smaller ones would carry; every
    kept batch was retried after the same delays on every device (no jitter), and a 503's
    Retry-After was not read."""
    seen: list[tuple[str, list[str]]] = []

    async def events(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        seen.append((request.headers["Authorization"], [e["id"] for e in body["events"]]))
        if len(seen) > 1:
            n = len(body["events"])
            return web.json_response({"accepted": n, "duplicates": 0, "rejected": []})
        headers = row.get("headers", {})
        if isinstance(row["body"], str):
            return web.Response(
                status=row["status"], text=row["body"], content_type="text/html", headers=headers
            )
        return web.json_response(row["body"], status=row["status"], headers=headers)

    app = web.Application()
    app.router.add_post("/runtime/v1/apps/mp1/analytics/events", events)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with RuntimeClient(
            url, "mp1", "tok", analytics_flush_interval_s=60, analytics_retry_base_s=1,
            analytics_retry_max_s=60, builtin_events=False, rand=lambda: 0.0,
        ) as rt:  # fmt: skip
            n = row.get("events", 2)
            ids = [rt.report_analytics("purchase", {"price": i}) for i in range(n)]
            result = await rt.flush_analytics()
            calls = [sent for _, sent in seen]
            if row["outcome"] == "sent":
                assert calls == [ids] and result["pending"] == 0 and "error" not in result
            elif row["outcome"] == "kept":
                assert calls == [ids] and result["pending"] == len(ids) and "error" in result
                assert result["rejected"] == []
                wait = [rt.analytics.retry_wait_s, rt.analytics.retry_delay_s]
                assert wait == row.get("wait_s", [0.5, 1])  # random source at 0; the delay
                rt.token = "tok-2"  # the host may give a new token meanwhile (a 401 / 403)
                again = await rt.flush_analytics()
                assert [sent for _, sent in seen] == [ids, ids]  # the same ids
                assert seen[1][0] == "Bearer tok-2" and again["pending"] == 0
            elif row["outcome"] == "dropped":
                assert calls == [ids] and result["pending"] == 0 and "error" not in result
                assert [r["id"] for r in result["rejected"]] == ids
                assert rt.analytics.retry_delay_s == 0  # not retried
                later = rt.report_analytics("purchase", {"price": 9})  # not held up
                assert (await rt.flush_analytics())["pending"] == 0
                assert [sent for _, sent in seen] == [ids, [later]]
            else:
                assert row["outcome"] == "split"
                assert calls == [ids, ids[:1], ids[1:]]  # again at once, in halves
                assert result["pending"] == 0 and result["rejected"] == []
                assert result["accepted"] == len(ids)
    finally:
        await runner.cleanup()


def test_a_full_offline_queue_keeps_the_newest_without_rewriting_its_file_at_every_event(
    tmp_path: Path,
) -> None:
    """Past max_events each add rewrote the whole file (0.1 s a report at 10,000 events, on
    the event loop). The file is now rewritten once dropped lines are a third of it; a start
    that reads it keeps the same newest events."""
    from miniport.runtime.analytics import OfflineQueue

    path = tmp_path / "queue.jsonl"
    queue = OfflineQueue(path, max_events=100)
    rewrites = 0
    compact = queue._compact

    def counting() -> None:
        nonlocal rewrites
        rewrites += 1
        compact()

    queue._compact = counting  # type: ignore[method-assign]
    for i in range(1000):
        queue.add({"id": f"e{i}", "event": "purchase"})
    assert list(queue.events) == [f"e{i}" for i in range(900, 1000)]
    assert queue.dropped == 900 and rewrites <= 9
    assert len(path.read_text().splitlines()) <= 100 + 101
    queue.close()
    again = OfflineQueue(path, max_events=100)
    assert list(again.events) == [f"e{i}" for i in range(900, 1000)]
    again.close()


def test_two_processes_sharing_a_queue_file_keep_each_others_events(tmp_path: Path) -> None:
    """Two hosts (processes) given the same ``analytics_queue_path``: each rewrote the file
    from its own memory when it compacted it (a start compacts it too), erasing the other's
    queued events, and the other went on appending to the file it had open, no longer the
    queue file: nothing it queued after that reached the disk. Two OfflineQueue objects have
    their own handles and memory, as two processes do."""
    from miniport.runtime.analytics import OfflineQueue

    path = tmp_path / "queue.jsonl"
    first = OfflineQueue(path)
    first.add({"id": "a1", "event": "purchase"})
    second = OfflineQueue(path)  # a second process starts: it compacts the file
    first.add({"id": "a2", "event": "purchase"})
    second.add({"id": "b1", "event": "purchase"})
    for i in range(150):  # the first sends a lot: its acknowledgements compact the file
        first.add({"id": f"sent{i}", "event": "purchase"})
        first.ack([f"sent{i}"])
    first.add({"id": "a3", "event": "purchase"})
    second.add({"id": "b2", "event": "purchase"})
    second.ack(["b1"])  # sent by the second
    restarted = OfflineQueue(path)
    assert sorted(restarted.events) == ["a1", "a2", "a3", "b2"]
    assert list(first.events) == ["a1", "a2", "a3"]  # each still sends its own
    assert list(second.events) == ["a1", "b2"]  # (and what it found at its start)
    for queue in (first, second, restarted):
        queue.close()


def test_two_real_processes_adding_and_compacting_at_once_lose_nothing(tmp_path: Path) -> None:
    """The same with two processes at once: each queues 400 events and acknowledges half of
    them (so both compact the file while the other appends to it)."""
    import os
    import subprocess
    import sys

    from miniport.runtime.analytics import OfflineQueue

    path = tmp_path / "queue.jsonl"
    script = (  # both start, then both work at once, a little at a time
        "import pathlib, sys, time\n"
        "from miniport.runtime.analytics import OfflineQueue\n"
        "path, name = pathlib.Path(sys.argv[1]), sys.argv[2]\n"
        "q = OfflineQueue(path)\n"
        "(path.parent / f'{name}.ready').touch()\n"
        "while len(list(path.parent.glob('*.ready'))) < 2:\n"
        "    time.sleep(0.005)\n"
        "for i in range(400):\n"
        "    q.add({'id': f'{name}{i}', 'event': 'purchase'})\n"
        "    if i % 2:\n"
        "        q.ack([f'{name}{i}'])\n"
        "    time.sleep(0.001)\n"
        "q.close()\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    runs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), name], env=env)
        for name in ("a", "b")
    ]
    assert [run.wait(timeout=60) for run in runs] == [0, 0]
    restarted = OfflineQueue(path)
    assert set(restarted.events) == {f"{n}{i}" for n in "ab" for i in range(0, 400, 2)}
    restarted.close()


async def test_an_event_recorded_under_the_last_version_survives_a_publish_that_drops_its_field(
    api: Api,
) -> None:
    """The device still has version 1 (it has not heard of version 2, which no longer reports
    `color`) when it records a purchase: the event names version 1 and is kept whole."""
    async with client(api, analytics_flush_interval_s=3600) as rt:
        await rt.analytics.refresh_config()
        assert rt.analytics.config["version"] == 1
        await api.platform.analytics.save_event(api.appid, {**PURCHASE, "fields": ["price"]})
        assert (await api.platform.analytics.publish(api.appid, "test"))["version"] == 2
        uid = rt.report_analytics("purchase", {"price": 5, "color": "red"})
        assert rt.analytics.pending[0]["v"] == 1
        sent = await rt.flush_analytics()
        assert (sent["accepted"], sent["rejected"]) == (1, [])
        # under version 2 the same report is refused, as before
        await rt.analytics.refresh_config()
        rt.report_analytics("purchase", {"price": 6, "color": "blue"})
        refused = await rt.flush_analytics()
    assert [r["code"] for r in refused["rejected"]] == ["unknown_field"]
    stored = (await api.platform.analytics.user_events(api.appid, "dev1"))["events"]
    assert [(e["id"], e["data"]) for e in stored] == [(uid, {"price": 5, "color": "red"})]


async def test_what_json_cannot_carry_is_refused_when_reported_and_holds_up_nothing(
    api: Api, tmp_path: Path
) -> None:
    """A datetime (a set, NaN...) in a report made every later flush raise, with the event
    oldest in the queue, so nothing behind it was ever sent; with a queue file the report raised
    but stayed queued. Text with a lone surrogate (decoded with surrogateescape) went out as
    bytes the platform's strict reader refuses with the whole batch. Now the first is a
    ValueError at the report, the second goes as U+FFFD, as the JavaScript runtime sends it."""
    import datetime

    half = "😀".encode("utf-16-le")[:2].decode("utf-16-le", "surrogatepass")
    async with client(api, "u9", analytics_queue_path=tmp_path / "q.jsonl") as rt:
        rt.report_analytics("purchase", {"price": 1, "color": "red"})
        for bad in (datetime.datetime.now(), float("nan"), {1, 2}):
            with pytest.raises(ValueError, match="cannot be sent as JSON"):
                rt.report_analytics("purchase", {"price": 2, "color": bad})
        rt.report_analytics("purchase", {"price": 3, "color": f"half {half}"})
        assert len(rt.analytics.pending) == 2
        result = await rt.flush_analytics()
    assert (result["accepted"], result["pending"], result["rejected"]) == (2, 0, [])
    shown = await api.ok("GET", "/users/events", user="u9")
    assert sorted(e["data"]["color"] for e in shown["events"]) == ["half \ufffd", "red"]


def test_an_event_with_a_line_separator_in_its_text_survives_a_restart(tmp_path: Path) -> None:
    """splitlines() cut the queue file's lines at U+2028, U+2029 and U+0085 too, which the file
    keeps unescaped: such an event was read as two broken lines and lost at the next start."""
    from miniport.runtime.analytics import OfflineQueue

    path = tmp_path / "queue.jsonl"
    queue = OfflineQueue(path)
    for i, text in enumerate(["a\u2028b", "c\u2029d", "e\x85f", "plain"]):
        queue.add({"id": f"e{i}", "event": "purchase", "data": {"color": text}})
    queue.close()
    again = OfflineQueue(path)
    assert [e["data"]["color"] for e in again.events.values()] == [
        "a\u2028b", "c\u2029d", "e\x85f", "plain"]
    again.close()


def test_the_queue_file_keeps_one_configuration_however_often_it_is_refreshed(
    tmp_path: Path,
) -> None:
    """Each launch and each stream reconnect refreshes the configuration; each wrote a whole
    copy to the file, which no compaction counted: 26 MB after 2,000 refreshes."""
    from miniport.runtime.analytics import OfflineQueue

    path = tmp_path / "queue.jsonl"
    queue = OfflineQueue(path)
    config = {"version": 3, "events": [{"name": f"e{i}", "fields": ["price"]} for i in range(100)]}
    for i in range(2000):
        queue.remember_config(config if i % 500 else {**config, "version": i})
    queue.close()
    assert len(path.read_text().split("\n")) < 200
    again = OfflineQueue(path)
    assert again.config == config  # the last one
    again.close()


async def test_a_report_from_code_carries_its_page_as_the_javascript_runtime_sends_it(
    api: Api,
) -> None:
    """The JavaScript runtime sends the page a report was made on; the Python runtime sent
    none, so the test view and a user's events showed the same app's reports differently."""
    async with client(api, "u6") as rt:
        rt.report_analytics("purchase", {"price": 1})  # before any page
        rt.page_show("pages/list/list")
        rt.report_analytics("purchase", {"price": 2})
        queued = rt.analytics.pending
        assert [(e["page"], e["trigger"], e["action"]) for e in queued] == [
            (None, None, None), ("pages/list/list", None, None)]
        assert (await rt.flush_analytics())["accepted"] == 2
    shown = await api.ok("GET", "/users/events", user="u6")
    assert sorted((e["page"] or "") for e in shown["events"]) == ["", "pages/list/list"]
