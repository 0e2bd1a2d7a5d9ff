"""`miniport key rotate`: a new server key; sealed rows are re-sealed with it, runtime tokens and
login codes of the previous key stay valid, openids never change, and two rotations later the
first key opens nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from miniport.clock import FakeClock
from miniport.domain.sealing import unseal
from miniport.errors import Unauthorized
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
