"""Identities: runtime tokens for host users, host keys, admin API keys, login codes, openids.

Runtime tokens are stateless; a revocation (a user's tokens issued before a time) is an
append-only row that every API node reads incrementally, at most once per
``REVOCATION_POLL_S``, so checking a token still needs no database read of its own. API keys are
looked up on every call, so a revoked key stops at once.

What is checked once for a long connection (a runtime's event stream) is checked again as it
changes: whoever watches (``on_revoked``: services.stream_guard) is told of each revocation a
node learns, and ``announce`` tells the other nodes of one made here. An API key revoked or
replaced is said to every node by ``access_changed`` (services.console_guard: the console
streams it opened end)."""

from __future__ import annotations

import contextlib
import logging
import secrets
from array import array
from collections.abc import Awaitable, Callable
from typing import Any

from ..clock import Clock
from ..domain.revocations import next_revocation_marks
from ..domain.roles import ROLES as ROLES  # re-exported: the roles are part of this API
from ..domain.roles import Principal as Principal
from ..domain.tokens import (
    LoginCode,
    RuntimeIdentity,
    hash_secret,
    make_login_code,
    make_runtime_token,
    openid_for,
    read_login_code,
    read_runtime_token,
    validate_id,
)
from ..errors import InvalidInput, NotFound, StateUnavailable, Unauthorized
from ..storage.db import Database
from ..storage.keyring import KeyRing
from ..storage.registry import RegistryStore
from ..storage.revocations import RevocationStore

log = logging.getLogger(__name__)

RUNTIME_TOKEN_MAX_AGE_S = 30 * 86400
REVOCATION_POLL_S = 1.0


class AuthService:
    def __init__(
        self,
        db: Database,
        registry: RegistryStore,
        clock: Clock,
        key: bytes,
        login_code_ttl_s: float,
        ring: KeyRing | None = None,
    ) -> None:
        self.db, self.registry, self.clock, self.key = db, registry, clock, key
        # keys that still check what they signed, newest first; openids keep their own key
        self.keys = (key,) + ((ring.previous,) if ring and ring.previous else ())
        self.openid_key = ring.openid if ring else key
        self.login_code_ttl_s = login_code_ttl_s
        self._identities: dict[str, RuntimeIdentity] = {}
        self.revocations = RevocationStore(db)
        self._revoked: dict[str, float] = {}  # user id -> tokens issued before this are refused
        self._revocation_seq = 0
        # numbers below the mark not read yet, and since when: a revocation whose transaction
        # had not committed when a later one was read (PostgreSQL numbers rows at insert)
        self._revocation_gaps: dict[int, float] = {}
        # when revocations were last read, written in place: a new float at each poll (once a
        # second while event streams open) would outlive the wave among the streams' objects
        # and hold their allocator arena (1 MiB) after they closed
        self._revocations_read_at = array("d", [float("-inf")])
        # told (user id, cut-off) of each revocation this node learns, wherever it was made
        self._revocation_watchers: list[Callable[[str, float], None]] = []
        # tells the other nodes of a revocation made here (set by services.stream_guard)
        self.announce: Callable[[str, float], Awaitable[None]] | None = None
        # tells every node an API key stopped working (set by services.console_guard)
        self.access_changed: Callable[[], Awaitable[None]] | None = None

    # --- runtime tokens (stateless) ---
    def runtime_token(
        self, user_id: str, device_id: str | None = None, appid: str | None = None
    ) -> str:
        """A token for every app (a host's), or, with ``appid``, for that app only."""
        validate_id("user id", user_id)
        device = validate_id("device id", device_id or "default")
        identity = RuntimeIdentity(user_id, device, int(self.clock.now()), appid)
        return make_runtime_token(self.key, identity)

    def identify(self, token: str, remember: bool = True) -> RuntimeIdentity:
        """Verify a runtime token; verified tokens are remembered (bounded) until they expire.
        ``remember=False`` for a token checked once per long connection (an event stream):
        10,000 of them in the cache outlived the streams and kept the memory the streams
        had freed from going back to the system."""
        now = self.clock.now()
        known = self._identities.get(token)
        if known is not None and now - known.issued_at <= RUNTIME_TOKEN_MAX_AGE_S:
            return self.not_revoked(known)
        identity = self._read_token(token, now)
        if not remember:
            return self.not_revoked(identity)
        if len(self._identities) >= 10_000:
            self._identities.clear()
        self._identities[token] = identity
        return self.not_revoked(identity)

    def _read_token(self, token: str, now: float) -> RuntimeIdentity:
        """Checked with the current key, then with the previous one (a rotation does not sign
        every user out)."""
        try:
            return read_runtime_token(self.key, token, max_age_s=RUNTIME_TOKEN_MAX_AGE_S, now=now)
        except Unauthorized as exc:
            for key in self.keys[1:]:
                with contextlib.suppress(Unauthorized):
                    return read_runtime_token(
                        key, token, max_age_s=RUNTIME_TOKEN_MAX_AGE_S, now=now
                    )
            raise exc

    def not_revoked(self, identity: RuntimeIdentity) -> RuntimeIdentity:
        """``identity``, unless a revocation this node knows refuses its token."""
        before = self._revoked.get(identity.user_id)
        if before is not None and identity.issued_at < before:
            raise Unauthorized("runtime token revoked")
        return identity

    def on_revoked(self, watcher: Callable[[str, float], None]) -> None:
        """Call ``watcher(user_id, before)`` for each revocation this node learns that refuses
        more of the user's tokens than it knew (it must not raise)."""
        self._revocation_watchers.append(watcher)

    async def refresh_revocations(self, force: bool = False) -> None:
        """Learn revocations made anywhere (another node, the CLI) since the last look; at most
        one database read per ``REVOCATION_POLL_S``, unless ``force``d (a node said it revoked,
        the stream guard's sweep)."""
        now = self.clock.now()
        if not force and now - self._revocations_read_at[0] < REVOCATION_POLL_S:
            return
        self._revocations_read_at[0] = now
        try:
            rows = await self.db.read(
                self.revocations.runtime_since, self._revocation_seq, tuple(self._revocation_gaps)
            )
        except StateUnavailable:
            if force:
                raise
            # the database away: the revocations known stay in force, read again at the next
            # poll; a runtime's request (a launch, written behind) is not refused for it
            return
        self._revocation_seq, self._revocation_gaps = next_revocation_marks(
            self._revocation_seq, self._revocation_gaps, [r[0] for r in rows], now
        )
        for _, user_id, before in rows:
            known = self._revoked.get(user_id)
            if known is None or before > known:
                self._revoked[user_id] = before
                for watcher in self._revocation_watchers:
                    watcher(user_id, before)

    async def revoke_runtime(
        self, user_id: str, before: float | None, actor: str
    ) -> dict[str, Any]:
        """Refuse the user's runtime tokens issued before ``before`` (default: now, all of
        them; a token issued in the same second as the revocation is refused too)."""
        validate_id("user id", user_id)
        now = self.clock.now()
        cutoff = now if before is None else before
        if cutoff > now:
            raise InvalidInput("the revocation time must not be in the future")
        await self.db.write(self.revocations.revoke_runtime, user_id, cutoff, now, actor)
        await self.refresh_revocations(force=True)  # this node's streams of them end now
        if self.announce is not None:
            try:
                await self.announce(user_id, cutoff)
            except Exception as exc:  # revoked all the same: other nodes learn at their next read
                log.warning("could not tell the other nodes of a revocation: %r", exc)
        return {"user_id": user_id, "before": cutoff, "revoked_at": now}

    def openid(self, appid: str, user_id: str) -> str:
        return openid_for(self.openid_key, appid, user_id)

    # --- keys ---
    async def create_key(
        self, kind: str, name: str, role: str | None = None, key_id: str | None = None
    ) -> dict[str, Any]:
        """A new host or API key. A fixed ``key_id`` replaces the key of that id."""
        if kind == "api" and role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
        fixed = key_id is not None
        key_id = key_id or secrets.token_hex(6)
        key = f"mp{kind[0]}_{secrets.token_urlsafe(32)}"
        await self.db.write(
            self.registry.add_key, kind, key_id, name, hash_secret(key), self.clock.now(), role
        )
        if fixed and self.access_changed is not None:  # the key it replaced stopped working
            await self.access_changed()
        return {"id": key_id, "name": name, "key": key, **({"role": role} if role else {})}

    async def revoke_key(self, kind: str, name: str, actor: str) -> list[str]:
        """Revoke every live key of that name (they stop working at once); their roles."""
        roles = await self.db.write(
            self.revocations.revoke_key, kind, name, self.clock.now(), actor
        )
        if not roles:
            raise NotFound(f"no {'API' if kind == 'api' else kind} key named {name!r}")
        if self.access_changed is not None:  # the console streams they opened end
            await self.access_changed()
        return roles

    async def rotate_key(self, kind: str, name: str, actor: str) -> dict[str, Any]:
        """Revoke the keys of that name and make a new one with the same role; when keys of
        that name had several roles, the least of them (it was whichever the database listed
        first, an admin key perhaps, for a name that was a viewer's too)."""
        roles = await self.revoke_key(kind, name, actor)
        known = [r for r in roles if r in ROLES]  # ROLES: admin first
        least = max(known, key=ROLES.index) if kind == "api" and known else None
        return await self.create_key(kind, name, least)

    async def host_key(self, key: str) -> str:
        row = await self.db.read(self.registry.find_key, "host", hash_secret(key))
        if row is None:
            raise Unauthorized("invalid host key")
        return str(row["name"])

    async def api_principal(self, key: str) -> Principal:
        # looked up every time (not cached), so a revoked or replaced key stops working at once
        row = await self.db.read(self.registry.find_key, "api", hash_secret(key))
        if row is None:
            raise Unauthorized("invalid API key")
        return Principal(f"key:{row['name']}", str(row["role"]))

    # --- login codes (wx.login) ---
    def login_code(self, appid: str, user_id: str) -> str:
        """A one-time code for (app, user); no storage until it is exchanged."""
        return make_login_code(
            self.key,
            LoginCode(
                appid,
                self.openid(appid, user_id),
                self.clock.now() + self.login_code_ttl_s,
                secrets.token_urlsafe(9),
            ),
        )

    async def jscode2session(
        self, appid: str, secret: str, js_code: str, grant_type: str
    ) -> dict[str, Any]:
        """WeChat's shape: {openid, session_key} or {errcode, errmsg}."""
        if grant_type != "authorization_code":
            return {"errcode": 40002, "errmsg": "invalid grant_type"}
        if not appid or not secret or not js_code:
            return {"errcode": 41008, "errmsg": "missing appid, secret or js_code"}
        try:
            app = await self.db.read(self.registry.get_app, appid)
        except (NotFound, InvalidInput):  # (a NUL in it: PostgreSQL's refusal) (the database
            # away is not an unknown app: -1, "system busy", from the web layer)
            return {"errcode": 40013, "errmsg": "invalid appid"}
        if not secrets.compare_digest(app.secret.encode(), secret.encode()):
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        code = next(
            (found for key in self.keys if (found := read_login_code(key, js_code)) is not None),
            None,
        )
        now = self.clock.now()
        if code is None or code.appid != appid or now > code.expires_at:
            return {"errcode": 40029, "errmsg": "invalid code (unknown, used or expired)"}
        first_use = await self.db.write(
            self.registry.use_login_code,
            hash_secret(code.nonce),
            appid,
            code.openid,
            code.expires_at,
            now,
        )
        if not first_use:
            return {"errcode": 40163, "errmsg": "code been used"}
        return {"openid": code.openid, "session_key": secrets.token_urlsafe(18)}
