"""Console users and sign-in, the part without HTTP (the web console adds forms, cookies and
CSRF; the CLI creates and lists users through the same service).

- Passwords are hashed with Argon2id (argon2-cffi); hashing runs off the event loop, at most
  two at once (each costs ~0.15 s of CPU and 64 MiB).
- A session token is random; the database keeps only its SHA-256, so a leaked database holds
  no usable session. Each session has its own CSRF token, checked by the web layer.
- Failed sign-ins are throttled per account name however it is typed (case, spaces): at most
  ``FAILURE_LIMIT`` in ``FAILURE_WINDOW_S``, counted in the state database so every API node
  shares one throttle. An unknown name costs the same hash as a known one. They are also
  throttled per client address (``address_limit``, ``MINIPORT_SIGNIN_ADDRESS_LIMIT``; an IPv6
  client by its /64, which one host can fill with addresses, and by its /48 with
  ``NETWORK_FACTOR`` times the limit, since a site is routinely given a whole /48 and could
  send each guess from another /64): one password tried against many names (password
  spraying) stays under every name's limit. A successful sign-in clears its
  name's failures, never its address's: an attacker's own account would reset the count.
- A user created without a chosen password gets a generated one-time password and must choose
  a new one at first sign-in (``must_change_password``). A one-time password expires
  ``ONE_TIME_PASSWORD_TTL_S`` (72 h) after it was set (created or reset): one never used, left
  in a chat or an e-mail, no longer takes the account over. Signing in with an expired one is
  refused, with a message to ask an admin for a new one, and counts as a failed sign-in like a
  wrong password. A user's own chosen password never expires. Rows from before the
  ``password_set_at`` column (migration 0014) count from ``created_at``: the earliest such a
  password can have been set, so it expires no later than a new one would (a password reset
  since then may thus be refused early; the admin resets it again).
- Roles are ``domain.roles.ROLES``; the last active admin cannot be demoted or disabled.
- A change that may take access away (a session ended, a user's sessions ended, a role
  changed, an account disabled) is said to every node (``access_changed``:
  services.console_guard), whose open console streams are then checked again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import secrets
from collections.abc import Awaitable, Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..clock import Clock
from ..domain.roles import ROLES
from ..domain.tokens import hash_secret
from ..errors import Forbidden, InvalidInput, NotFound, Unauthorized
from ..storage.db import Database
from ..storage.registry import RegistryStore
from ..storage.shared_state import SharedStateStore
from ..storage.users import ConsoleUser as ConsoleUser  # re-exported for the web layer
from ..storage.users import Session as Session
from ..storage.users import UserStore

log = logging.getLogger("miniport.console")
SESSION_TTL_S = 12 * 3600
MIN_PASSWORD = 8
MAX_PASSWORD = 256
MAX_TOKEN = 128
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
FAILURE_WINDOW_S = 600
FAILURE_LIMIT = 10
ADDRESS_FAILURE_LIMIT = 50
NETWORK_FACTOR = 4  # an IPv6 /48 may fail this many times an address's (a /64's) limit
ONE_TIME_PASSWORD_TTL_S = 72 * 3600
EXPIRED_ONE_TIME_PASSWORD = (
    "this one-time password has expired (they last 72 hours); ask an admin for a new one "
    "(Users page: reset password; or `miniport admin reset-password NAME`)"
)


def address_key(address: str) -> str:
    """The throttle's key for a client address: an IPv6 address by its /64 (one host is
    routinely given a whole /64, so it could send each guess from another address), an IPv4
    address (or an IPv4-mapped IPv6 one) as it is; hashed, with a prefix no name key has."""
    return address_keys(address)[0][0]


def address_keys(address: str) -> tuple[tuple[str, int], ...]:
    """The throttle's keys for a client address, each with the multiple of the address limit
    it may reach: its :func:`address_key`, and for an IPv6 address also its /48 (a site's
    usual allocation: 65,536 /64s, each of which would otherwise get the whole limit), at
    ``NETWORK_FACTOR`` times the limit so a few busy hosts of one site are not held back."""
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return ((hash_secret("address:" + address.strip().lower()), 1),)
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is not None:
            ip = mapped
        else:
            host = ipaddress.IPv6Network((ip, 64), strict=False)
            site = ipaddress.IPv6Network((ip, 48), strict=False)
            return (
                (hash_secret(f"address:{host}"), 1),
                (hash_secret(f"address:{site}"), NETWORK_FACTOR),
            )
    return ((hash_secret(f"address:{ip}"), 1),)


def check_name(name: str) -> str:
    name = name.strip()
    if not NAME_RE.match(name):
        raise InvalidInput(
            "user name: 1-64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit"
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if not (MIN_PASSWORD <= len(password) <= MAX_PASSWORD):
        raise InvalidInput(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def one_time_password() -> str:
    return secrets.token_urlsafe(12)


def one_time_password_expired(user: ConsoleUser, now: float) -> bool:
    """Whether ``user`` holds a one-time password older than ``ONE_TIME_PASSWORD_TTL_S``. With
    no ``password_set_at`` (a row from before migration 0014) ``created_at`` counts: the
    earliest it can have been set, so the conservative choice."""
    if not user.must_change_password:
        return False
    set_at = user.password_set_at if user.password_set_at is not None else user.created_at
    return now - set_at >= ONE_TIME_PASSWORD_TTL_S


class ConsoleUsers:
    """Console users and sign-in, without HTTP: the web console adds cookies and CSRF."""

    def __init__(
        self,
        db: Database,
        store: UserStore,
        registry: RegistryStore,
        clock: Clock,
        hasher: PasswordHasher | None = None,
        *,
        address_limit: int = ADDRESS_FAILURE_LIMIT,
    ) -> None:
        self.db = db
        self.address_limit = address_limit
        self.store = store
        self.registry = registry
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        self.shared = SharedStateStore(db)  # the throttle, alike on every node
        # Argon2 costs ~0.15 s of CPU and 64 MiB: at most two at once, whoever asks
        self._hashing = asyncio.Semaphore(2)
        # a real hash to verify against when the name is unknown (same timing either way)
        self._dummy_hash: str | None = None
        # tells every node a user's sessions or role changed (set by services.console_guard:
        # the console streams of a session ended, or of a role now too low, end)
        self.access_changed: Callable[[], Awaitable[None]] | None = None

    def now(self) -> float:
        return self.clock.now()

    async def _changed(self) -> None:
        if self.access_changed is not None:
            await self.access_changed()

    async def _hash(self, password: str) -> str:
        async with self._hashing:
            return await asyncio.to_thread(self.hasher.hash, password)

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    # --- users ---
    async def create_user(
        self, name: str, role: str = "admin", password: str | None = None, actor: str = "cli"
    ) -> tuple[ConsoleUser, str | None]:
        """Create a user. Without ``password`` a one-time password is generated and returned;
        the user must replace it at first sign-in."""
        name, role = check_name(name), check_role(role)
        generated = None
        if password is None:
            generated = password = one_time_password()
        else:
            check_password(password)
        user = await self.db.write(
            self.store.create_user,
            name,
            role,
            await self._hash(password),
            self.now(),
            generated is not None,
            actor,
        )
        return user, generated

    async def list_users(self) -> list[ConsoleUser]:
        return await self.db.read(self.store.list_users)

    async def get_user(self, name: str) -> ConsoleUser:
        found = await self.db.read(self.store.get_user, name)
        if found is None:
            raise NotFound(f"console user {name!r} not found")
        return found[0]

    async def set_role(self, name: str, role: str, actor: str) -> ConsoleUser:
        user = await self.db.write(
            self.store.update_user,
            name,
            {"role": check_role(role)},
            self.now(),
            actor,
            "console_user.role",
            role=role,
        )
        await self._changed()
        return user

    async def set_disabled(self, name: str, disabled: bool, actor: str) -> ConsoleUser:
        user = await self.db.write(
            self.store.update_user,
            name,
            {"disabled": disabled},
            self.now(),
            actor,
            "console_user.disable" if disabled else "console_user.enable",
            end_sessions=disabled,
        )
        await self._changed()
        return user

    async def reset_password(self, name: str, actor: str) -> str:
        """A new one-time password (shown once); the user's sessions end."""
        password = one_time_password()
        await self.db.write(
            self.store.update_user,
            name,
            {
                "password_hash": await self._hash(password),
                "must_change_password": True,
                "password_set_at": self.now(),
            },
            self.now(),
            actor,
            "console_user.reset_password",
            end_sessions=True,
        )
        await self._changed()
        return password

    async def change_password(self, session: Session, current: str, new: str) -> ConsoleUser:
        """A wrong ``current`` counts as a failed sign-in of the user (whoever holds a session
        cannot guess the password without limit here, to change it and keep the account)."""
        if await self._guess(session.user.name, current) is None:
            raise InvalidInput("the current password is not right")
        await self.db.write(self.shared.clear_failures, self._key(session.user.name))
        check_password(new)
        if new == current:
            raise InvalidInput("choose a password different from the current one")
        user = await self.db.write(
            self.store.update_user,
            session.user.name,
            {
                "password_hash": await self._hash(new),
                "must_change_password": False,
                "password_set_at": self.now(),
            },
            self.now(),
            session.user.name,
            "console_user.change_password",
            end_sessions=True,
            keep_session=session.id_hash,
        )
        await self._changed()  # the user's other sessions ended
        return user

    # --- sign-in ---
    @staticmethod
    def _key(name: str) -> str:
        """One throttle per account: the name as looked up (stripped; case counts, as in the
        lookup: lowercased, "alice" and an "Alice" made before twins were refused shared one
        throttle, and signing in as one cleared the other's failures); hashed, so any typed
        name fits the column; prefixed, so no typed name (say ``address:1.2.3.4``) shares an
        address's key and throttles that address from afar."""
        return hash_secret("name:" + name.strip())

    async def _throttled(
        self, name: str, address: str | None, sources: tuple[tuple[str, int], ...]
    ) -> str | None:
        """Why guesses for ``name`` from ``address`` (its keys: ``sources``) are refused now,
        or None."""
        since = self.now() - FAILURE_WINDOW_S
        if await self.db.read(self.shared.failures, self._key(name), since) >= FAILURE_LIMIT:
            return "too many failed sign-ins for this name; wait ten minutes"
        if self.address_limit <= 0:
            return None
        for key, factor in sources:
            if await self.db.read(self.shared.failures, key, since) >= self.address_limit * factor:
                # for the operator: a proxy that hides the clients' addresses shows up here first
                where = "address" if factor == 1 else "network"
                of = "" if factor == 1 else "the network of "
                log.warning("console sign-in refused: too many failures from %s%s", of, address)
                return f"too many failed sign-ins from this {where}; wait ten minutes"
        return None

    async def _guess(
        self, name: str, password: str, address: str | None = None
    ) -> tuple[ConsoleUser, str] | None:
        """The user ``name`` (and its hash) if ``password`` is theirs; else None, with a failure
        counted for the name and for the client ``address`` (when known). Refused while either
        is throttled, and (``Forbidden``, with a failure counted as for a wrong password) when
        the password is an expired one-time password. The throttle is read once this guess
        holds a hashing slot, and a failure is counted before the slot is let go: read on
        arrival, guesses sent all at once all passed it (each then had its password checked),
        however low the limit."""
        if self._dummy_hash is None:
            self._dummy_hash = await self._hash(secrets.token_hex(8))
        sources = address_keys(address) if address is not None else ()
        async with self._hashing:
            refused = await self._throttled(name, address, sources)
            if refused is not None:
                raise Forbidden(refused)
            found = await self.db.read(self.store.get_user, name.strip())
            password_hash = self._dummy_hash if found is None else found[1]
            right = await asyncio.to_thread(self._check, password_hash, password)
            expired = found is not None and one_time_password_expired(found[0], self.now())
            if right and found and not expired:
                return found
            keys = [self._key(name), *(key for key, _ in sources)]
            await self.db.write(self.shared.add_failure, keys, self.now(), FAILURE_WINDOW_S)
            if right and expired:
                raise Forbidden(EXPIRED_ONE_TIME_PASSWORD)
            return None

    async def authenticate(
        self, name: str, password: str, address: str | None = None
    ) -> ConsoleUser:
        """``address``: the client's (the web form's), throttled as well as the name."""
        found = await self._guess(name, password, address)
        if found is None:
            raise Unauthorized("wrong user name or password")
        user = found[0]
        if user.disabled:
            raise Forbidden("this account is disabled; ask an admin")
        await self.db.write(self.shared.clear_failures, self._key(name))
        return user

    async def start_session(self, user: ConsoleUser) -> tuple[str, str]:
        """A new session: (the cookie value, its CSRF token)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self.now()
        await self.db.write(
            self.store.create_session, hash_secret(token), user.name, csrf, now, now + SESSION_TTL_S
        )
        await self.db.write(self.registry.audit, now, user.name, "console.sign_in", None)
        return token, csrf

    async def end_session(self, session: Session) -> None:
        await self.db.write(self.store.delete_session, session.id_hash)
        await self._changed()

    async def session_for(self, token: str) -> Session | None:
        """The live session whose token (the cookie's value) is ``token``."""
        if not token or len(token) > MAX_TOKEN:
            return None
        return await self.db.read(self.store.get_session, hash_secret(token), self.now())
