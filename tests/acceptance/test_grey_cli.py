"""`miniport fetch-url grey …` and `miniport app testers …` through the real executable: each
grey change waits for `change confirm`, like `fetch-url set`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.acceptance.test_cli import miniport, ok


@pytest.mark.timeout(300)  # sixteen CLI processes in a row
async def test_grey_release_and_testers_from_the_cli(tmp_path: Path) -> None:
    data = tmp_path / "data"
    appid = (await ok("app", "create", "Shop", data_dir=data))["appid"]
    main = await ok("fetch-url", "set", appid, "--kind", "periodic", "--url",
                    "https://dev.example/main", data_dir=data)
    await ok("change", "confirm", main["confirm_code"], data_dir=data)

    added = await ok("app", "testers", "add", appid, "alice", data_dir=data)
    assert [t["user_id"] for t in added["testers"]] == ["alice"]
    change = await ok("fetch-url", "grey", "set", appid, "--kind", "periodic", "--url",
                      "https://dev.example/grey", "--ratio", "10", data_dir=data)
    assert (change["op"], change["ratio"]) == ("grey_set", 10)
    shown = await ok("app", "show", appid, data_dir=data)
    assert shown["urls"]["periodic"]["grey_url"] is None  # not before an admin confirms
    await ok("change", "confirm", change["confirm_code"], data_dir=data)
    ratio = await ok("fetch-url", "grey", "ratio", appid, "--kind", "periodic", "--ratio", "25",
                     data_dir=data)
    await ok("change", "confirm", ratio["confirm_code"], data_dir=data)
    shown = await ok("app", "show", appid, data_dir=data)
    assert shown["urls"]["periodic"]["grey_url"] == "https://dev.example/grey"
    assert shown["urls"]["periodic"]["grey_ratio"] == 25

    bad = await miniport("fetch-url", "grey", "ratio", appid, "--kind", "periodic", "--ratio",
                         "101", "--json", data_dir=data)
    assert bad.code == 1 and bad.json["error"] == "invalid_input"

    promote = await ok("fetch-url", "grey", "promote", appid, "--kind", "periodic", data_dir=data)
    await ok("change", "confirm", promote["confirm_code"], data_dir=data)
    shown = await ok("app", "show", appid, data_dir=data)
    assert shown["urls"]["periodic"]["url"] == "https://dev.example/grey"
    assert shown["urls"]["periodic"]["grey_url"] is None
    clear = await ok("fetch-url", "grey", "clear", appid, "--kind", "pre", data_dir=data)
    assert clear["op"] == "grey_clear"

    removed = await ok("app", "testers", "remove", appid, "alice", data_dir=data)
    assert removed["testers"] == []
    listed = await miniport("app", "testers", "list", appid, data_dir=data)
    assert listed.code == 0 and "(none)" in listed.out


@pytest.mark.timeout(300)
async def test_app_show_and_the_change_commands_show_the_grey_release(tmp_path: Path) -> None:
    """The console's data URLs page shows each kind's grey URL, its ratio and the testers;
    `app show` showed none of them (its --json dropped the testers), and neither it, `change
    list` nor `change confirm` said which ratio a grey change asks for or applied."""
    data, wide = tmp_path / "data", {"COLUMNS": "200"}
    appid = (await ok("app", "create", "Shop", data_dir=data))["appid"]
    main = await ok("fetch-url", "set", appid, "--kind", "periodic", "--url",
                    "https://dev.example/main", data_dir=data)
    await ok("change", "confirm", main["confirm_code"], data_dir=data)
    await ok("app", "testers", "add", appid, "alice", data_dir=data)
    change = await ok("fetch-url", "grey", "set", appid, "--kind", "periodic", "--url",
                      "https://dev.example/grey", "--ratio", "10", data_dir=data)
    for argv in (("app", "show", appid), ("change", "list", appid)):
        shown = await miniport(*argv, data_dir=data, env=wide)
        assert shown.code == 0 and "grey_set periodic" in shown.out
        assert "10 %" in shown.out, shown.out  # the ratio the pending change asks for
    confirmed = await ok("change", "confirm", change["confirm_code"], data_dir=data)
    assert (confirmed["op"], confirmed["ratio"]) == ("grey_set", 10)
    assert (await ok("app", "show", appid, data_dir=data))["testers"] == ["alice"]
    shown = await miniport("app", "show", appid, data_dir=data, env=wide)
    assert shown.code == 0
    assert "grey: https://dev.example/grey (10 % of users)" in shown.out, shown.out
    assert "testers: alice" in shown.out
    assert (await ok("app", "show", appid, data_dir=data))["waking"] == []  # its wake is done

    # a wake cut short (the server stopped after its first chunk), an hour ago: shown until the
    # scheduler has resumed it
    with sqlite3.connect(data / "miniport.db") as db:
        db.execute("UPDATE change_requests SET wake_from = 'u3', wake_at = 0 WHERE id = ?",
                   (change["change_id"],))
    (waking,) = (await ok("app", "show", appid, data_dir=data))["waking"]
    assert (waking["change_id"], waking["after_user"], waking["stalled"]) == (
        change["change_id"], "u3", True)
    shown = await miniport("app", "show", appid, data_dir=data, env={"COLUMNS": "80"})
    line = " ".join(shown.out.split())  # wrapped at 80 columns
    assert (f"waking the users of change {change['change_id']} (grey_set periodic at 10 %)"
            in line), shown.out
    assert "stalled, the scheduler resumes it; last step" in line and "up to user u3" in line
