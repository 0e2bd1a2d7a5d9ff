"""Confirmation codes of the changes requested from the console, so any API node can show their
QR codes until they expire: each code is sealed with the server key in the state database (the
change row keeps only its hash, for confirming). A change requested elsewhere (CLI, API) shows
its details without a QR code."""

from __future__ import annotations

from ...domain.sealing import seal, unseal
from ...platform import Platform
from ...services.apps import PendingChange
from ...storage.shared_state import SharedStateStore

PURPOSE = "confirm-code"


class SharedQRCodes:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.store = SharedStateStore(platform.db)

    async def remember(self, pending: PendingChange) -> None:
        p = self.platform
        sealed = seal(p.auth.key, PURPOSE, f"{pending.code}\n{pending.confirm_url}".encode())
        await p.db.write(
            self.store.put_code,
            pending.change.id,
            sealed,
            pending.change.expires_at,
            p.clock.now(),
        )

    async def get(self, change_id: str, now: float) -> tuple[str, str] | None:
        """(code, confirm URL) of a pending change requested from the console, until it
        expires."""
        sealed = await self.platform.db.read(self.store.get_code, change_id, now)
        if sealed is None:
            return None
        keys = self.platform.auth.keys  # the previous key too: sealed before a rotation
        plain = next((o for k in keys if (o := unseal(k, PURPOSE, sealed)) is not None), None)
        if plain is None:
            return None
        code, _, url = plain.decode().partition("\n")
        return code, url
