"""The background-data features' SQL on the real PostgreSQL: rescheduling after an interval
change, an app's active-days window, refreshes, alert windows and state, version storage and
the pre-fetch effectiveness report."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import select

from miniport.clock import FakeClock
from miniport.domain.requests import Launch
from miniport.platform import Platform
from miniport.storage import schema as t
from tests.conftest import confirm_url
from tests.support.platforms import Counter, eventually, run

Make = Callable[..., Awaitable[Platform]]
H = 3600.0


@pytest.mark.postgres
async def test_background_features_on_postgres(
    pg_url: str, platforms: Make, fake_clock: FakeClock, counter: Counter
) -> None:
    p = await platforms(clock=fake_clock, database_url=pg_url)
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "periodic", counter.url + "/periodic")
    await confirm_url(p, app.appid, "pre", counter.url + "/pre")
    users = [f"u{i}" for i in range(6)]
    for user in users:
        await p.background.launch(app.appid, user, Launch("pages/a", version="1.0",
                                                          env_version="release", platform="ios"))
        await p.background.get_data(app.appid, user, "pre", wait_ms=5000)
        await p.background.set_token(app.appid, user, user)
        assert await run(p) == 1
        fake_clock.advance(131)

    async def versions_stored() -> bool:
        with p.db.reading() as conn:
            found = {r[0] for r in conn.execute(select(t.app_users.c.version))}
        return found == {"1.0"}

    await eventually(versions_stored)
    report = await p.background.prefetch_report(app.appid)
    assert [(r["launches"], r["platform"]) for r in report["rows"]] == [(6, "ios")]

    fake_clock.advance(3 * H)
    await p.apps.update_fetch_settings(app.appid, {"interval": "1h", "active_days": 1}, "dev")
    now = fake_clock.now()
    with p.db.reading() as conn:
        due = [r[0] for r in conn.execute(select(t.app_users.c.next_due_at))]
    assert all(now <= d < now + H for d in due) and len(set(due)) == len(users)

    started = await p.refresh.start(app.appid, {"all": True})
    assert started["users"] == len(users)
    cancelled = await p.refresh.cancel(app.appid, started["refresh_id"])
    assert cancelled["state"] == "cancelled"
    second = await p.refresh.start(app.appid, {"users": users[:2]})
    assert await run(p) >= 2
    assert (await p.refresh.progress(app.appid, second["refresh_id"]))["state"] == "done"

    counter.status = 503
    await p.alerts.configure(app.appid, {"min_fetches": 3})
    await p.refresh.start(app.appid, {"all": True})
    assert await run(p) == len(users)
    assert await p.alerts.check() == 1
    assert await p.alerts.check() == 0
    assert (await p.alerts.shown(app.appid))["states"] == {"periodic": True}

    fake_clock.advance(25 * H)  # outside the app's 1-day window: the claim parks them
    assert await run(p) == 0
    with p.db.reading() as conn:
        due = [r[0] for r in conn.execute(select(t.app_users.c.next_due_at))]
    assert due == [None] * len(users)
