"""Per-app fetch settings: the interval drives the schedule and a change reschedules without a
burst, the app's headers reach the developer's server but are stored sealed and shown masked,
the active-days window parks the app's idle users, bad input is refused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import select

from miniport.clock import FakeClock
from miniport.domain.requests import Launch
from miniport.errors import InvalidInput
from miniport.platform import Platform
from miniport.storage import schema as t
from tests.conftest import confirm_url
from tests.support.platforms import Counter, eventually, run

Make = Callable[..., Awaitable[Platform]]
H = 3600.0
KEY = "sk-live-0123456789abcdef"


async def test_interval_headers_and_timeout(
    platforms: Make, fake_clock: FakeClock, counter: Counter
) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "periodic", counter.url + "/periodic")
    shown = await p.apps.update_fetch_settings(
        app.appid, {"interval": "6h", "timeout": "5s", "headers": [f"X-Api-Key: {KEY}"]}, "dev"
    )
    assert shown["interval_s"] == 6 * H and shown["timeout_s"] == 5
    assert shown["headers"] == {"X-Api-Key": "sk…ef"}
    with p.db.reading() as conn:
        sealed = conn.execute(select(t.app_settings.c.headers)).scalar_one()
    assert KEY not in sealed and sealed.startswith("v1:")

    await p.background.launch(app.appid, "alice", Launch())
    await p.background.set_token(app.appid, "alice", "tok")
    assert await run(p) == 1
    assert counter.requests[-1].headers["X-Api-Key"] == KEY
    fake_clock.advance(6 * H - 1)
    assert await run(p) == 0
    fake_clock.advance(1)
    assert await run(p) == 1  # due 6 h after the success, not the platform's 12 h

    devtools = await p.background.fetch_now(app.appid, "alice", "periodic")
    assert devtools["request"]["headers"]["X-Api-Key"] == "sk…ef"
    assert counter.requests[-1].headers["X-Api-Key"] == KEY
    log = await p.background.log(app.appid)
    audit = await p.db.read(p.registry.list_audit, app.appid)
    assert KEY not in repr(log) and KEY not in repr(audit) and KEY not in repr(devtools)
    assert (await p.apps.fetch_settings(app.appid))["headers"] == {"X-Api-Key": "sk…ef"}

    cleared = await p.apps.update_fetch_settings(app.appid, {"clear_headers": True}, "dev")
    assert cleared["headers"] == {} and cleared["interval_s"] == 6 * H  # the rest is kept
    await p.background.fetch_now(app.appid, "alice", "periodic")
    assert "X-Api-Key" not in counter.requests[-1].headers


async def test_a_shorter_interval_reschedules_without_a_burst(
    platforms: Make, fake_clock: FakeClock, counter: Counter
) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "periodic", counter.url + "/periodic")
    users = [f"u{i}" for i in range(30)]
    for user in users:  # successes 97 s apart
        await p.background.launch(app.appid, user, Launch())
        await p.background.set_token(app.appid, user, user)
        assert await run(p) == 1
        fake_clock.advance(97)
    fake_clock.advance(3 * H)
    await p.apps.update_fetch_settings(app.appid, {"interval": "1h"}, "dev")
    now = fake_clock.now()
    with p.db.reading() as conn:
        due = [r[0] for r in conn.execute(select(t.app_users.c.next_due_at))]
    assert all(now <= d < now + H for d in due)  # all overdue: spread over the next hour
    assert len(set(due)) > 20  # not all at once
    first = await run(p)
    assert first < 3  # no burst right after the change
    fake_clock.advance(H - 1)
    assert first + await run(p) == len(users)  # every user within the hour


async def test_the_apps_active_days_window_parks_idle_users(
    platforms: Make, fake_clock: FakeClock, counter: Counter
) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "periodic", counter.url + "/periodic")
    await p.background.launch(app.appid, "idle", Launch())
    await p.background.set_token(app.appid, "idle", "tok")
    assert await run(p) == 1
    await p.apps.update_fetch_settings(app.appid, {"active_days": 1}, "dev")
    fake_clock.advance(25 * H)  # outside the app's 1-day window: the claim parks the pair
    assert await run(p) == 0
    user = await p.db.read(p.fetches.get_user, app.appid, "idle")
    assert user is not None and user["next_due_at"] is None


@pytest.mark.parametrize(
    "changes",
    [
        {"interval": "30m"},
        {"interval": "25h"},
        {"interval": "soon"},
        {"timeout": "60s"},
        {"active_days": 0},
        {"active_days": 8},
        {"headers": ["Host: evil.example"]},
        {"headers": ["X-Api-Key"]},
        {"headers": [f"X-{i}: v" for i in range(11)]},
    ],
)
async def test_bad_settings_are_refused_and_change_nothing(
    changes: dict[str, object], platforms: Make, fake_clock: FakeClock
) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "dev")
    await p.apps.update_fetch_settings(app.appid, {"interval": "2h", "headers": ["X-K: v"]}, "dev")
    with pytest.raises(InvalidInput):
        await p.apps.update_fetch_settings(app.appid, changes, "dev")
    shown = await p.apps.fetch_settings(app.appid)
    assert shown["interval_s"] == 2 * H and shown["headers"] == {"X-K": "…"}


async def test_requests_carry_the_version_of_the_users_last_launch(
    platforms: Make, fake_clock: FakeClock, counter: Counter
) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "periodic", counter.url + "/periodic")
    await confirm_url(p, app.appid, "pre", counter.url + "/pre")
    launch = Launch("pages/a", version="2.1.0", env_version="trial")
    await p.background.launch(app.appid, "alice", launch)
    await p.background.get_data(app.appid, "alice", "pre", wait_ms=5000)
    assert (counter.requests[-1].query["version"], counter.requests[-1].query["envVersion"]) == (
        "2.1.0",
        "trial",
    )

    async def stored() -> bool:
        user = await p.db.read(p.fetches.get_user, app.appid, "alice")
        return bool(user and user["version"] == "2.1.0")

    await eventually(stored)
    await p.background.set_token(app.appid, "alice", "tok")
    assert await run(p) == 1
    sent = counter.requests[-1]
    assert sent.path == "/periodic"
    assert (sent.query["version"], sent.query["envVersion"]) == ("2.1.0", "trial")
    # a launch that does not say its version leaves the stored one
    await p.background.launch(app.appid, "alice", Launch("pages/a"))
    shown = await p.background.fetch_now(app.appid, "alice", "periodic")
    assert "version=2.1.0&envVersion=trial" in shown["request"]["url"]
