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
    """An app's request headers are sealed with the server key: a rotation re-seals them with
    the new key (a restarted server reads them and sends them), and a header value a
    not-yet-restarted server sealed with the old key after the rotation still opens."""
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "test")
    other = await p.apps.create("plain", "test")  # no headers: nothing to re-seal
    await p.apps.update_fetch_settings(app.appid, {"headers": ["X-Api-Key: k-123"]}, "test")
    await p.close()

    rotated = await ok("key", "rotate", data_dir=p.settings.data_dir)
    assert rotated == {"rotated": True, "resealed": 1, "unreadable": 0}

    q = await platforms(clock=fake_clock)  # a restarted server
    shown = await q.apps.fetch_settings(app.appid)
    assert list(shown["headers"]) == ["X-Api-Key"] and "k-123" not in str(shown)
    assert (await q.apps.fetch_settings(other.appid))["headers"] == {}
    row = await q.db.read(q.registry.fetch_settings, app.appid)
    assert row is not None
    assert q.apps.sealer.open(row["headers"]) == {"X-Api-Key": "k-123"}
    # the rotation's audit says how many apps' headers it re-sealed, never their values
    audit = await q.db.read(q.registry.list_audit, None, 1)
    assert audit[0].action == "server_key.rotate" and "k-123" not in str(audit[0])
    await q.close()

    # a server still running on the old key (not restarted) stores headers sealed with it...
    stale = HeaderSealer(p.auth.key).seal({"X-Api-Key": "k-456"})
    r = await platforms(clock=fake_clock)
    await r.db.write(r.registry.reseal_headers, [(app.appid, stale)])
    # ...which the new key's server still reads (and a key it never had is refused)
    row = await r.db.read(r.registry.fetch_settings, app.appid)
    assert row is not None and r.apps.sealer.open(row["headers"]) == {"X-Api-Key": "k-456"}
    with pytest.raises(InvalidInput, match="does not open"):
        r.apps.sealer.open(HeaderSealer(b"k" * 32).seal({"X-Api-Key": "k-789"}))
    await r.close()
