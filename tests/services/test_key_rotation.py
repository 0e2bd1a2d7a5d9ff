"""`miniport key rotate`: a new server key; sealed rows are re-sealed with it, runtime tokens and
login codes of the previous key stay valid, openids never change, and two rotations later the
first key opens nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from miniport.clock import FakeClock
from miniport.domain.sealed import HeaderSealer
from miniport.domain.sealing import unseal
from miniport.errors import InvalidInput, Unauthorized
from miniport.platform import Platform
from miniport.storage.shared_state import SharedStateStore
from miniport.web.console.qr_codes import PURPOSE, SharedQRCodes
from tests.acceptance.test_cli import ok

Make = Callable[..., Awaitable[Platform]]


async def test_rotation_reseals_keeps_openids_and_accepts_the_previous_key(
    platforms: Make, fake_clock: FakeClock,
) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "test")
    old_key, openid = p.auth.key, p.auth.openid(app.appid, "alice")
    token = p.auth.runtime_token("alice")
    code = p.auth.login_code(app.appid, "alice")
    pending = await p.apps.request_change(app.appid, "pre", "set", "https://dev.example/p", "t")
    await SharedQRCodes(p).remember(pending)
    await p.close()

    rotated = await ok("key", "rotate", data_dir=p.settings.data_dir)
    assert rotated == {"rotated": True, "resealed": 1, "unreadable": 0}

    q = await platforms(clock=fake_clock)  # a restarted server
    assert q.auth.key != old_key
    assert q.auth.openid(app.appid, "alice") == openid
    assert q.auth.identify(token).user_id == "alice"
    exchanged = await q.auth.jscode2session(app.appid, app.secret, code, "authorization_code")
    assert exchanged["openid"] == openid
    assert await SharedQRCodes(q).get(pending.change.id, fake_clock.now()) == (
        pending.code, pending.confirm_url)
    stored = await q.db.read(SharedStateStore(q.db).get_code, pending.change.id, fake_clock.now())
    assert stored is not None
    assert unseal(old_key, PURPOSE, stored) is None and unseal(q.auth.key, PURPOSE, stored)
    audit = await q.db.read(q.registry.list_audit, None, 1)
    assert audit[0].action == "server_key.rotate"
    await q.close()

    await ok("key", "rotate", data_dir=p.settings.data_dir)
    r = await platforms(clock=fake_clock)
    with pytest.raises(Unauthorized, match="invalid runtime token"):
        r.auth.identify(token)  # two rotations ago
    assert r.auth.openid(app.appid, "alice") == openid


async def test_rotation_keeps_the_apps_request_headers_readable(
    platforms: Make, fake_clock: FakeClock,
) -> None:
    """An app's request headers are sealed with the server key. After a rotation both a
    restarted server and one still running on the old key read them (they stay sealed with
    the old key, which is the new previous one); the next rotation moves them on to the key of
    the one before, so a server restarted after it still reads them."""
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "test")
    other = await p.apps.create("plain", "test")  # no headers: nothing to re-seal
    await p.apps.update_fetch_settings(app.appid, {"headers": ["X-Api-Key: k-123"]}, "test")
    first_key = p.auth.key
    await p.close()

    rotated = await ok("key", "rotate", data_dir=p.settings.data_dir)
    assert rotated == {"rotated": True, "resealed": 0, "unreadable": 0}

    q = await platforms(clock=fake_clock)  # a restarted server
    shown = await q.apps.fetch_settings(app.appid)
    assert list(shown["headers"]) == ["X-Api-Key"] and "k-123" not in str(shown)
    assert (await q.apps.fetch_settings(other.appid))["headers"] == {}
    row = await q.db.read(q.registry.fetch_settings, app.appid)
    assert row is not None
    assert q.apps.sealer.open(row["headers"]) == {"X-Api-Key": "k-123"}
    # a server not restarted yet holds only the first key: it still opens them
    assert HeaderSealer(first_key).open(row["headers"]) == {"X-Api-Key": "k-123"}
    second_key = q.auth.key
    await q.close()

    rotated = await ok("key", "rotate", data_dir=p.settings.data_dir)
    assert rotated == {"rotated": True, "resealed": 1, "unreadable": 0}
    r = await platforms(clock=fake_clock)  # restarted after the second rotation
    row = await r.db.read(r.registry.fetch_settings, app.appid)
    assert row is not None and r.apps.sealer.open(row["headers"]) == {"X-Api-Key": "k-123"}
    assert HeaderSealer(second_key).open(row["headers"]) == {"X-Api-Key": "k-123"}
    with pytest.raises(InvalidInput, match="does not open"):
        HeaderSealer(first_key).open(row["headers"])  # two rotations ago
    with pytest.raises(InvalidInput, match="does not open"):
        r.apps.sealer.open(HeaderSealer(b"k" * 32).seal({"X-Api-Key": "k-789"}))
    # the rotation's audit says how many values it re-sealed, never their values
    audit = await r.db.read(r.registry.list_audit, None, 1)
    assert audit[0].action == "server_key.rotate" and "k-123" not in str(audit[0])
    await r.close()


async def test_rotation_keeps_headers_changed_while_it_ran(platforms: Make) -> None:
    """Re-sealing replaces an app's headers only if they are still what it read: headers a
    running server saved meanwhile (say, replacing a leaked key) are not put back."""
    p = await platforms()
    app = await p.apps.create("shop", "test")
    await p.apps.update_fetch_settings(app.appid, {"headers": ["X-Api-Key: old"]}, "test")
    row = await p.db.read(p.registry.fetch_settings, app.appid)
    assert row is not None
    await p.apps.update_fetch_settings(app.appid, {"headers": ["X-Api-Key: new"]}, "test")
    stale = HeaderSealer(b"s" * 32).seal({"X-Api-Key": "old"})
    assert await p.db.write(p.registry.reseal_headers, [(app.appid, row["headers"], stale)]) == 0
    now = await p.db.read(p.registry.fetch_settings, app.appid)
    assert now is not None and p.apps.sealer.open(now["headers"]) == {"X-Api-Key": "new"}
    await p.close()


async def test_a_code_sealed_with_the_previous_key_is_carried_to_the_new_one(
    platforms: Make, fake_clock: FakeClock
) -> None:
    """A server not yet restarted after a rotation still seals confirmation codes with the
    previous key; the next rotation re-sealed only codes that opened with the current key, so
    that pending change's QR code could no longer be shown by any restarted server."""
    from miniport.services.keys import rotate_server_key

    p0 = await platforms(clock=fake_clock)  # running on the first key
    app = await p0.apps.create("shop", "test")
    await rotate_server_key(p0.db, p0.registry, fake_clock, "cli")
    pending = await p0.apps.request_change(app.appid, "pre", "set", "https://dev.example/p", "t")
    await SharedQRCodes(p0).remember(pending)  # sealed with the (now previous) first key
    p1 = await platforms(clock=fake_clock)  # restarted after the first rotation
    rotated = await rotate_server_key(p1.db, p1.registry, fake_clock, "cli")
    assert rotated["unreadable"] == 0 and rotated["resealed"] == 1
    p2 = await platforms(clock=fake_clock)  # restarted after the second
    assert await SharedQRCodes(p2).get(pending.change.id, fake_clock.now()) is not None


async def test_headers_no_key_opens_can_be_cleared_and_are_shown_as_such(
    platforms: Make, fake_clock: FakeClock
) -> None:
    """Headers sealed with a key older than the ring (what a rotation counts as unreadable)
    were opened before every change, so they could neither be cleared nor replaced, and the
    settings page failed."""
    from sqlalchemy import update

    from miniport.storage import schema as t

    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "test")
    await p.apps.update_fetch_settings(app.appid, {"headers": ["X-Api-Key: k"]}, "t")
    stale = HeaderSealer(b"o" * 32).seal({"X-Api-Key": "k"})

    def put() -> None:
        with p.db.writing() as conn:
            conn.execute(update(t.app_settings).values(headers=stale))

    await p.db.write(put)
    shown = await p.apps.fetch_settings(app.appid)
    assert shown["headers"] == {} and shown["headers_unreadable"] is True
    with pytest.raises(InvalidInput, match="send clear_headers"):
        await p.apps.update_fetch_settings(app.appid, {"headers": ["X-Api-Key: new"]}, "t")
    replaced = await p.apps.update_fetch_settings(
        app.appid, {"clear_headers": True, "headers": ["X-Api-Key: fresh"]}, "t"
    )
    assert list(replaced["headers"]) == ["X-Api-Key"]
    assert "headers_unreadable" not in await p.apps.fetch_settings(app.appid)
