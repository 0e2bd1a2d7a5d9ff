"""User ids an operator types (devtools, testers, live tests, refreshes) are checked as a
runtime's are: ``*`` is the event broker's key for every device of the app, so a devtools
fetch, push or live test for "user *" went to every connected device; control characters
(a NUL: PostgreSQL's driver refuses it) were a 500 on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from miniport.errors import InvalidInput
from miniport.platform import Platform

BAD = ["*", "a\x00b", "line\nbreak"]


def calls(p: Platform, appid: str, user: str) -> dict[str, Any]:
    return {
        "fetch now (periodic)": p.background.fetch_now(appid, user, "periodic"),
        "fetch now (pre)": p.background.fetch_now(appid, user, "pre"),
        "push": p.background.push(appid, user),
        "clear": p.background.clear(appid, user),
        "tester": p.apps.set_tester(appid, user, True, "ops"),
        "live test": p.analytics.start_test(appid, user, "ops"),
        "refresh": p.refresh.start(appid, {"users": ["u1", user]}),
    }


@pytest.mark.parametrize("user", BAD)
async def test_a_user_id_no_runtime_can_have_is_refused_before_anything_is_sent(
    platform: Platform, user: str
) -> None:
    app = await platform.apps.create("shop", "ops")
    for what, call in calls(platform, app.appid, user).items():
        with pytest.raises(InvalidInput) as refused:
            await call
        assert "reserved" in refused.value.message or "printable" in refused.value.message, what
    assert await platform.apps.testers(app.appid) == {"appid": app.appid, "testers": []}


async def test_a_tester_an_earlier_version_took_can_still_be_removed(platform: Platform) -> None:
    app = await platform.apps.create("shop", "ops")
    for legacy in ("*", "tab\there"):
        await platform.db.write(
            platform.apps.registry.set_tester, app.appid, legacy, True, 0.0, "old-version"
        )
        assert (await platform.apps.set_tester(app.appid, legacy, False, "ops"))["changed"]
    assert (await platform.apps.testers(app.appid))["testers"] == []


@pytest.mark.postgres
async def test_a_nul_that_reaches_postgresql_is_invalid_input_not_a_500(
    pg_platform: Platform,
) -> None:
    """Whatever no input check knows of: PostgreSQL's driver refuses the NUL character in
    any text value; that is the client's input (SQLite stores it)."""
    app = await pg_platform.apps.create("shop", "ops")
    with pytest.raises(InvalidInput, match="NUL character"):
        await pg_platform.refresh.progress(app.appid, "rf_\x00x")
    with pytest.raises(InvalidInput, match="NUL character"):
        await pg_platform.analytics.forget_user(app.appid, "a\x00b", "ops")
