"""CORS for container pages on other origins: exact allow-list, correct preflight answers on the
runtime API and the JavaScript runtime's files, nothing for the admin API, nothing by default."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from miniport.config import Settings
from tests.conftest import LiveServer

ALLOWED = "http://127.0.0.2:8080"
Live = Callable[..., Awaitable[LiveServer]]


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type"}


async def test_listed_origins_get_preflight_and_cors_headers_on_runtime_and_sdk(
    live: Live, session: aiohttp.ClientSession,
) -> None:
    server = await live(cors_origins=f"{ALLOWED},https://b.example")
    app = await server.platform.apps.create("shop", "test")
    launch = f"{server.url}/runtime/v1/apps/{app.appid}/launch"
    async with session.options(launch, headers=preflight(ALLOWED)) as r:
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert "POST" in r.headers["Access-Control-Allow-Methods"]
        allowed = r.headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
        assert "Access-Control-Allow-Credentials" not in r.headers
    token = server.platform.auth.runtime_token("alice")
    async with session.post(launch, json={}, headers={
            "Origin": ALLOWED, "Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == ALLOWED
        # readable by the page: the runtime waits at least that long after a 503 or 429
        # (an HTTP-date counted from the answer's Date)
        assert r.headers["Access-Control-Expose-Headers"] == "Retry-After, Date"
    async with session.get(f"{server.url}/sdk/miniport-runtime.js",
                           headers={"Origin": "https://b.example"}) as r:
        assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "https://b.example"
    async with session.options(f"{server.url}/sdk/wx.js", headers=preflight(ALLOWED, "GET")) as r:
        assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == ALLOWED

    # another origin (another port is another origin), or the admin API: no CORS at all
    for origin in ("http://127.0.0.2:8081", "http://evil.example", "null"):
        async with session.options(launch, headers=preflight(origin)) as r:
            assert r.status == 400 and "Access-Control-Allow-Origin" not in r.headers
        async with session.post(launch, json={}, headers={
                "Origin": origin, "Authorization": f"Bearer {token}"}) as r:
            assert "Access-Control-Allow-Origin" not in r.headers
    async with session.options(f"{server.url}/admin/v1/apps", headers=preflight(ALLOWED)) as r:
        assert r.status == 405 and "Access-Control-Allow-Origin" not in r.headers


async def test_no_origin_is_allowed_by_default(
    live_server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    url = f"{live_server.url}/runtime/v1/apps/x/launch"
    async with session.options(url, headers=preflight(ALLOWED)) as r:
        assert "Access-Control-Allow-Origin" not in r.headers
    async with session.get(f"{live_server.url}/sdk/miniport-runtime.js",
                           headers={"Origin": ALLOWED}) as r:
        assert "Access-Control-Allow-Origin" not in r.headers


@pytest.mark.parametrize("origin", ["https://a.example/", "https://a.example/path", "*",
                                    "https://*.example", "ftp://a.example", "https://A.example",
                                    "https://a.example:443", "a.example", "https://a.example:x"])
def test_an_origin_that_is_not_one_exact_origin_is_refused(origin: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CORS origin"):
        Settings(data_dir=tmp_path, cors_origins=origin)


def test_origins_are_read_from_the_environment(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.setenv("MINIPORT_CORS_ORIGINS", "https://a.example, http://127.0.0.1:9000")
    assert Settings.from_env(data_dir=tmp_path).cors_origins == (
        "https://a.example", "http://127.0.0.1:9000")


async def test_the_data_read_carries_cors_headers_on_its_answers_and_errors(
    live: Live, session: aiohttp.ClientSession,
) -> None:
    """getBackgroundFetchData is served by a route mounted ahead of the routers: the CORS
    layer still wraps it, on a preflight, an error and a refusal alike."""
    server = await live(cors_origins=ALLOWED)
    app = await server.platform.apps.create("shop", "test")
    data = f"{server.url}/runtime/v1/apps/{app.appid}/background-fetch/data"
    async with session.options(data, headers=preflight(ALLOWED, "GET")) as r:
        assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == ALLOWED
    token = server.platform.auth.runtime_token("alice")
    async with session.get(data, headers={"Origin": ALLOWED,
                                          "Authorization": f"Bearer {token}"}) as r:
        assert r.status == 404 and r.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert (await r.json())["errMsg"].startswith("getBackgroundFetchData:fail")
    async with session.get(data, headers={"Origin": "http://evil.example",
                                          "Authorization": f"Bearer {token}"}) as r:
        assert "Access-Control-Allow-Origin" not in r.headers


async def test_the_ingest_route_carries_cors_headers_on_its_answers_and_errors(
    live: Live, session: aiohttp.ClientSession,
) -> None:
    """reportAnalytics is served by a route mounted ahead of the routers: the CORS layer still
    wraps it, on a preflight, an answer, an error and for an origin not listed."""
    server = await live(cors_origins=ALLOWED)
    app = await server.platform.apps.create("shop", "test")
    url = f"{server.url}/runtime/v1/apps/{app.appid}/analytics/events"
    async with session.options(url, headers=preflight(ALLOWED)) as r:
        assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == ALLOWED
    auth = {"Authorization": f"Bearer {server.platform.auth.runtime_token('alice')}"}
    async with session.post(url, json={"events": []},
                            headers={"Origin": ALLOWED, **auth}) as r:
        assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert await r.json() == {"accepted": 0, "duplicates": 0, "rejected": []}
    async with session.post(url, data=b"{not json", headers={"Origin": ALLOWED, **auth}) as r:
        assert r.status == 422 and r.headers["Access-Control-Allow-Origin"] == ALLOWED
    async with session.post(url, json={"events": []},
                            headers={"Origin": "http://evil.example", **auth}) as r:
        assert "Access-Control-Allow-Origin" not in r.headers
