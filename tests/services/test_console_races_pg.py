"""Console users and app members changed by two admins at the same moment, on PostgreSQL
(READ COMMITTED, several writer threads; SQLite writes one at a time). A barrier holds each
transaction at the same statement until the other has reached it too, which two requests do
by chance: no timing luck decides the outcome."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event

from miniport.errors import Conflict
from miniport.platform import Platform

pytestmark = pytest.mark.postgres


def meet_at(p: Platform, first: Callable[[str], bool]) -> None:
    """Each thread waits, before the first statement ``first`` matches, until the other has
    reached it too (once per thread: later statements run freely)."""
    barrier, met = threading.Barrier(2, timeout=10), set()

    @event.listens_for(p.db.engine, "before_cursor_execute")
    def hold(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        me = threading.get_ident()
        if me not in met and first(statement):
            met.add(me)
            barrier.wait()


@pytest.mark.parametrize("how", ["role", "disable"])
async def test_two_admins_demoting_each_other_at_once_leave_one(
    pg_platform: Platform, how: str
) -> None:
    users = pg_platform.console_users
    await users.create_user("alice", "admin", "password-alice")
    await users.create_user("bob", "admin", "password-bob")
    # both have read the user they change, before either counts the admins left
    meet_at(pg_platform, lambda sql: sql.startswith("SELECT") and "console_users.name = " in sql)
    if how == "role":
        ops = [users.set_role("alice", "viewer", "bob"), users.set_role("bob", "viewer", "alice")]
    else:
        ops = [users.set_disabled("alice", True, "bob"), users.set_disabled("bob", True, "alice")]
    outcomes = await asyncio.gather(*ops, return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], Conflict), outcomes
    assert "the last active admin" in refused[0].message
    active = [u.name for u in await users.list_users() if u.role == "admin" and not u.disabled]
    assert len(active) == 1


async def test_names_that_differ_only_in_case_created_at_once_make_one_user(
    pg_platform: Platform,
) -> None:
    users = pg_platform.console_users
    # both reach their first statement (the old code's check for a twin) before either writes
    meet_at(pg_platform, lambda sql: sql.startswith("LOCK") or "lower(console_users.name)" in sql)
    outcomes = await asyncio.gather(
        users.create_user("erin", "admin", "password-erin-1"),
        users.create_user("Erin", "viewer", "password-erin-2"),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], Conflict), outcomes
    assert "names differ only in case" in refused[0].message
    assert len([u for u in await users.list_users() if u.name.lower() == "erin"]) == 1


@pytest.mark.parametrize("add", [True, False])
async def test_the_same_tester_added_or_removed_twice_at_once_changes_once(
    pg_platform: Platform, add: bool
) -> None:
    """A double click, or two nodes: a check then an insert made the second a unique-key
    500 on PostgreSQL."""
    p = pg_platform
    app = await p.apps.create("shop", "test")
    if not add:
        await p.apps.set_tester(app.appid, "tess", True, "alice")
    # both reach their write of the tester before either has made it (the old code had
    # checked for it first: neither found the other's)
    meet_at(p, lambda sql: "app_testers" in sql and not sql.startswith("SELECT"))
    outcomes = await asyncio.gather(
        p.apps.set_tester(app.appid, "tess", add, "alice"),
        p.apps.set_tester(app.appid, "tess", add, "bob"),
        return_exceptions=True,
    )
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert sorted(o["changed"] for o in outcomes) == [False, True]  # type: ignore[index]
    assert [x["user_id"] for x in (await p.apps.testers(app.appid))["testers"]] == (
        ["tess"] if add else []
    )


async def test_two_alert_changes_at_once_keep_both(pg_platform: Platform) -> None:
    """Each change read the settings, then replaced them whole: one change was lost, or the
    second first settings of an app (a delete, then an insert) was a unique-key 500."""
    p = pg_platform
    app = await p.apps.create("shop", "test")
    # both reach their first write of the settings before either has made it (the old code
    # had read them first: neither saw the other's)
    meet_at(p, lambda sql: "alert_settings" in sql and not sql.startswith("SELECT"))
    outcomes = await asyncio.gather(
        p.alerts.configure(app.appid, {"email": "ops@example.com"}, "alice"),
        p.alerts.configure(app.appid, {"threshold": 50}, "bob"),
        return_exceptions=True,
    )
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    shown = await p.alerts.shown(app.appid)
    assert (shown["email"], shown["threshold"]) == ("ops@example.com", 50)


@pytest.mark.parametrize("first", [True, False])
async def test_two_fetch_settings_changes_at_once_keep_both(
    pg_platform: Platform, first: bool
) -> None:
    """Each read the row, then replaced it whole: one change was lost, or (the app's first
    settings) the second was a unique-key 500."""
    p = pg_platform
    app = await p.apps.create("shop", "test")
    if not first:
        await p.apps.update_fetch_settings(app.appid, {"active_days": 3}, "ops")
    meet_at(p, lambda sql: "app_settings" in sql and not sql.startswith("SELECT"))
    outcomes = await asyncio.gather(
        p.apps.update_fetch_settings(app.appid, {"interval": "6h"}, "alice"),
        p.apps.update_fetch_settings(app.appid, {"timeout": "5s"}, "bob"),
        return_exceptions=True,
    )
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    row = await p.db.read(p.registry.fetch_settings, app.appid)
    assert row is not None and (row["interval_s"], row["timeout_s"]) == (21600.0, 5.0)
    assert row["active_days"] == (None if first else 3)


async def test_api_trust_set_twice_at_once_is_set(pg_platform: Platform) -> None:
    """A delete then an insert, twice at once, was a unique-key 500 for the second."""
    p = pg_platform
    app = await p.apps.create("shop", "test")
    meet_at(p, lambda sql: sql.startswith(("INSERT INTO kv", "DELETE FROM kv")))
    outcomes = await asyncio.gather(
        p.wechat.set_trusted(app.appid, True, "alice"),
        p.wechat.set_trusted(app.appid, True, "bob"),
        return_exceptions=True,
    )
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert await p.wechat.trusted(app.appid)


async def test_builtin_events_switched_twice_at_once_change_once(pg_platform: Platform) -> None:
    """A delete then an insert, twice at once, was a unique-key 500 for the second, and both
    could say they changed the setting (audited and pushed twice)."""
    p = pg_platform
    app = await p.apps.create("shop", "test")
    meet_at(p, lambda sql: "analytics_settings" in sql and not sql.startswith("SELECT"))
    switched = await asyncio.gather(
        p.analytics.set_builtin_events(app.appid, False, "alice"),
        p.analytics.set_builtin_events(app.appid, False, "bob"),
        return_exceptions=True,
    )
    assert not [o for o in switched if isinstance(o, Exception)], switched
    assert sorted(s["changed"] for s in switched) == [False, True]  # type: ignore[index]


async def test_the_same_member_added_twice_at_once_is_one_member(pg_platform: Platform) -> None:
    p = pg_platform
    app = await p.apps.create("shop", "test")
    # both reach the write of the member row before either has written it
    meet_at(p, lambda sql: "app_members" in sql and not sql.startswith("SELECT"))
    outcomes = await asyncio.gather(
        p.members.add(app.appid, "erin", "developer", "alice"),
        p.members.add(app.appid, "erin", "viewer", "bob"),
        return_exceptions=True,
    )
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    (member,) = [m for m in await p.members.list(app.appid) if m["user"] == "erin"]
    assert member["role"] in ("developer", "viewer")
