"""The aiohttp pieces of the outbound client that must subclass aiohttp's own classes: the
resolver that applies the address guard to every resolved address, and the error it raises.
Kept apart from :mod:`.client` so that importing the client (the platform, the CLI) does not
import aiohttp; it is imported when the first session opens."""

from __future__ import annotations

import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from ..domain.address_guard import AddressPolicy


class BlockedAddress(aiohttp.ClientConnectionError):
    pass


class GuardedResolver(AbstractResolver):
    """Resolves with the system resolver, then refuses the whole name if any address it resolves
    to is not permitted (so a name cannot smuggle a private address in beside a public one)."""

    def __init__(self, policy: AddressPolicy, allowed_names: frozenset[str]) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._policy = policy
        self._allowed_names = allowed_names

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed_name = host.lower() in self._allowed_names
        for entry in results:
            address = entry["host"]
            if self._policy.refuses_always(address) or (
                not allowed_name and not self._policy.permits(address)
            ):
                raise BlockedAddress(f"{host} resolves to {self._policy.reason(address)}")
        return results

    async def close(self) -> None:
        await self._inner.close()
