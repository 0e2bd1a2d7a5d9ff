"""Built-in events switched per app over the real HTTP APIs, on SQLite and on PostgreSQL: on by
default, served in the runtime's configuration, refused one by one (the rest of the batch kept)
while off, set by developers only, audited, and each kind of bad input has a clear error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from miniport.storage.members import MemberStore
from tests.conftest import make_settings, running_server
from tests.support.analytics_api import PURCHASE, Api, OpenApi, now_ms

REASON = "built-in event {} refused: built-in events are switched off for this app"


@pytest.fixture
async def api(tmp_path: Path, db: dict[str, Any], open_api: OpenApi) -> AsyncIterator[Api]:
    async with running_server(make_settings(tmp_path, **db)) as server:
        a = await open_api(server, None)
        await a.define(PURCHASE, publish=True)
        yield a


def visit(tag: str) -> dict[str, Any]:
    """A batch of two built-in events around a custom one."""
    now = now_ms()
    return {
        "sent_at": now,
        "events": [
            {"id": f"{tag}-l", "event": "$launch", "data": {"cold": True}, "ts": now},
            {"id": f"{tag}-b", "event": "purchase", "data": {"price": 3}, "ts": now},
            {"id": f"{tag}-v", "event": "$pageview", "data": {"path": "p/i"}, "ts": now},
        ],
    }


async def test_on_by_default_and_served_to_runtimes(api: Api) -> None:
    assert await api.ok("GET", "/builtin-events") == {"appid": api.appid, "builtin_events": True}
    assert (await api.config("u1"))["builtin_events"] is True
    assert await api.report("u1", visit("a")) == {"accepted": 3, "duplicates": 0, "rejected": []}


async def test_off_refuses_built_in_events_and_keeps_the_rest(api: Api) -> None:
    done = await api.ok("PUT", "/builtin-events", {"builtin_events": False})
    assert done == {"appid": api.appid, "builtin_events": False, "changed": True}
    assert (await api.config("u1"))["builtin_events"] is False
    answer = await api.report("u1", visit("b"))
    assert answer["accepted"] == 1  # the purchase
    assert answer["rejected"] == [
        {"index": 0, "id": "b-l", "reason": REASON.format("$launch"), "code": "builtin_off"},
        {"index": 2, "id": "b-v", "reason": REASON.format("$pageview"), "code": "builtin_off"},
    ]
    assert (await api.count("purchase"), await api.count("$launch")) == (1, 0)
    # a tester's configuration follows the app's switch too
    await api.ok("POST", "/tests", {"user_id": "dev1"})
    tested = await api.config("dev1")
    assert tested["test_id"] and tested["builtin_events"] is False
    # on again: taken again, and saying "on" twice changes nothing
    again = await api.ok("PUT", "/builtin-events", {"builtin_events": True})
    assert again["changed"] is True
    assert (await api.ok("PUT", "/builtin-events", {"builtin_events": True}))["changed"] is False
    assert (await api.config("u1"))["builtin_events"] is True
    assert (await api.report("u1", visit("c")))["rejected"] == []
    assert await api.count("$launch") == 1


async def test_switching_is_audited(api: Api) -> None:
    await api.ok("PUT", "/builtin-events", {"builtin_events": False})
    p = api.platform
    rows = await p.db.read(p.registry.list_audit, api.appid, action="analytics.builtin_events")
    assert len(rows) == 1
    assert rows[0].detail == {"builtin_events": False} and rows[0].actor != ""


async def as_role(api: Api, role: str) -> dict[str, str]:
    p = api.platform
    key = (await p.auth.create_key("api", f"k-{role}", role))["key"]
    await p.db.write(MemberStore(p.db).put, api.appid, f"key:k-{role}", role, 0.0, "test")
    return {"Authorization": f"Bearer {key}"}


async def test_viewers_see_the_switch_but_only_developers_turn_it(api: Api) -> None:
    url = f"{api.url}/admin/v1/apps/{api.appid}/analytics/builtin-events"
    viewer = await as_role(api, "viewer")
    async with api.session.get(url, headers=viewer) as resp:
        assert resp.status == 200 and (await resp.json())["builtin_events"] is True
    async with api.session.put(url, json={"builtin_events": False}, headers=viewer) as resp:
        assert resp.status == 403
    developer = await as_role(api, "developer")
    async with api.session.put(url, json={"builtin_events": False}, headers=developer) as resp:
        assert resp.status == 200
    assert (await api.config("u1"))["builtin_events"] is False


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"builtin_events": "off"}, "Input should be a valid boolean"),
        ({"builtin_events": 0}, "Input should be a valid boolean"),
        ({}, "Field required"),
    ],
)
async def test_bad_input_has_a_clear_error(api: Api, body: Any, says: str) -> None:
    status, answer = await api.call("PUT", "/builtin-events", body)
    assert status == 422 and says in answer["message"], answer
    assert (await api.config("u1"))["builtin_events"] is True


async def test_an_unknown_app_is_not_found(api: Api) -> None:
    other = Api(api.url, api.platform, api.admin_key, "wxnope", api.session)
    status, answer = await other.call("PUT", "/builtin-events", {"builtin_events": False})
    assert status == 404, answer
