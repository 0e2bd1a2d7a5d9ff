"""A real server on PostgreSQL through an outage of its state database: the database refuses
every connection for a while (as during a restart or a failover), then answers again. The APIs
answer 503 with a Retry-After meanwhile, and the background work goes on afterwards."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import psycopg
import pytest
from aiohttp import web

from tests.conftest import PG_URL, make_settings, running_server
from tests.support.platforms import Counter, eventually, periodic_app

pytestmark = pytest.mark.postgres


def refuse_connections(database: str, refuse: bool) -> None:
    """Make PostgreSQL refuse (and end) every connection to ``database``, or take it again."""
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(not refuse).lower()}')
        if refuse:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )


async def test_an_outage_is_a_503_and_fetching_goes_on_after_it(
    tmp_path: Path, pg_url: str, counter: Counter
) -> None:
    """The engine's claim failed while the database was away, which ended the engine's task:
    the server went on running and never fetched again. Once the database answers, the user
    due meanwhile is fetched."""
    arrivals: list[str] = []

    def body(request: web.Request) -> str:
        arrivals.append(request.query["token"])
        return "data"

    counter.body = body
    settings = make_settings(tmp_path, database_url=pg_url, periodic_interval_s=1)
    database = pg_url.rsplit("/", 1)[1]
    async with running_server(settings) as server:
        appid = await periodic_app(server.platform, counter.url)
        token = server.platform.auth.runtime_token("u")
        base = f"{server.url}/runtime/v1/apps/{appid}"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s:
            await s.post(base + "/launch", json={})
            await s.post(base + "/background-fetch/token", json={"token": "t"})

            async def fetched_once() -> bool:
                return len(arrivals) >= 1

            await eventually(fetched_once)
            await asyncio.to_thread(refuse_connections, database, True)
            try:
                # the APIs that need the database answer "not now" (the runtimes wait
                # Retry-After and send again), not 500 Internal Server Error
                for method, path, body in [
                    ("POST", "/background-fetch/token", {"token": "t2"}),
                    ("GET", "/background-fetch/data?fetchType=periodic", None),
                ]:
                    async with s.request(method, base + path, json=body) as r:
                        assert r.status == 503, (path, r.status, await r.text())
                        assert r.headers["Retry-After"] == "5"
                        error = await r.json()
                        assert error["error"] == "state_unavailable"
                        assert error["errMsg"].endswith(":fail " + error["message"])
                async with s.get(server.url + "/readyz") as r:  # take the node out
                    assert r.status == 503 and r.headers["Retry-After"] == "5"
                async with s.get(server.url + "/healthz") as r:  # but it is alive
                    assert r.status == 200
                async with s.get(server.url + "/metrics") as r:
                    assert re.search(r"^miniport_state_unavailable_total [1-9]", await r.text(),
                                     re.MULTILINE)  # fmt: skip
                # a launch is written behind: answered now, kept, and stored once it is back
                other = {"Authorization": f"Bearer {server.platform.auth.runtime_token('v')}"}
                async with s.post(base + "/launch", json={}, headers=other) as r:
                    assert r.status == 200
                await asyncio.sleep(3)  # a few of the engine's turns fail meanwhile
                during = len(arrivals)
            finally:
                await asyncio.to_thread(refuse_connections, database, False)

            async def fetched_again() -> bool:
                return len(arrivals) > during

            await eventually(fetched_again, timeout_s=45)

            async def launch_stored() -> bool:
                row = await server.platform.db.read(server.platform.fetches.get_user, appid, "v")
                return row is not None and row["last_launch_at"] is not None

            await eventually(launch_stored, timeout_s=45)
            async with s.get(server.url + "/readyz") as r:
                assert r.status == 200 and await r.json() == {"ok": True, "database": "ok"}
