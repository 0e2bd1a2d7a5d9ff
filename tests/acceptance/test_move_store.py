"""``move-store``: a DuckDB event store copied into ClickHouse (real server), interrupted and
run again without doubling anything, synced and unsynced test events kept as they were, and
the per app/day comparison; the CLI command's JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from miniport.analytics.clickhouse_store import ClickHouseEventStore
from miniport.analytics.event_store import AppendResult, DuckDBEventStore, StoredEvent
from miniport.analytics.reports import EventQuery, FieldSlots
from miniport.services.move_store import move_store
from tests.conftest import event_keys_at

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
DAY = 86_400_000
SLOTS: FieldSlots = {
    "price": ("int", 2),
    "color": ("string", 0),
    "amount": ("float", 1),
    "vip": ("bool", 4),
}


def ev(appid: str, uid: int, ts: int, test_id: str | None = None) -> StoredEvent:
    return StoredEvent(
        appid,
        str(uid),
        "view",
        f"u{uid % 5}",
        ts,
        ts + 3,
        False,
        "p",
        "click",
        None,
        {2: uid % 11},
        {0: f"c{uid % 3}"},
        test_id,
        # system properties on some rows, float and bool fields (issue 12)
        {"sys_platform": "ios", "sys_scene": 1001, "sys_new_user": True} if uid % 4 else {},
        {1: uid / 8} if uid % 3 else {},
        {4: uid % 2 == 0},
    )


def fill(path: Path) -> DuckDBEventStore:
    store = DuckDBEventStore(path)
    rows = [ev("shop", i, T0 + (i % 3) * DAY + i) for i in range(250)]
    rows += [ev("blog", i, T0 + i) for i in range(40)]
    rows += [ev("shop", 1000 + i, T0 + i, test_id="t1") for i in range(7)]  # synced
    rows += [ev("shop", 2000 + i, T0 + i, test_id="t2") for i in range(5)]  # not synced
    store.append(rows)
    store.sync_test("shop", "t1")
    store.first_days("shop", {"u1": 20_000, "u2": 20_001})
    return store


QUERY = EventQuery.parse(
    event="view",
    from_ms=T0 - DAY,
    to_ms=T0 + 5 * DAY,
    not_before_ms=0,
    metrics=["count", "users", "sum:price", "sum:amount"],
    group_by=["color", "$platform", "vip"],
    filters=["$scene!=7"],
    any=True,
)


class Stop(Exception):
    pass


def test_move_is_resumable_exact_and_compared(tmp_path: Path, clickhouse_url: str) -> None:
    source = fill(tmp_path / "events.duckdb")
    keys = event_keys_at(tmp_path / "keys.db")
    with source, ClickHouseEventStore.from_url(clickhouse_url, keys) as target:

        def interrupt(done: int, total: int) -> None:
            assert total == 302
            if done >= 100:
                raise Stop

        with pytest.raises(Stop):
            move_store(source, target, block_rows=50, progress=interrupt)
        # the first two blocks, in (appid, uid) order: all of blog, then 60 of shop
        assert target.count("blog") == 40 and target.count("shop", include_tests=True) == 60
        result = move_store(source, target, block_rows=50)
        assert (result["copied"], result["skipped"]) == (202, 100)
        again = move_store(source, target, appid="blog")
        assert (again["copied"], again["skipped"]) == (0, 40)
        assert [a["appid"] for a in again["apps"]] == ["blog"]
        # an app id that is empty is an app like another (it crashed: "" read as no filter)
        assert move_store(source, target, appid="") == {"copied": 0, "skipped": 0, "apps": []}
        for app in result["apps"]:
            for day in app["days"]:
                assert day["source"] == day["target"] > 0, (app["appid"], day)
        assert {a["appid"]: len(a["days"]) for a in result["apps"]} == {"blog": 1, "shop": 3}
        assert result["apps"][1]["days"][0]["day"] == "2026-11-01"
        for appid in ("shop", "blog"):
            assert target.count(appid) == source.count(appid)
            assert target.count(appid, include_tests=True) == source.count(
                appid, include_tests=True
            )
            assert target.event_analysis(appid, QUERY, SLOTS) == source.event_analysis(
                appid, QUERY, SLOTS
            )
        assert target.sync_test("shop", "t2") == 5 == source.sync_test("shop", "t2")
        # the moved ids are claimed in the index: a client's late retry of one is found there
        # and in ClickHouse, and left out without being listed as stored twice
        listed = target._scalar("SELECT count() FROM event_dups")
        assert target.append([ev("blog", 3, T0)]) == AppendResult(0, 1)
        assert target._scalar("SELECT count() FROM event_dups") == listed
        assert target.count("blog") == 40
        assert target.first_days("shop", {"u1": 1, "u2": 1, "u3": 7}) == {
            "u1": 20_000,
            "u2": 20_001,
            "u3": 7,
        }


def test_forgotten_users_move_along(tmp_path: Path, clickhouse_url: str) -> None:
    """A user forgotten on DuckDB stays forgotten on ClickHouse: their earlier events, sent
    again by a device after the move, are not stored; their later ones are."""
    source = fill(tmp_path / "events.duckdb")
    keys = event_keys_at(tmp_path / "keys.db")
    with source, ClickHouseEventStore.from_url(clickhouse_url, keys) as target:
        assert source.forget_user("blog", "u1", T0 + DAY) == 8
        assert move_store(source, target)["copied"] == 302 - 8
        with ClickHouseEventStore.from_url(clickhouse_url, keys) as node:  # a node's store
            assert node.append([ev("blog", 1, T0), ev("blog", 6, T0 + 2 * DAY)]) == (
                AppendResult(1, 1)
            )
            assert node.count("blog") == 40 - 8 + 1


def test_cli_move_store_json(tmp_path: Path, clickhouse_url: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    fill(data / "events.duckdb").close()
    command = [
        sys.executable,
        "-m",
        "miniport",
        "analytics",
        "move-store",
        "--to",
        clickhouse_url,
        "--app",
        "blog",
        "--json",
        "--data-dir",
        str(data),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer == {
        "copied": 40,
        "skipped": 0,
        "apps": [{"appid": "blog", "days": [{"day": "2026-11-01", "source": 40, "target": 40}]}],
    }
    bad = subprocess.run(
        [*command[:6], "http://127.0.0.1/x", "--json", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 1 and json.loads(bad.stdout)["error"] == "invalid_input"


def test_cli_refill_ids_after_the_state_database_lost_its_index(
    tmp_path: Path, clickhouse_url: str
) -> None:
    """A state database restored from a backup has the index's name but not its newest ids:
    `refill-ids` claims every stored id again, after which a retry of one is a duplicate."""
    from sqlalchemy import text

    from miniport.config import Settings

    data = tmp_path / "data"
    state_url = Settings(data_dir=data).state_url
    keys = event_keys_at(Path(state_url.split("///", 1)[1]))
    with ClickHouseEventStore.from_url(clickhouse_url, keys) as store:
        assert store.append([ev("blog", i, T0) for i in range(6)]) == AppendResult(6, 0)
        with keys._begin() as conn:  # the restore: the name kept, the ids gone
            conn.execute(text("DELETE FROM event_keys"))
        env = {**os.environ, "MINIPORT_ANALYTICS_URL": clickhouse_url}
        command = [sys.executable, "-m", "miniport", "analytics", "refill-ids"]
        done = subprocess.run(
            [*command, "--json", "--data-dir", str(data)],
            capture_output=True, text=True, timeout=120, check=False, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"stored_events": 6, "ids_in_index": 6}
        assert store.append([ev("blog", 2, T0)]) == AppendResult(0, 1)
        assert store._scalar("SELECT count() FROM event_dups") == 0
        without = {k: v for k, v in env.items() if k != "MINIPORT_ANALYTICS_URL"}
        refused = subprocess.run(
            [*command, "--json", "--data-dir", str(data)],
            capture_output=True, text=True, timeout=120, check=False, env=without,
        )  # fmt: skip
        assert refused.returncode == 1
        assert "MINIPORT_ANALYTICS_URL" in json.loads(refused.stdout)["message"]
