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
