"""Rotating the server key: a new key signs and seals from then on; the previous key is kept to
check what it signed (runtime tokens, till they expire); pending confirmation codes are
re-sealed with the new key, and apps' request headers with the key every server can open during
the restarts (see ``_resealed_headers``). Openids never change. Running servers pick the new key
up when restarted."""

from __future__ import annotations

from typing import Any

from ..clock import Clock
from ..domain.sealed import HeaderSealer
from ..domain.sealing import seal, unseal
from ..errors import InvalidInput
from ..storage import keyring
from ..storage.db import Database
from ..storage.registry import RegistryStore
from ..storage.shared_state import SharedStateStore

# what is stored sealed with the server key, by purpose (see web/console/qr_codes.py)
SEALED_PURPOSES = ("confirm-code",)  # apps' request headers: HeaderSealer


async def rotate_server_key(
    db: Database, registry: RegistryStore, clock: Clock, actor: str
) -> dict[str, Any]:
    old, new = await db.write(keyring.rotate, db)
    store = SharedStateStore(db)
    resealed, dropped = [], 0
    # a code may be sealed with the previous key too: a server not yet restarted after the
    # last rotation still seals with it (left out, it was unreadable after this rotation)
    keys = [k for k in (old.current, old.previous) if k is not None]
    for change_id, sealed in await db.read(store.all_codes):
        plain = next(
            (
                (purpose, opened)
                for key in keys
                for purpose in SEALED_PURPOSES
                if (opened := unseal(key, purpose, sealed)) is not None
            ),
            None,
        )
        if plain is None:
            dropped += 1  # sealed with a key older than both: unreadable anyway
        else:
            resealed.append((change_id, sealed, seal(new.current, plain[0], plain[1])))
    count = await db.write(store.reseal_codes, resealed)
    headers, unreadable = _resealed_headers(await db.read(registry.sealed_headers), old)
    count += await db.write(registry.reseal_headers, headers)
    await db.write(registry.audit, clock.now(), actor, "server_key.rotate", None, resealed=count)
    return {"rotated": True, "resealed": count, "unreadable": dropped + unreadable}


def _resealed_headers(
    rows: list[tuple[str, str]], old: keyring.KeyRing
) -> tuple[list[tuple[str, str, str]], int]:
    """Apps' request headers sealed with the key every server can open right after this
    rotation: the old current key, which servers not yet restarted hold as their current key
    and restarted ones as their previous (re-sealing them with the new key would leave the
    running servers unable to fetch those apps until restarted). So only headers sealed with
    the old previous key are sealed again; the next rotation moves these on in turn. Returns
    (appid, what was stored, what replaces it) and how many open with neither key."""
    current, previous = HeaderSealer(old.current), HeaderSealer(old.previous or old.current)
    resealed, unreadable = [], 0
    for appid, sealed in rows:
        try:
            current.open(sealed)
            continue  # already readable by every server
        except InvalidInput:
            pass
        try:
            resealed.append((appid, sealed, current.seal(previous.open(sealed))))
        except InvalidInput:
            unreadable += 1  # sealed with a key older than both: unreadable anyway
    return resealed, unreadable
