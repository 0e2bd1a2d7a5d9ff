"""A call made again after it failed half-way (its change committed, what follows it not)
finishes the work, and input PostgreSQL refuses (a NUL) is answered in the API's own shape."""

from __future__ import annotations

from typing import Any

import pytest

from miniport.errors import StateUnavailable
from miniport.platform import Platform


async def test_builtin_events_switched_again_reach_the_runtimes(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The switch was committed, its push failed: made again it changed nothing, so pushed
    nothing, and connected runtimes kept sending built-in events the server refused."""
    p = platform
    app = await p.apps.create("shop", "ops")
    device = p.broker.subscribe("alice", "phone", appid=app.appid)
    real = p.analytics._push_configs

    async def away(*args: Any) -> None:
        raise StateUnavailable("the state database cannot be reached right now; try again")

    monkeypatch.setattr(p.analytics, "_push_configs", away)
    with pytest.raises(StateUnavailable):
        await p.analytics.set_builtin_events(app.appid, False, "ops")
    monkeypatch.setattr(p.analytics, "_push_configs", real)
    assert (await p.analytics.set_builtin_events(app.appid, False, "ops"))["changed"] is False
    pushed = [m for m in device.take() if m.get("type") == "analyticsConfig"]
    assert pushed and pushed[-1]["config"]["builtin_events"] is False


@pytest.mark.postgres
async def test_a_nul_in_an_appid_is_an_unknown_app_to_the_wechat_apis(
    pg_platform: Platform,
) -> None:
    """PostgreSQL refuses the NUL (a 422 in Miniport's shape): WeChat's APIs answer 40013."""
    p = pg_platform
    answer = await p.auth.jscode2session("wx\x00x", "secret", "code", "authorization_code")
    assert answer["errcode"] == 40013
    token = await p.wechat.token("client_credential", "wx\x00x", "secret")
    assert token["errcode"] == 40013
