"""The CLI as a new user meets it, through the real executable at 80 columns: help that
describes every command and lists choices, output that keeps URLs and signatures whole, one URL
rule, errors in the CLI's words, the server's mode followed, and one CLI key per data
directory."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Result, run_cli
from tests.support.platforms import Counter

NARROW = {"COLUMNS": "80"}
DEV = {**NARROW, "MINIPORT_DEV": "1"}


async def cli(*argv: str, data: Path, env: dict[str, str] | None = None) -> Result:
    return await run_cli(*argv, "--data-dir", str(data), env=env or NARROW)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.mark.parametrize("command", [
    ("app", "list"), ("change", "list"), ("fetch-url", "enable"), ("fetch-url", "disable"),
    ("api-key", "create"), ("host-key", "create"), ("serve",),
])  # fmt: skip
async def test_every_command_has_help_and_flags_show_no_type(command: tuple[str, ...]) -> None:
    shown = await run_cli(*command, "--help", env=NARROW)
    assert shown.code == 0, shown
    assert "<bool>" not in shown.out
    usage_end = shown.out.index("╭")
    description = shown.out[shown.out.index("Usage:"):usage_end].splitlines()[2:]
    assert any(line.strip() for line in description), shown.out  # a sentence under Usage


async def test_choices_are_listed_and_help_speaks_of_what_a_command_is_for() -> None:
    role, host_key, url = await asyncio.gather(
        run_cli("api-key", "create", "--help", env=NARROW),
        run_cli("host-key", "--help", env=NARROW),
        run_cli("fetch-url", "set", "--help", env=NARROW),
    )
    assert "<admin|developer|viewer>" in role.out
    console_user = await run_cli("admin", "create", "--help", env=NARROW)
    assert "<admin|developer|viewer>" in console_user.out
    assert "admin API" not in host_key.out and "runtime tokens" in host_key.out
    assert "<periodic|pre>" in url.out
    serve = await run_cli("serve", "--help", env=NARROW)
    assert "<human|json>" in serve.out and "--demo-port" in serve.out


async def test_one_url_rule_for_every_kind_with_one_message(data: Path) -> None:
    appid = (await cli("app", "create", "Shop", "--json", data=data)).json["appid"]
    messages = set()
    for kind in ("periodic", "pre"):
        refused = await cli("fetch-url", "set", appid, "--kind", kind, "--url",
                            "http://example.com/x", data=data)  # fmt: skip
        assert refused.code == 1 and "must use https" in refused.err, refused
        messages.add(refused.err)
        private = await cli("fetch-url", "set", appid, "--kind", kind, "--url",
                            "https://10.0.0.1/x", data=data)  # fmt: skip
        assert private.code == 1 and "10.0.0.1 is private" in private.err, private
    assert len(messages) == 1


async def test_output_keeps_urls_and_signatures_whole_at_80_columns(
    data: Path, counter: Counter
) -> None:
    appid = (await cli("app", "create", "Shop", "--json", data=data)).json["appid"]
    url = f"{counter.url}/a-rather-long-path/for-the-pre-fetch-data?lang=zh_CN&region=east"
    change = await cli("fetch-url", "set", appid, "--kind", "pre", "--url", url, "--json",
                       data=data, env=DEV)  # fmt: skip
    listed = await cli("change", "list", appid, data=data)
    assert url in listed.out.splitlines()[1], listed.out
    await cli("change", "confirm", change.json["confirm_code"], data=data)
    fetched = await cli("devtools", "fetch", appid, "--user", "alice", "--type", "pre",
                        data=data, env=DEV)  # fmt: skip
    assert fetched.code == 0, fetched
    request = next(line for line in fetched.out.splitlines() if line.startswith("request: "))
    assert re.fullmatch(r"request: GET \S+&scene=1001&version=&envVersion=", request), request
    signature = next(line for line in fetched.out.splitlines() if "Signature" in line)
    assert re.fullmatch(r"  X-Miniport-Signature: t=\d+,v1=[0-9a-f]{64}", signature), signature
    await cli("devtools", "fetch", appid, "--user", "alice", data=data, env=DEV)  # no token
    log = await cli("devtools", "log", appid, data=data)
    assert " periodic devtools no_url " in log.out and " cached 200 " in log.out, log.out
    assert "…" not in log.out and "…" not in listed.out
    assert "\n  no enabled periodic URL\n" in log.out


async def test_a_report_on_an_unknown_event_is_an_error(data: Path) -> None:
    appid = (await cli("app", "create", "Shop", "--json", data=data)).json["appid"]
    report = await cli("analytics", "report", appid, "--event", "nosuch", data=data)
    assert report.code == 1 and "event 'nosuch' is not defined" in report.err, report
    funnel = await cli("analytics", "funnel", appid, "--step", "a", "--step", "b", data=data)
    assert funnel.code == 1 and "event 'a' is not defined" in funnel.err, funnel


async def test_beside_a_server_the_cli_follows_its_mode_says_so_and_words_errors_its_way(
    data: Path, miniport_server: Any
) -> None:
    served = await miniport_server("--dev")
    appid = (await cli("app", "create", "Shop", "--json", data=data)).json["appid"]
    listed = await cli("app", "list", data=data)  # this shell did not ask for dev mode
    assert "runs in dev mode; this command follows it" in listed.err, listed
    quiet = await cli("app", "list", data=data, env=DEV)
    assert "note:" not in quiet.err
    loopback = await cli("fetch-url", "set", appid, "--kind", "pre", "--url",
                         "http://127.0.0.1:9/pre", "--json", data=data)  # fmt: skip
    assert loopback.code == 0, loopback  # the server's dev mode decides
    one_step = await cli("analytics", "funnel", appid, "--step", "a", data=data)
    assert one_step.code == 1 and "should have" not in one_step.err, one_step
    assert "--step: give at least 2, not 1" in one_step.err

    # the CLI's key: created at the first start only
    served.proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(served.proc.wait(), 30)
    await miniport_server("--dev")
    audit = await cli("change", "audit", "--json", data=data)
    created = [e for e in audit.json["entries"] if e["action"] == "api_key.create"]
    assert len(created) == 1, created
    assert ((data / "cli.key").stat().st_mode & 0o777) == 0o600
