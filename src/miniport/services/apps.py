"""Apps and their data-URL settings; every URL change waits for an admin's confirmation."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..clock import Clock
from ..domain.address_guard import AddressPolicy
from ..domain.tokens import hash_secret
from ..domain.urls import FETCH_KINDS, validate_fetch_url
from ..errors import Forbidden, InvalidInput
from ..storage.db import Database
from ..storage.fetches import FetchStore
from ..storage.health import health_series
from ..storage.registry import App, RegistryStore
from ..storage.registry import ChangeRequest as ChangeRequest  # re-exported for the web layer

OPS = ("set", "enable", "disable")
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O/1/I: it is typed by hand


@dataclass(frozen=True)
class PendingChange:
    change: ChangeRequest
    code: str
    confirm_url: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "change_id": self.change.id,
            "confirm_code": self.code,
            "confirm_url": self.confirm_url,
            "expires_at": self.change.expires_at,
            "kind": self.change.kind,
            "op": self.change.op,
            "url": self.change.url,
        }


def new_confirm_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(10))


class AppService:
    def __init__(
        self,
        db: Database,
        registry: RegistryStore,
        fetches: FetchStore,
        clock: Clock,
        *,
        dev: bool,
        allow_hosts: tuple[str, ...] = (),
        change_ttl_s: float,
        two_person_rule: bool = False,
        public_url: Callable[[], str],
        on_urls_changed: Callable[[str], None] | None = None,
    ) -> None:
        self.db, self.registry, self.fetches, self.clock = db, registry, fetches, clock
        self.dev = dev
        self.address_policy = AddressPolicy.build(dev=dev, allow=allow_hosts)
        self.change_ttl_s = change_ttl_s
        self.two_person_rule = two_person_rule
        self.public_url = public_url
        self.on_urls_changed = on_urls_changed

    async def create(self, name: str, actor: str) -> App:
        name = name.strip()
        if not name or len(name) > 128:
            raise InvalidInput("app name must be 1..128 characters")
        app = App("mp" + secrets.token_hex(8), name, secrets.token_hex(16), self.clock.now())
        return await self.db.write(self.registry.create_app, app, actor)

    async def get(self, appid: str) -> App:
        return await self.db.read(self.registry.get_app, appid)

    async def rotate_secret(self, appid: str, actor: str) -> str:
        secret = secrets.token_hex(16)
        await self.db.write(self.registry.set_secret, appid, secret, self.clock.now(), actor)
        if self.on_urls_changed is not None:  # cached secrets are dropped too
            self.on_urls_changed(appid)
        return secret

    async def request_change(
        self, appid: str, kind: str, op: str, url: str | None, actor: str
    ) -> PendingChange:
        if kind not in FETCH_KINDS:
            raise InvalidInput(f"kind must be periodic or pre, not {kind!r}")
        if op not in OPS:
            raise InvalidInput(f"op must be one of {', '.join(OPS)}")
        await self.get(appid)
        if op == "set":
            url = validate_fetch_url(kind, url or "", dev=self.dev, policy=self.address_policy)
        else:
            url = None
        now = self.clock.now()
        code = new_confirm_code()
        change = ChangeRequest(
            id="chg_" + secrets.token_hex(8),
            appid=appid,
            kind=kind,
            op=op,
            url=url,
            status="pending",
            requested_by=actor,
            created_at=now,
            expires_at=now + self.change_ttl_s,
            decided_by=None,
            decided_at=None,
        )
        await self.db.write(self.registry.create_change, change, hash_secret(code))
        return PendingChange(change, code, f"{self.public_url()}/confirm/{code}")

    async def change_for_code(self, code: str) -> ChangeRequest:
        return await self.db.read(self.registry.change_by_code, hash_secret(code.strip().upper()))

    async def confirm(self, code: str, actor: str) -> ChangeRequest:
        return await self._confirm(hash_secret(code.strip().upper()), actor)

    async def confirm_by_id(self, change_id: str, actor: str) -> ChangeRequest:
        """An admin confirms a change from the console (whoever requested it, and however)."""
        return await self._confirm(await self.db.read(self.registry.code_hash_of, change_id), actor)

    async def reject(self, change_id: str, actor: str) -> ChangeRequest:
        return await self.db.write(self.registry.reject_change, change_id, self.clock.now(), actor)

    async def _confirm(self, code_hash: str, actor: str) -> ChangeRequest:
        if self.two_person_rule:
            asked = await self.db.read(self.registry.change_by_code, code_hash)
            if asked.requested_by == actor:
                raise Forbidden(
                    "two-person rule: a change must be confirmed by someone other than "
                    f"who requested it ({actor})"
                )
        change = await self.db.write(
            self.registry.confirm_change, code_hash, self.clock.now(), actor
        )
        if change.kind == "periodic":  # due now, or out of the due index when disabled
            await self.db.write(self.fetches.wake_app, change.appid, self.clock.now())
        if self.on_urls_changed is not None:
            self.on_urls_changed(change.appid)
        return change

    async def settings(self, appid: str) -> dict[str, Any]:
        await self.get(appid)
        urls = await self.db.read(self.registry.fetch_urls, appid)
        changes = await self.db.read(self.registry.list_changes, appid)
        now = self.clock.now()
        return {
            "appid": appid,
            "urls": {
                k: {"url": u.url, "enabled": u.enabled, "updated_at": u.updated_at}
                for k, u in urls.items()
            },
            "pending": [
                c.as_dict() for c in changes if c.status == "pending" and c.expires_at >= now
            ],
        }

    async def health_series(
        self, appid: str, since: float, bucket_s: float
    ) -> list[dict[str, Any]]:
        """The app's fetch log since ``since`` in buckets of ``bucket_s`` (see storage.health)."""
        return await self.db.read(health_series, self.db, appid, since, bucket_s)
