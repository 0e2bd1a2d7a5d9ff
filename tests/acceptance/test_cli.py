"""Acceptance tests of the real `miniport` executable, run as subprocesses with --data-dir and
--json, including commands run beside a running `miniport serve` on the same data directory."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import free_port
from tests.support.cli import CLEAN_ENV, Result, run_cli, together
from tests.support.platforms import SSE, Counter, eventually, settle


async def miniport(*args: str, data_dir: Path | None, env: dict[str, str] | None = None,
                   cwd: Path | None = None) -> Result:
    argv = [*args] + (["--data-dir", str(data_dir)] if data_dir else [])
    return await run_cli(*argv, env=env, cwd=cwd)


async def ok(*args: str, data_dir: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = await miniport(*args, "--json", data_dir=data_dir, env=env)
    assert result.code == 0, (args, result)
    return result.json


DEV = {"MINIPORT_DEV": "1"}



@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


async def test_app_urls_and_confirmation(data: Path) -> None:
    created = await ok("app", "create", "Shop", data_dir=data)
    assert set(created) >= {"appid", "secret"}
    appid = created["appid"]

    change = await ok("fetch-url", "set", appid, "--kind", "periodic", "--url",
                      "https://dev.example/bg?lang=zh_CN", data_dir=data)
    assert set(change) >= {"change_id", "confirm_code", "confirm_url"}
    assert change["confirm_url"].endswith("/confirm/" + change["confirm_code"])
    applied = await ok("change", "confirm", change["confirm_code"], data_dir=data)
    assert applied["status"] == "applied" and applied["change_id"] == change["change_id"]

    shown, again, disable, enable = await together(
        ok("app", "show", appid, data_dir=data),
        miniport("change", "confirm", change["confirm_code"], "--json", data_dir=data),
        ok("fetch-url", "disable", appid, "--kind", "periodic", data_dir=data),
        ok("fetch-url", "enable", appid, "--kind", "pre", data_dir=data),
    )
    assert shown["urls"]["periodic"] == {**shown["urls"]["periodic"],
                                         "url": "https://dev.example/bg?lang=zh_CN",
                                         "enabled": True}
    assert again.code == 1
    assert again.json["error"] == "change_not_confirmable"
    assert "already applied" in again.json["message"]
    for pending in (disable, enable):
        assert set(pending) >= {"change_id", "confirm_code", "confirm_url"}

    await ok("change", "confirm", disable["confirm_code"], data_dir=data)
    shown, audit = await together(ok("app", "show", appid, data_dir=data),
                                  ok("change", "audit", appid, data_dir=data))
    assert shown["urls"]["periodic"]["enabled"] is False
    actions = sorted(e["action"] for e in audit["entries"])
    assert actions == ["app.create"] + ["change.confirm"] * 2 + ["change.request"] * 3


async def test_without_json_the_set_command_prints_a_qr_code(data: Path) -> None:
    appid = (await ok("app", "create", "Shop", data_dir=data))["appid"]
    result = await miniport("fetch-url", "set", appid, "--kind", "pre", "--url",
                            "https://dev.example/pre", data_dir=data)
    assert result.code == 0, result
    qr_lines = [line for line in result.out.splitlines() if set(line) & set("█▀▄")]
    assert len(qr_lines) >= 10  # a QR code drawn with block characters
    code = re.search(r"miniport change confirm ([A-Z0-9]{10})", result.out)
    assert code is not None
    assert f"/confirm/{code.group(1)}" in result.out
    await ok("change", "confirm", code.group(1), data_dir=data)


ERRORS = [
    (("fetch-url", "set", "mp_nope", "--kind", "periodic", "--url", "https://x.example/"),
     "not_found", "app 'mp_nope' not found"),
    (("change", "confirm", "NOSUCHCODE"), "change_not_confirmable", "unknown confirmation code"),
    (("devtools", "log", "mp_nope"), "not_found", "app 'mp_nope' not found"),
    (("change", "audit", "mp_nope"), "not_found", "app 'mp_nope' not found"),
    (("devtools", "fetch", "mp_nope", "--user", "u"), "not_found", "app 'mp_nope' not found"),
    (("devtools", "fetch", "mp_nope", "--user", "u", "--path", "p" * 1025), "invalid_input",
     "path: String should have at most 1024 characters"),
]


async def test_errors_exit_1_with_a_clear_message(data: Path) -> None:
    results = await together(*(miniport(*args, "--json", data_dir=data) for args, _, _ in ERRORS),
                             miniport(*ERRORS[0][0], data_dir=data),
                             miniport(*ERRORS[1][0], data_dir=data))
    for result, (args, error, fragment) in zip(results, ERRORS, strict=False):
        assert result.code == 1, args
        assert result.json == {"error": error, "message": result.json["message"]}
        assert fragment in result.json["message"], args
    for human, (_, _, fragment) in zip(results[len(ERRORS):], ERRORS[:2], strict=True):
        assert human.code == 1
        assert "error" in human.err and fragment in human.err
        assert "Traceback" not in human.err + human.out


async def test_bad_urls_are_refused(data: Path) -> None:
    appid = (await ok("app", "create", "Shop", data_dir=data))["appid"]
    bad = [("periodic", "ftp://x.example/", "scheme 'ftp'"),
           ("pre", "https://u:p@x.example/", "credentials"),
           ("pre", "http://127.0.0.1:9/pre", "must use https")]
    results = await together(
        *(miniport("fetch-url", "set", appid, "--kind", kind, "--url", url, "--json",
                   data_dir=data) for kind, url, _ in bad),
        # dev mode (from the environment) accepts http on loopback for the pre-fetch URL
        ok("fetch-url", "set", appid, "--kind", "pre", "--url", "http://127.0.0.1:9/pre",
           data_dir=data, env=DEV),
    )
    for result, (_, url, fragment) in zip(results, bad, strict=False):
        assert result.code == 1, url
        assert result.json["error"] in ("invalid_url", "invalid_input")
        assert fragment in result.json["message"]
    assert results[-1]["url"] == "http://127.0.0.1:9/pre"
    # a kind that does not exist is refused before anything runs, listing the kinds
    bogus = await miniport("fetch-url", "set", appid, "--kind", "bogus", "--url",
                           "https://x.example/", data_dir=data)
    assert bogus.code == 2 and "'bogus'" in bogus.err and "'periodic'" in bogus.err, bogus


async def test_data_dir_defaults(tmp_path: Path) -> None:
    from_env = tmp_path / "from-env"
    by_env, by_default = await together(
        miniport("app", "create", "A", "--json", data_dir=None,
                 env={"MINIPORT_DATA_DIR": str(from_env)}),
        miniport("app", "create", "B", "--json", data_dir=None, cwd=tmp_path),
    )
    assert by_env.code == 0 and (from_env / "miniport.db").exists()
    assert by_default.code == 0 and (tmp_path / "miniport-data" / "miniport.db").exists()


async def test_user_token_host_key_and_devtools(data: Path, counter: Counter) -> None:
    appid = (await ok("app", "create", "Shop", data_dir=data))["appid"]
    periodic_change, pre_change = await together(*(
        ok("fetch-url", "set", appid, "--kind", kind, "--url", f"{counter.url}/{kind}",
           data_dir=data, env=DEV) for kind in ("periodic", "pre")))
    await together(ok("change", "confirm", periodic_change["confirm_code"], data_dir=data),
                   ok("change", "confirm", pre_change["confirm_code"], data_dir=data))

    token, key, blocked = await together(
        ok("user", "token", "alice", "--device", "phone", data_dir=data),
        ok("host-key", "create", data_dir=data),
        # without dev mode the fetcher refuses loopback
        ok("devtools", "fetch", appid, "--user", "alice", "--type", "pre", data_dir=data),
    )
    assert set(token) == {"runtime_token"} and token["runtime_token"].count(".") == 1
    assert key["key"]
    assert blocked["verdict"] == "blocked_address"
    assert counter.requests == []

    shown, periodic = await together(
        ok("devtools", "fetch", appid, "--user", "alice", "--type", "pre", data_dir=data,
           env=DEV),
        ok("devtools", "fetch", appid, "--user", "alice", data_dir=data, env=DEV),
    )
    assert {"request", "verdict", "status", "bytes", "error"} <= set(shown)
    assert shown["request"]["url"].startswith(f"{counter.url}/pre?appid={appid}&code=")
    assert (shown["verdict"], shown["status"], shown["error"]) == ("cached", 200, None)
    assert shown["bytes"] == len("data for ?")

    assert periodic["verdict"] == "token_not_set"
    assert periodic["error"] == "token not set, maybe you should setBackgroundFetchToken first"

    log = await ok("devtools", "log", appid, data_dir=data)
    verdicts = [(e["kind"], e["verdict"]) for e in log["entries"]]
    assert sorted(verdicts[:2]) == [("periodic", "token_not_set"), ("pre", "cached")]
    assert verdicts[2] == ("pre", "blocked_address")
    assert {"user_id", "trigger", "status", "bytes", "latency_ms", "error", "ts"} <= \
        set(log["entries"][0])

    cleared, push = await together(
        ok("devtools", "clear", appid, "--user", "alice", data_dir=data),
        miniport("devtools", "push", appid, "--user", "alice", "--json", data_dir=data),
    )
    assert cleared == {"cleared": 1}
    assert push.code == 1 and push.json["error"] == "server_not_running"
    assert "miniport serve" in push.json["message"]


async def test_commands_work_beside_a_running_server(
    data: Path, miniport_server: Any, counter: Counter,
) -> None:
    served = await miniport_server("--dev")
    assert (data / "server.json").exists()
    appid = (await ok("app", "create", "Shop", data_dir=data))["appid"]
    *changes, runtime = await together(
        *(ok("fetch-url", "set", appid, "--kind", kind, "--url", f"{counter.url}/{kind}",
             data_dir=data, env=DEV) for kind in ("periodic", "pre")),
        ok("user", "token", "alice", "--device", "phone", data_dir=data),
    )
    for pending in changes:
        assert pending["confirm_url"].startswith(served.url + "/confirm/")
    await together(*(ok("change", "confirm", c["confirm_code"], data_dir=data) for c in changes))
    headers = {"Authorization": f"Bearer {runtime['runtime_token']}"}
    base = f"{served.url}/runtime/v1/apps/{appid}"

    async with aiohttp.ClientSession(headers=headers) as s:
        # the running server sees the URLs the CLI confirmed (in another process)
        async def prefetching() -> bool:
            async with s.post(base + "/launch", json={"path": "pages/i", "scene": 1001}) as r:
                return bool((await r.json())["prefetch"])

        await eventually(prefetching)
        async with s.get(base + "/background-fetch/data",
                         params={"fetchType": "pre", "waitMs": "5000"}) as r:
            assert r.status == 200 and (await r.json())["fetchedData"] == "data for ?"

        async with s.get(f"{served.url}/runtime/v1/events",
                         timeout=aiohttp.ClientTimeout(total=60)) as stream:
            events = SSE(stream)
            assert (await events.next())[0] == "connected"
            async with s.post(base + "/background-fetch/token", json={"token": "tok"}) as r:
                assert r.status == 200
            periodic = await events.until("backgroundFetchData")  # the scheduler fetched it
            assert periodic["fetchType"] == "periodic"
            assert periodic["fetchedData"] == "data for tok"

            pushed = await ok("devtools", "push", appid, "--user", "alice", data_dir=data)
            assert pushed["devices"] == ["phone"] and pushed["verdict"] == "cached"
            refresh = await events.until("devtoolsRefresh")
            assert refresh["appid"] == appid

    log, host = await together(ok("devtools", "log", appid, data_dir=data),
                               ok("host-key", "create", "backend", data_dir=data))
    kinds = {(e["kind"], e["trigger"], e["verdict"]) for e in log["entries"]}
    assert {("pre", "launch", "cached"), ("periodic", "schedule", "cached"),
            ("periodic", "devtools", "cached")} <= kinds
    host_key = host["key"]
    async with aiohttp.ClientSession() as s, s.post(
        served.url + "/host/v1/runtime-tokens", json={"user_id": "bob"},
        headers={"Authorization": f"Bearer {host_key}"},
    ) as r:
        assert r.status == 200 and (await r.json())["runtime_token"]

    served.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(served.proc.wait(), 30) == 0
    assert not (data / "server.json").exists()


async def test_demo_prints_what_to_try_and_data_flows(data: Path, miniport_server: Any) -> None:
    served = await miniport_server("--demo", "--demo-port", str(free_port()))

    async def printed() -> re.Match[str] | None:
        # the whole block, to its console line: read as the lines come, the first may be in
        # while the curl lines are not yet
        return re.search(r"Demo ready.*?app (mp[0-9a-f]+).*?console: ", "".join(served.lines), re.S)

    found = await eventually(printed)
    appid = found.group(1)
    output = "".join(served.lines)
    token = re.search(r"Authorization: Bearer ([\w.\-]+)", output)
    assert token is not None
    assert f"{served.url}/runtime/v1/apps/{appid}/launch" in output
    headers = {"Authorization": f"Bearer {token.group(1)}"}
    base = f"{served.url}/runtime/v1/apps/{appid}"
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.post(base + "/launch", json={"path": "pages/index/index", "query": "id=1",
                                                  "scene": 1001}) as r:
            assert (await r.json())["prefetch"] is True
        async with s.get(base + "/background-fetch/data",
                         params={"fetchType": "pre", "waitMs": "5000"}) as r:
            pre = await r.json()
        assert r.status == 200, pre
        body = json.loads(pre["fetchedData"])
        assert body["kind"] == "pre" and body["path"] == "pages/index/index"
        assert str(body["openid"]).startswith("o")  # the demo server exchanged the login code

        async with s.post(base + "/background-fetch/token", json={"token": "t-alice"}) as r:
            assert r.status == 200

        async def periodic() -> dict[str, Any] | None:
            async with s.get(base + "/background-fetch/data",
                             params={"fetchType": "periodic"}) as r:
                return await r.json() if r.status == 200 else None

        data_ = await eventually(periodic)
        assert json.loads(data_["fetchedData"])["kind"] == "periodic"

        # A device's event stream open when the server stops: it ends as a complete response
        # when the server stops accepting (the device reconnects elsewhere at once), not
        # after uvicorn's graceful timeout with the request cancelled and a traceback logged.
        async with s.get(served.url + "/runtime/v1/events", params={"appid": appid}) as r:
            assert (await r.content.readline()).startswith(b"event: connected")
            served.proc.send_signal(signal.SIGTERM)
            rest = await asyncio.wait_for(r.content.read(), 30)  # complete: no payload error
        assert rest.startswith(b"data: ") and rest.endswith(b"\n\n")
        assert await asyncio.wait_for(served.proc.wait(), 30) == 0
        said = "".join(served.lines)
        assert "1 open event streams ended" in said
        assert "graceful shutdown exceeded" not in said and "Traceback" not in said, said


@pytest.mark.parametrize("signals", [(signal.SIGTERM,), (signal.SIGINT, signal.SIGINT)],
                         ids=["sigterm", "ctrl-c-twice"])
async def test_serve_stops_promptly_on_sigterm_with_hanging_fetches(
    data: Path, miniport_server: Any, counter: Counter, monkeypatch: pytest.MonkeyPatch,
    signals: tuple[signal.Signals, ...],
) -> None:
    """Fetches that would hang for the whole (60 s) fetch timeout: SIGTERM stops `serve` within
    a few seconds, and the pairs it had claimed are due at once for the next start. So does
    Ctrl-C pressed twice (uvicorn's forced exit, which would skip the application's shutdown:
    claims left held, a traceback of the cancelled lifespan)."""
    import time

    from miniport.config import Settings
    from miniport.domain.requests import Launch
    from miniport.platform import create_platform
    from tests.conftest import confirm_url

    monkeypatch.setitem(CLEAN_ENV, "MINIPORT_FETCH_TIMEOUT_S", "60")  # the serve fixture's env
    counter.hold = True
    p = create_platform(Settings(data_dir=data, dev=True))
    await p.start()
    app = await p.apps.create("shop", "test")
    await confirm_url(p, app.appid, "periodic", counter.url)
    for i in range(3):
        await p.background.launch(app.appid, f"u{i}", Launch())
    await settle(p)  # launches are written behind: stored before the tokens make the pairs due
    for i in range(3):
        await p.background.set_token(app.appid, f"u{i}", f"t{i}")
    await p.close()
    served = await miniport_server("--dev")

    async def hanging() -> bool:
        return counter.in_flight == 3

    await eventually(hanging, timeout_s=30)
    started = time.monotonic()
    for sig in signals:
        served.proc.send_signal(sig)
        await asyncio.sleep(0.05)
    await asyncio.wait_for(served.proc.wait(), 30)
    assert time.monotonic() - started < 10, "".join(served.lines)  # 2 s grace, then shutdown
    assert served.proc.returncode == 0
    assert "Traceback" not in "".join(served.lines)
    p = create_platform(Settings(data_dir=data, dev=True))
    await p.start()
    try:
        now = p.clock.now()
        due = await p.db.write(p.fetches.claim_due, now, p.rules.active_since(now),
                               p.rules.lease_until(now), 10)
        assert sorted(d.user_id for d in due) == ["u0", "u1", "u2"]
    finally:
        await p.close()


async def test_a_bad_setting_in_the_environment_is_a_clear_error(tmp_path: Path) -> None:
    """A variable that cannot be used is named with what is wrong, as an error (exit 1), not
    a traceback; with --json as the error object."""
    env = {"MINIPORT_MAX_BODY_BYTES": "abc"}
    text = await miniport("app", "list", data_dir=tmp_path, env=env)
    assert text.code == 1, text
    assert "MINIPORT_MAX_BODY_BYTES" in text.err and "Traceback" not in text.err, text
    as_json = await miniport("app", "list", "--json", data_dir=tmp_path, env=env)
    assert as_json.code == 1, as_json
    assert as_json.json["error"] == "invalid_input"
    assert as_json.json["problems"][0]["path"] == "MINIPORT_MAX_BODY_BYTES"
    serve = await miniport("serve", "--port", str(free_port()), data_dir=tmp_path, env=env)
    assert serve.code == 1 and "MINIPORT_MAX_BODY_BYTES" in serve.err, serve
    assert "Traceback" not in serve.err, serve


async def test_a_data_directory_that_cannot_be_one_is_a_clear_error(tmp_path: Path) -> None:
    """A data directory that is a file, or under one, is named with what to do, exit 1, not a
    traceback: for local commands, --json ones, serve and worker."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a directory")
    text, as_json, under, serve, worker = await together(
        miniport("app", "list", data_dir=a_file),
        miniport("app", "create", "Shop", "--json", data_dir=a_file),
        miniport("admin", "list", "--json", data_dir=a_file / "data"),
        miniport("serve", "--port", str(free_port()), data_dir=a_file),
        miniport("worker", data_dir=a_file),
    )
    for result in (text, serve, worker):
        assert result.code == 1, result
        assert "Traceback" not in result.err + result.out, result
        said = " ".join(result.err.split())  # the message as one line, however it wrapped
        assert f"data directory {a_file} is a file" in said and "--data-dir" in said, result
    for result in (as_json, under):
        assert result.code == 1, result
        assert result.json["error"] == "invalid_input", result
        assert str(a_file) in result.json["message"] and "Traceback" not in result.err
    assert a_file.read_text() == "not a directory"


async def test_a_long_data_url_and_link_stay_whole_at_80_columns(data: Path) -> None:
    """The admin checks the URL before confirming, and copies the link: neither may get a
    line break inside it (the terminal folds a long line, the CLI does not cut it)."""
    appid = (await ok("app", "create", "Shop", data_dir=data))["appid"]
    url = "https://dev.example.com/api/v2/background/periodic?" + "&".join(
        f"param{i}=value{i}" for i in range(8)
    )
    public = "https://miniport.internal.example.com/a/rather/long/prefix/for/the/console"
    env = {"COLUMNS": "80", "MINIPORT_PUBLIC_URL": public}
    result = await miniport("fetch-url", "set", appid, "--kind", "pre", "--url", url,
                            data_dir=data, env=env)  # fmt: skip
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert any(url in line for line in lines), result.out
    assert any(f"{public}/confirm/" in line for line in lines), result.out


async def test_a_fetch_run_here_prints_its_verdict_once(data: Path) -> None:
    """`devtools fetch` without a server shows the verdict and error itself; the server's fetch
    log line (for a failed fetch) is not printed beside it, bare, on stderr."""
    appid = (await ok("app", "create", "Shop", data_dir=data))["appid"]
    change = await ok("fetch-url", "set", appid, "--kind", "periodic", "--url",
                      "https://dev.example/bg", data_dir=data)  # fmt: skip
    await ok("change", "confirm", change["confirm_code"], data_dir=data)
    human, as_json = await together(
        miniport("devtools", "fetch", appid, "--user", "alice", data_dir=data),
        miniport("devtools", "fetch", appid, "--user", "alice", "--json", data_dir=data),
    )
    assert human.code == 0 and "token_not_set" in human.out, human
    assert as_json.code == 0 and as_json.json["verdict"] == "token_not_set", as_json
    assert human.err == as_json.err == "", (human.err, as_json.err)
