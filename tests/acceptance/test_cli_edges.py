"""The real `miniport` executable given what a shell can give it: text that looks like markup,
bytes that are not UTF-8, a damaged state database, a server.json its server left behind.
Each is one line of error (or the right answer), never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from tests.acceptance.test_cli import miniport, ok
from tests.support.platforms import StartServer


async def test_text_that_looks_like_markup_is_shown_as_typed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for typed in ("[/x]", "[bold]hello"):
        shown = await miniport("app", "show", typed, data_dir=data)
        assert shown.code == 1 and "Traceback" not in shown.err, shown.err
        assert f"app '{typed}' not found" in shown.err, shown.err


async def test_arguments_that_are_not_utf8_are_refused_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    not_utf8 = b"\xff\xfe".decode("utf-8", "surrogateescape")  # as Python reads such argv
    for argv in (("app", "show", not_utf8), ("app", "create", not_utf8)):
        shown = await miniport(*argv, "--json", data_dir=data)
        assert shown.code == 1 and shown.json["error"] == "invalid_input", shown
        assert "is not valid UTF-8" in shown.json["message"]
    shown = await miniport("app", "list", "--json", data_dir=tmp_path / f"d{not_utf8}")
    assert shown.code == 1 and "is not valid UTF-8" in shown.json["message"], shown


async def test_a_state_file_that_is_not_a_database_is_named_not_a_traceback(
    tmp_path: Path,
) -> None:
    data = tmp_path / "my data #1"  # named as typed: not the URL's "my%20data%20%231"
    data.mkdir()
    (data / "miniport.db").write_text("garbage, not SQLite\n" * 100)
    shown = await miniport("app", "list", "--json", data_dir=data)
    assert shown.code == 1 and shown.json["error"] == "state_store", shown
    said = f"state database {data}/miniport.db: file is not a database"
    assert shown.json["message"] == said, shown


async def test_a_server_json_left_by_a_server_that_is_gone_is_ignored(
    tmp_path: Path, loopback: StartServer
) -> None:
    """Whatever answers at the address of a server that is gone is not it: its answers were
    taken for the server's (another program's 200 crashed the command with a KeyError)."""
    data = tmp_path / "data"
    appid = (await ok("app", "create", "Shop", data_dir=data))["appid"]

    async def healthy(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    other = await loopback(healthy)
    for info in ({"url": other, "admin_key": "k", "pid": 2**22 + 12345}, [1], "x"):
        (data / "server.json").write_text(json.dumps(info))
        listed = await ok("app", "list", data_dir=data)
        assert [a["appid"] for a in listed["apps"]] == [appid], info
