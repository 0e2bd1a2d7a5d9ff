"""Analytics on ClickHouse behind several API nodes (real servers: PostgreSQL, Redis,
ClickHouse, two uvicorn nodes on 127.0.0.1): the same batches sent to two nodes at once are
counted once and every node gives the same report; a ClickHouse outage answers 503 and
loses nothing once ClickHouse is back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from miniport.analytics.clickhouse_store import ClickHouseEventStore
from miniport.analytics.clickhouse_transport import parse_clickhouse_url
from tests.conftest import event_keys_at, make_settings, running_server
from tests.support.analytics_api import PURCHASE, Api, now_ms

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(300)]


def batch(ids: list[int], now: int) -> dict[str, Any]:
    return {
        "sent_at": now,
        "events": [
            {
                "id": str(i),
                "event": "purchase",
                "data": {"price": i % 7, "color": f"c{i % 3}"},
                "ts": now - i,
            }
            for i in ids
        ],
    }


async def post(api: Api, user: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with api.session.post(
        f"{api.url}/runtime/v1/apps/{api.appid}/analytics/events",
        json=body,
        headers=api.runtime(user),
    ) as resp:
        return resp.status, await resp.json()


REPORT = {
    "event": "purchase",
    "metrics": ["count", "users", "sum:price", "distinct:color"],
    "group_by": ["color"],
    "granularity": "all",
}


@contextlib.asynccontextmanager
async def two_nodes(
    tmp_path: Path, pg_url: str, redis_url: str, clickhouse_url: str
) -> AsyncIterator[tuple[Api, Api]]:
    """Two API nodes on one PostgreSQL, Redis and ClickHouse, and an app with a published
    ``purchase``: its API through each node."""
    common = {"database_url": pg_url, "redis_url": redis_url, "analytics_url": clickhouse_url}
    async with (
        running_server(make_settings(tmp_path / "a", **common)) as node_a,
        running_server(make_settings(tmp_path / "b", **common)) as node_b,
        aiohttp.ClientSession() as session,
    ):
        appid = (await node_a.platform.apps.create("analytics", "test")).appid
        a = Api(node_a.url, node_a.platform, node_a.admin_key, appid, session)
        b = Api(node_b.url, node_b.platform, node_b.admin_key, appid, session)
        await a.define(PURCHASE, publish=True)
        yield a, b


async def test_same_batches_to_two_nodes_at_once_count_once(
    tmp_path: Path, pg_url: str, redis_url: str, clickhouse_url: str
) -> None:
    async with two_nodes(tmp_path, pg_url, redis_url, clickhouse_url) as (a, b):
        now = now_ms()
        batches = [batch(list(range(k * 40, k * 40 + 60)), now) for k in range(12)]  # overlap
        sends = [post(node, f"u{k % 3}", body) for k, body in enumerate(batches) for node in (a, b)]
        answers = await asyncio.gather(*sends)
        assert all(status == 200 for status, _ in answers), answers
        distinct = len({e["id"] for body in batches for e in body["events"]})
        assert await a.count("purchase") == distinct == await b.count("purchase")
        report_a = await a.ok("POST", "/report", REPORT)
        report_b = await b.ok("POST", "/report", REPORT)
        assert report_a["rows"] == report_b["rows"]
        assert sum(row["count"] for row in report_a["rows"]) == distinct
        # a retry of everything, to either node, changes nothing
        answers = await asyncio.gather(*(post(b, "u0", body) for body in batches))
        assert all(answer["accepted"] == 0 for _, answer in answers)
        assert (await a.ok("POST", "/report", REPORT))["rows"] == report_a["rows"]


async def events_of(api: Api, user: str) -> list[str]:
    page = await api.ok("GET", "/users/events", user=user)
    return sorted(e["id"] for e in page["events"])


async def test_a_user_forgotten_through_one_node_stays_forgotten_on_the_other(
    tmp_path: Path, pg_url: str, redis_url: str, clickhouse_url: str
) -> None:
    """Node b stores u1's and u2's events; u1 is forgotten through node a. Then b gets u1's
    batch again (its answer was lost) and u1's device's events from before the forget that
    it kept offline: nothing of them is stored (b learns of the forget with its first insert
    and deletes what that stored). u1's events after the forget are, and u2 is untouched."""
    async with two_nodes(tmp_path, pg_url, redis_url, clickhouse_url) as (a, b):
        now = now_ms()
        sent, kept = batch(list(range(10)), now), batch(list(range(10, 15)), now)
        assert (await post(b, "u1", sent))[1]["accepted"] == 10
        assert (await post(b, "u2", batch(list(range(100, 110)), now)))[1]["accepted"] == 10
        before = await a.ok("POST", "/report", {**REPORT, "group_by": []})
        assert (await a.ok("POST", "/users/forget", {"user_id": "u1"}))["deleted"] == 10
        for old in (sent, kept):
            status, answer = await post(b, "u1", {**old, "sent_at": now_ms()})
            assert status == 200 and answer["accepted"] == 0, answer
        for _ in range(100):  # b's delete of what its first insert stored: a mutation
            if not await events_of(a, "u1"):
                break
            await asyncio.sleep(0.05)
        assert await events_of(a, "u1") == []
        await asyncio.sleep(0.01)
        new = {"sent_at": now_ms(), "events": [
            {"id": "n1", "event": "purchase", "data": {"price": 1, "color": "c0"}, "ts": now_ms()}
        ]}
        assert (await post(b, "u1", new))[1]["accepted"] == 1
        assert await events_of(a, "u1") == ["n1"]
        assert len(await events_of(b, "u2")) == 10
        after = await a.ok("POST", "/report", {**REPORT, "group_by": []})
        (row_before,), (row_after,) = before["rows"], after["rows"]
        assert (row_before["count"], row_before["users"]) == (20, 2)
        assert (row_after["count"], row_after["users"]) == (11, 2)


class Switch:
    """A TCP forwarder on 127.0.0.1 in front of ClickHouse that can be cut and restored."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self.server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await self.server.wait_closed()
        self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers.update({writer, up_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self.writers.difference_update({writer, up_writer})


@contextlib.asynccontextmanager
async def switched(url: str) -> AsyncIterator[tuple[Switch, str]]:
    parsed = parse_clickhouse_url(url)
    switch = Switch(parsed.host, parsed.port)
    await switch.up()
    try:
        yield switch, url.replace(f":{parsed.port}/", f":{switch.port}/")
    finally:
        if switch.server is not None:
            await switch.down()


async def test_clickhouse_outage_answers_503_and_loses_nothing(
    tmp_path: Path, clickhouse_url: str
) -> None:
    async with (
        switched(clickhouse_url) as (switch, via_switch),
        running_server(make_settings(tmp_path, analytics_url=via_switch)) as node,
        aiohttp.ClientSession() as session,
    ):
        appid = (await node.platform.apps.create("analytics", "test")).appid
        api = Api(node.url, node.platform, node.admin_key, appid, session)
        await api.define(PURCHASE, publish=True)
        now = now_ms()
        assert (await post(api, "u1", batch(list(range(10)), now)))[1]["accepted"] == 10

        await switch.down()
        status, answer = await post(api, "u1", batch(list(range(10, 20)), now))
        assert status == 503
        assert answer["error"] == "analytics_unavailable", answer
        status, answer = await api.call("GET", "/count")
        assert status == 503 and answer["error"] == "analytics_unavailable"

        await switch.up()  # the client retries the refused batch once ClickHouse is back
        status, answer = await post(api, "u1", batch(list(range(10, 20)), now))
        assert status == 200 and answer["accepted"] == 10
        assert await api.count("purchase") == 20
    # and it is all in ClickHouse, not in some node's memory; the refused batch's claims were
    # released (ClickHouse was never reached), so its retry listed nothing for reports to filter
    with ClickHouseEventStore.from_url(clickhouse_url, event_keys_at(tmp_path / "k.db")) as store:
        assert store.count(appid) == 20
        assert store._scalar("SELECT count() FROM event_dups") == 0


async def test_store_is_opened_on_first_use_and_retried_after_an_outage(
    tmp_path: Path, clickhouse_url: str
) -> None:
    async with switched(clickhouse_url) as (switch, via_switch):
        await switch.down()
        async with (
            running_server(make_settings(tmp_path, analytics_url=via_switch)) as node,
            aiohttp.ClientSession() as session,
        ):
            appid = (await node.platform.apps.create("analytics", "test")).appid
            api = Api(node.url, node.platform, node.admin_key, appid, session)
            await api.define(PURCHASE, publish=True)
            status, answer = await post(api, "u1", batch([1, 2], now_ms()))
            assert status == 503 and answer["error"] == "analytics_unavailable"
            await switch.up()
            status, answer = await post(api, "u1", batch([1, 2], now_ms()))
            assert status == 200 and answer["accepted"] == 2
