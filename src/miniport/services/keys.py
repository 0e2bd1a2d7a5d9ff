"""Rotating the server key: a new key signs and seals from then on; the previous key is kept to
check what it signed (runtime tokens, till they expire) and everything stored sealed with it
(pending confirmation codes) is re-sealed with the new key. Openids never change. Running
servers pick the new key up when restarted."""

from __future__ import annotations

from typing import Any

from ..clock import Clock
from ..domain.sealing import seal, unseal
from ..storage import keyring
from ..storage.db import Database
from ..storage.registry import RegistryStore
from ..storage.shared_state import SharedStateStore

# what is stored sealed with the server key, by purpose (see web/console/qr_codes.py)
SEALED_PURPOSES = ("confirm-code",)


async def rotate_server_key(
    db: Database, registry: RegistryStore, clock: Clock, actor: str
) -> dict[str, Any]:
    old, new = await db.write(keyring.rotate, db)
    store = SharedStateStore(db)
    resealed, dropped = [], 0
    for change_id, sealed in await db.read(store.all_codes):
        for purpose in SEALED_PURPOSES:
            plain = unseal(old.current, purpose, sealed)
            if plain is not None:
                resealed.append((change_id, seal(new.current, purpose, plain)))
                break
        else:
            dropped += 1  # sealed with a key older than the previous one: unreadable anyway
    await db.write(store.reseal_codes, resealed)
    await db.write(
        registry.audit, clock.now(), actor, "server_key.rotate", None, resealed=len(resealed)
    )
    return {"rotated": True, "resealed": len(resealed), "unreadable": dropped}
