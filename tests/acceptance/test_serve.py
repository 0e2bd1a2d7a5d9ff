"""`miniport serve` as an operator meets it: a start that cannot succeed ends at once with one
line (exit 2) before anything claims to be serving; access and fetch log lines (human and JSON);
``/metrics``; ``/docs`` without internet; ``/`` sends a browser to the console."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import free_port
from tests.support.cli import CLEAN_ENV, MINIPORT, Result, run_cli
from tests.support.platforms import eventually


async def serve_once(*argv: str, env: dict[str, str] | None = None) -> Result:
    """A `miniport serve` expected to end by itself."""
    proc = await asyncio.create_subprocess_exec(
        MINIPORT, "serve", *argv, env={**CLEAN_ENV, "COLUMNS": "80", **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return Result(proc.returncode or 0, out.decode(), err.decode())


def refused_once(result: Result, *words: str) -> None:
    assert result.code == 2, result
    assert "serving" not in result.out, result
    assert "Traceback" not in result.err, result
    lines = result.err.strip().splitlines()
    assert len(lines) <= 2 and lines[0].startswith("error: "), result  # one line, wrapped at 80
    for word in words:
        assert word in " ".join(lines), (word, result)


async def test_a_held_data_directory_ends_the_start_at_once(
    tmp_path: Path, miniport_server: Any
) -> None:
    served = await miniport_server()
    info = json.loads((tmp_path / "data" / "server.json").read_text())
    second = await serve_once("--port", str(free_port()), "--data-dir", str(tmp_path / "data"))
    refused_once(second, "another server", "--data-dir")
    # the first server's registration is untouched and it still serves
    assert json.loads((tmp_path / "data" / "server.json").read_text()) == info
    async with aiohttp.ClientSession() as s, s.get(served.url + "/healthz") as r:
        assert r.status == 200


async def test_a_port_in_use_ends_the_start_at_once(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await serve_once("--port", str(port), "--data-dir", str(tmp_path / "d"))
        refused_once(result, f"127.0.0.1:{port}", "in use", "--port")
        demo = await serve_once("--demo", "--port", str(free_port()), "--demo-port", str(port),
                                "--data-dir", str(tmp_path / "d"))  # fmt: skip
        refused_once(demo, f"127.0.0.1:{port}", "--demo-port")
    assert not (tmp_path / "d" / "server.json").exists()


async def test_an_unreachable_state_database_ends_the_start_at_once(tmp_path: Path) -> None:
    """It printed a 160-line traceback (and ``app list`` the same)."""
    closed = free_port()  # nothing listens there
    url = f"postgresql://miniport:hunter2@127.0.0.1:{closed}/miniport"
    env = {"MINIPORT_DATABASE_URL": url}
    result = await serve_once("--port", str(free_port()), "--data-dir", str(tmp_path), env=env)
    refused_once(result, f"postgresql://miniport:***@127.0.0.1:{closed}/miniport", "refused")
    assert "hunter2" not in result.err
    listed = await run_cli("app", "list", "--data-dir", str(tmp_path), env={**env, "COLUMNS": "80"})
    assert listed.code == 1 and listed.err.startswith("error: the state database"), listed
    assert "Traceback" not in listed.err and "hunter2" not in listed.err


async def test_root_docs_and_metrics(miniport_server: Any) -> None:
    served = await miniport_server()
    async with aiohttp.ClientSession() as s:
        async with s.get(served.url + "/", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/console"
        async with s.get(served.url + "/docs") as r:
            page = await r.text()
        assert r.status == 200 and "cdn" not in page.lower() and "//" not in page.replace(
            "://", ""
        ).split("<body>")[0]
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            assert f"/docs/assets/{asset}" in page
            async with s.get(f"{served.url}/docs/assets/{asset}") as r:
                assert r.status == 200 and len(await r.read()) > 10_000
        async with s.get(served.url + "/metrics") as r:
            text = await r.text()
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
    for name in ("miniport_launches_total", "miniport_device_connections",
                 "miniport_write_queue_depth", "miniport_prefetch_in_flight",
                 "miniport_engine_in_flight", "# TYPE miniport_fetch_duration_seconds histogram",
                 "# TYPE miniport_fetch_body_bytes histogram",
                 "# TYPE miniport_prefetch_wait_seconds histogram",
                 "# TYPE miniport_events_total counter",
                 "# TYPE miniport_gc_pause_seconds histogram"):  # fmt: skip
        assert name in text, name


async def _demo(miniport_server: Any, *flags: str) -> tuple[Any, dict[str, str], str]:
    served = await miniport_server("--demo", "--demo-port", str(free_port()), *flags)

    async def ready() -> str | None:
        output = "".join(served.lines)
        return output if "Authorization: Bearer" in output else None

    output = await eventually(ready)
    token = output.split("Authorization: Bearer ")[1].split("'")[0]
    appid = output.split("Demo ready: app ")[1].split()[0]
    return served, {"Authorization": f"Bearer {token}"}, appid


async def _launch_and_read(url: str, headers: dict[str, str], appid: str) -> None:
    base = f"{url}/runtime/v1/apps/{appid}"
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.post(base + "/launch", json={"path": "p", "query": "", "scene": 1001}) as r:
            assert r.status == 200
        params = {"fetchType": "pre", "waitMs": "5000"}
        async with s.get(base + "/background-fetch/data", params=params) as r:
            assert r.status == 200


def _metric(text: str, name: str) -> float:
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(name + " ") or line.startswith(name + "{")]  # fmt: skip
    return sum(values)


async def test_access_and_fetch_logs_and_counts(miniport_server: Any) -> None:
    served, headers, appid = await _demo(miniport_server)
    await _launch_and_read(served.url, headers, appid)
    async with aiohttp.ClientSession() as s, s.get(served.url + "/metrics") as r:
        text = await r.text()
    assert _metric(text, "miniport_launches_total") == 1
    assert _metric(text, 'miniport_fetches_total{kind="pre",verdict="cached"}') == 1
    assert _metric(text, "miniport_prefetch_wait_seconds_count") == 1
    assert _metric(text, 'miniport_fetch_duration_seconds_count{kind="pre"}') == 1

    async def logged() -> str | None:
        output = "".join(served.lines)
        return output if " fetch " in output and " access " in output else None

    output = await eventually(logged)
    access = next(line for line in output.splitlines() if " access " in line and "/launch" in line)
    assert " INFO " in access and " access " in access and '"POST ' in access and " 200 " in access
    fetch = next(line for line in output.splitlines() if " fetch " in line)
    assert " INFO " in fetch and f"pre {appid}/alice cached 200" in fetch


async def test_json_log_lines(miniport_server: Any) -> None:
    served, headers, appid = await _demo(miniport_server, "--log-format", "json")
    await _launch_and_read(served.url, headers, appid)

    async def objects() -> list[dict[str, Any]] | None:
        found = [json.loads(line) for line in "".join(served.lines).splitlines()
                 if line.startswith("{")]  # fmt: skip
        kinds = {o["logger"] for o in found}
        return found if {"miniport.access", "miniport.fetch"} <= kinds else None

    found = await eventually(objects)
    fetch = next(o for o in found if o["logger"] == "miniport.fetch")
    assert fetch["level"] == "info" and fetch["verdict"] == "cached" and fetch["kind"] == "pre"
    assert fetch["appid"] == appid and fetch["status"] == 200
    access = next(o for o in found if o["logger"] == "miniport.access" and o["path"].endswith(
        "/launch"))  # fmt: skip
    assert access["status"] == 200 and access["method"] == "POST" and "ts" in access


async def started_lines(data: Path) -> list[str]:
    """What `miniport serve` prints on stdout at 80 columns until it serves (then stopped)."""
    proc = await asyncio.create_subprocess_exec(
        MINIPORT, "serve", "--port", str(free_port()), "--data-dir", str(data),
        env={**CLEAN_ENV, "COLUMNS": "80"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        proc.terminate()
        rest, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
    return [first, *rest.decode().splitlines(keepends=True)]


async def test_the_first_start_says_serving_on_one_line_and_how_to_make_a_console_user(
    tmp_path: Path,
) -> None:
    data = tmp_path / "a-data-directory-whose-path-makes-the-line-longer-than-eighty-columns"
    lines = await started_lines(data)
    assert lines[0].startswith("Miniport serving on http://127.0.0.1:")
    assert lines[0].endswith(f"(data: {data.resolve()}, production mode)\n")  # not wrapped
    assert lines[1] == (
        f"no console user yet: `miniport admin create NAME --data-dir {data}` makes an admin"
        " (it prints a one-time password)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        MINIPORT, "admin", "create", "root", "--data-dir", str(data), "--json", env=CLEAN_ENV,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    again = await started_lines(data)
    assert again[0].startswith("Miniport serving on") and "console user" not in "".join(again)
