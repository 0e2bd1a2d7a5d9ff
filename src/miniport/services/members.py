"""Per-app access. Admins are platform-wide; a developer or viewer reaches only the apps it is a
member of, and there with the lower of its platform role and its member role. To anyone else an
app is "not found", as if it did not exist. Whoever creates an app becomes its developer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..clock import Clock
from ..errors import Forbidden, InvalidInput, NotFound
from ..storage.db import Database
from ..storage.members import MemberStore
from ..storage.registry import RegistryStore
from .auth import ROLES, Principal

MEMBER_ROLES = ("developer", "viewer")
MAX_PRINCIPAL = 160


def _lower(a: str, b: str) -> str:
    return a if ROLES.index(a) >= ROLES.index(b) else b


class MemberService:
    def __init__(self, db: Database, registry: RegistryStore, clock: Clock) -> None:
        self.db, self.registry, self.clock = db, registry, clock
        self.store = MemberStore(db)
        # tells every node a member's access changed (set by services.console_guard: the
        # console streams a removed member, or one now below their role, opened end)
        self.access_changed: Callable[[], Awaitable[None]] | None = None

    async def add(self, appid: str, principal: str, role: str, actor: str) -> dict[str, Any]:
        """Add (or change the role of) a member: a console user name, or ``key:NAME``."""
        if role not in MEMBER_ROLES:
            raise InvalidInput(f"role must be one of {', '.join(MEMBER_ROLES)}")
        if not principal or len(principal) > MAX_PRINCIPAL or not principal.isprintable():
            raise InvalidInput(f"user must be 1..{MAX_PRINCIPAL} printable characters")
        await self.db.read(self.registry.get_app, appid)  # NotFound for an unknown app
        await self.db.write(self.store.put, appid, principal, role, self.clock.now(), actor)
        await self._changed()  # perhaps a lower role than before
        return {"appid": appid, "user": principal, "role": role}

    async def remove(self, appid: str, principal: str, actor: str) -> dict[str, Any]:
        await self.db.read(self.registry.get_app, appid)
        if not await self.db.write(self.store.remove, appid, principal, self.clock.now(), actor):
            raise NotFound(f"{principal!r} is not a member of app {appid!r}")
        await self._changed()
        return {"appid": appid, "user": principal, "removed": True}

    async def _changed(self) -> None:
        if self.access_changed is not None:
            await self.access_changed()

    async def list(self, appid: str) -> list[dict[str, Any]]:
        await self.db.read(self.registry.get_app, appid)
        rows = await self.db.read(self.store.list, appid)
        return [
            {"user": r["principal"], **{k: v for k, v in r.items() if k != "principal"}}
            for r in rows
        ]

    async def add_creator(self, appid: str, who: Principal) -> None:
        if who.role != "admin":
            await self.db.write(
                self.store.put, appid, who.name, "developer", self.clock.now(), who.name
            )

    async def check(self, appid: str, who: Principal, needed: str) -> Principal:
        """Refuse ``who`` in ``appid`` unless it holds ``needed`` there; else ``who`` with its
        role in that app (the lower of its platform and member roles), which is what any
        further role test on that app's route must ask (a platform developer who is a viewer
        of the app is a viewer there, e.g. not shown the app's secret)."""
        if who.role == "admin":
            return who
        member = await self.db.read(self.store.role_of, appid, who.name)
        if member is None:
            raise NotFound(f"app {appid!r} not found")
        effective = _lower(who.role, member)
        if ROLES.index(effective) > ROLES.index(needed):
            raise Forbidden(f"this needs the {needed} role in app {appid}; you are {effective}")
        return who if effective == who.role else Principal(who.name, effective)

    async def visible(self, who: Principal) -> set[str] | None:
        """The apps ``who`` may see; None for all of them (an admin)."""
        if who.role == "admin":
            return None
        return await self.db.read(self.store.apps_of, who.name)
