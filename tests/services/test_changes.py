"""Data-URL changes: only a confirmed change alters a URL, a code works once and expires, and
the audit log has every step."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from miniport.clock import FakeClock
from miniport.errors import (
    ChangeNotConfirmable,
    Conflict,
    Forbidden,
    InvalidInput,
    InvalidURL,
    NotFound,
)
from miniport.platform import Platform
from tests.conftest import LiveServer

Make = Callable[..., Awaitable[Platform]]
URL1 = "https://dev.example/pre?v=1"
URL2 = "https://dev.example/pre?v=2"


async def urls(p: Platform, appid: str) -> dict[str, dict[str, object]]:
    return (await p.apps.settings(appid))["urls"]  # type: ignore[no-any-return]


async def test_a_change_takes_effect_only_when_confirmed(
    platforms: Make, fake_clock: FakeClock,
) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "dev1")
    assert (await urls(p, app.appid))["pre"]["url"] is None

    pending = await p.apps.request_change(app.appid, "pre", "set", URL1, "dev1")
    shown = pending.as_dict()
    assert set(shown) >= {"change_id", "confirm_code", "confirm_url"}
    assert shown["confirm_url"] == f"{p.public_url}/confirm/{pending.code}"
    assert len(pending.code) == 10
    assert (await urls(p, app.appid))["pre"] == {"url": None, "enabled": False,
                                                 "updated_at": app.created_at,
                                                 "grey_url": None, "grey_ratio": 0}
    settings = await p.apps.settings(app.appid)
    assert [c["id"] for c in settings["pending"]] == [pending.change.id]

    applied = await p.apps.confirm(pending.code, "admin1")
    assert applied.status == "applied" and applied.decided_by == "admin1"
    assert (await urls(p, app.appid))["pre"]["url"] == URL1
    assert (await urls(p, app.appid))["pre"]["enabled"] is True
    assert (await urls(p, app.appid))["periodic"]["url"] is None
    assert (await p.apps.settings(app.appid))["pending"] == []


async def test_a_confirmation_code_works_once(platforms: Make, fake_clock: FakeClock) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "dev1")
    pending = await p.apps.request_change(app.appid, "pre", "set", URL1, "dev1")
    await p.apps.confirm(pending.code.lower(), "admin1")  # typed by hand: case does not matter
    with pytest.raises(ChangeNotConfirmable, match="already applied"):
        await p.apps.confirm(pending.code, "admin2")


async def test_a_confirmation_code_expires(platforms: Make, fake_clock: FakeClock) -> None:
    p = await platforms(clock=fake_clock, change_ttl_s=600)
    app = await p.apps.create("shop", "dev1")
    late = await p.apps.request_change(app.appid, "pre", "set", URL1, "dev1")
    fake_clock.advance(600)
    on_time = await p.apps.request_change(app.appid, "periodic", "set", URL2, "dev1")
    fake_clock.advance(1)
    with pytest.raises(ChangeNotConfirmable, match="expired"):
        await p.apps.confirm(late.code, "admin1")
    assert (await urls(p, app.appid))["pre"]["url"] is None
    assert (await p.apps.settings(app.appid))["pending"][0]["id"] == on_time.change.id
    await p.apps.confirm(on_time.code, "admin1")
    assert (await urls(p, app.appid))["periodic"]["url"] == URL2


async def test_an_unknown_code_is_refused(platforms: Make) -> None:
    p = await platforms()
    with pytest.raises(ChangeNotConfirmable, match="unknown confirmation code"):
        await p.apps.confirm("ABCDEFGHJK", "admin1")


async def test_a_newer_request_supersedes_the_pending_one(platforms: Make) -> None:
    p = await platforms()
    app = await p.apps.create("shop", "dev1")
    first = await p.apps.request_change(app.appid, "pre", "set", URL1, "dev1")
    second = await p.apps.request_change(app.appid, "pre", "set", URL2, "dev1")
    with pytest.raises(ChangeNotConfirmable, match="superseded"):
        await p.apps.confirm(first.code, "admin1")
    await p.apps.confirm(second.code, "admin1")
    assert (await urls(p, app.appid))["pre"]["url"] == URL2


async def test_replace_enable_and_disable_are_changes_too(platforms: Make) -> None:
    p = await platforms()
    app = await p.apps.create("shop", "dev1")
    with pytest.raises(Conflict, match="no pre URL is set"):
        enable = await p.apps.request_change(app.appid, "pre", "enable", None, "dev1")
        await p.apps.confirm(enable.code, "admin1")
    first = await p.apps.request_change(app.appid, "pre", "set", URL1, "d")
    await p.apps.confirm(first.code, "a")

    disable = await p.apps.request_change(app.appid, "pre", "disable", None, "dev1")
    assert (await urls(p, app.appid))["pre"]["enabled"] is True
    await p.apps.confirm(disable.code, "admin1")
    assert (await urls(p, app.appid))["pre"] == {**(await urls(p, app.appid))["pre"],
                                                 "url": URL1, "enabled": False}

    replace = await p.apps.request_change(app.appid, "pre", "set", URL2, "dev1")
    assert (await urls(p, app.appid))["pre"]["url"] == URL1
    await p.apps.confirm(replace.code, "admin1")
    assert (await urls(p, app.appid))["pre"]["url"] == URL2
    assert (await urls(p, app.appid))["pre"]["enabled"] is True

    enable = await p.apps.request_change(app.appid, "pre", "disable", None, "dev1")
    await p.apps.confirm(enable.code, "admin1")
    enable = await p.apps.request_change(app.appid, "pre", "enable", None, "dev1")
    await p.apps.confirm(enable.code, "admin1")
    assert (await urls(p, app.appid))["pre"] == {**(await urls(p, app.appid))["pre"],
                                                 "url": URL2, "enabled": True}


async def test_the_audit_log_has_every_step(platforms: Make, fake_clock: FakeClock) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "dev1")
    fake_clock.advance(5)
    pending = await p.apps.request_change(app.appid, "periodic", "set", URL1, "dev1")
    fake_clock.advance(5)
    await p.apps.confirm(pending.code, "admin1")
    fake_clock.advance(5)
    off = await p.apps.request_change(app.appid, "periodic", "disable", None, "dev2")
    with pytest.raises(ChangeNotConfirmable):
        await p.apps.confirm("WRONGCODE2", "admin1")
    fake_clock.advance(5)
    await p.apps.confirm(off.code, "admin2")

    entries = list(reversed(await p.db.read(p.registry.list_audit, app.appid)))
    steps = [(e.actor, e.action, e.detail.get("op"), e.detail.get("url")) for e in entries]
    assert steps == [
        ("dev1", "app.create", None, None),
        ("dev1", "change.request", "set", URL1),
        ("admin1", "change.confirm", "set", URL1),
        ("dev2", "change.request", "disable", None),
        ("admin2", "change.confirm", "disable", None),
    ]
    assert [e.ts - app.created_at for e in entries] == [0, 5, 10, 15, 20]
    assert entries[1].detail["change_id"] == pending.change.id == entries[2].detail["change_id"]


async def test_invalid_change_requests(platforms: Make) -> None:
    p = await platforms(dev=False)
    app = await p.apps.create("shop", "dev1")
    with pytest.raises(InvalidURL, match="must use https"):
        await p.apps.request_change(app.appid, "pre", "set", "http://127.0.0.1:8000/", "d")
    with pytest.raises(InvalidURL, match="empty"):
        await p.apps.request_change(app.appid, "pre", "set", None, "d")
    with pytest.raises(InvalidInput, match="kind must be periodic or pre"):
        await p.apps.request_change(app.appid, "daily", "set", URL1, "d")
    with pytest.raises(InvalidInput, match="op must be one of"):
        await p.apps.request_change(app.appid, "pre", "delete", None, "d")
    with pytest.raises(NotFound):
        await p.apps.request_change("nope", "pre", "set", URL1, "d")
    assert await p.db.read(p.registry.list_changes, app.appid) == []


async def test_opening_the_confirmation_link_alone_does_not_apply_it(
    live_server: LiveServer,
) -> None:
    """The QR code's link leads an admin to confirm (the console signs them in first); a GET
    of the link by itself never changes a URL."""
    p = live_server.platform
    app = await p.apps.create("shop", "dev1")
    pending = await p.apps.request_change(app.appid, "pre", "set", URL1, "dev1")
    assert pending.confirm_url.startswith(live_server.url + "/confirm/")
    async with aiohttp.ClientSession() as s:
        r = await s.get(pending.confirm_url, allow_redirects=False)
        assert r.status in (200, 302, 303, 307)
    assert (await urls(p, app.appid))["pre"]["url"] is None
    assert (await p.apps.settings(app.appid))["pending"][0]["id"] == pending.change.id


async def test_an_admin_confirms_or_rejects_by_id_once_and_it_is_audited(platforms: Make) -> None:
    p = await platforms()
    app = await p.apps.create("shop", "dev1")
    first = await p.apps.request_change(app.appid, "pre", "set", URL1, "key:local-cli")
    await p.apps.confirm_by_id(first.change.id, "boss")
    assert (await urls(p, app.appid))["pre"]["url"] == URL1
    second = await p.apps.request_change(app.appid, "pre", "set", URL2, "key:local-cli")
    rejected = await p.apps.reject(second.change.id, "boss")
    assert (rejected.status, rejected.decided_by) == ("rejected", "boss")
    assert (await urls(p, app.appid))["pre"]["url"] == URL1
    with pytest.raises(ChangeNotConfirmable, match="already rejected"):
        await p.apps.confirm(second.code, "boss")
    with pytest.raises(ChangeNotConfirmable, match="already rejected"):
        await p.apps.reject(second.change.id, "boss")
    with pytest.raises(NotFound):
        await p.apps.reject("chg_nope", "boss")
    actions = [e.action for e in await p.db.read(p.registry.list_audit, app.appid)]
    assert actions[:2] == ["change.reject", "change.request"]


async def test_the_two_person_rule_refuses_confirming_ones_own_request(platforms: Make) -> None:
    p = await platforms(two_person_rule=True)
    app = await p.apps.create("shop", "dev1")
    pending = await p.apps.request_change(app.appid, "pre", "set", URL1, "alice")
    for confirm in (lambda: p.apps.confirm(pending.code, "alice"),
                    lambda: p.apps.confirm_by_id(pending.change.id, "alice")):
        with pytest.raises(Forbidden, match="two-person rule"):
            await confirm()
    assert (await urls(p, app.appid))["pre"]["url"] is None  # nothing applied, still pending
    await p.apps.confirm(pending.code, "bob")
    assert (await urls(p, app.appid))["pre"]["url"] == URL1
