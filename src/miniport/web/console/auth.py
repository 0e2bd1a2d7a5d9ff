"""Console users and sign-in sessions.

- Passwords are hashed with Argon2id (argon2-cffi); hashing runs off the event loop.
- A session id is a random token sent only in an HttpOnly cookie; the database keeps its SHA-256
  (``console_sessions.id_hash``), so a leaked database holds no usable session.
- Each session has its own CSRF token. Every state-changing request made with the session cookie
  must carry it, as the ``X-CSRF-Token`` header (fetch) or the ``csrf_token`` form field.
- The cookie is ``SameSite=Lax``, not ``Strict``: an admin opens a confirmation link from a
  phone's camera app, a navigation that browsers may treat as cross-site; under ``Strict`` the
  cookie would not be sent and a signed-in admin would be asked to sign in again. ``Lax`` still
  withholds the cookie from cross-site POSTs, and the CSRF token covers the rest.
- ``Secure`` is set whenever the console is served over https.
- A user created without a chosen password gets a generated one-time password and must choose a
  new one at first sign-in (``must_change_password``); until then every page leads to the
  password form and the admin API refuses the session.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request
from sqlalchemy import and_, delete, func, insert, select, update

from ...domain.tokens import hash_secret
from ...errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from ...platform import Platform
from ...services.auth import ROLES, Principal
from ...storage import schema as t
from ...storage.db import Database
from ...storage.shared_state import SharedStateStore

SESSION_COOKIE = "mp_session"
LOGIN_CSRF_COOKIE = "mp_login_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SESSION_TTL_S = 12 * 3600
MIN_PASSWORD = 8
MAX_PASSWORD = 256
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FAILURE_WINDOW_S = 600
FAILURE_LIMIT = 10


@dataclass(frozen=True)
class ConsoleUser:
    name: str
    role: str
    created_at: float
    disabled: bool
    must_change_password: bool

    @property
    def principal(self) -> Principal:
        return Principal(self.name, self.role)

    def can(self, role: str) -> bool:
        return self.principal.can(role)


@dataclass(frozen=True)
class Session:
    id_hash: str
    user: ConsoleUser
    csrf: str
    expires_at: float


def _user(row: Any) -> ConsoleUser:
    return ConsoleUser(
        row.name, row.role, row.created_at, bool(row.disabled), bool(row.must_change_password)
    )


class UserStore:
    """The SQL (sync, run through ``Database.read`` / ``Database.write``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _audit(conn: Any, now: float, actor: str, action: str, **detail: Any) -> None:
        import json

        conn.execute(
            insert(t.audit_log).values(
                ts=now, actor=actor, action=action, appid=None, detail=json.dumps(detail)
            )
        )

    def create_user(
        self, name: str, role: str, password_hash: str, now: float, must_change: bool, actor: str
    ) -> ConsoleUser:
        with self.db.writing() as conn:
            exists = conn.execute(
                select(t.console_users.c.name).where(t.console_users.c.name == name)
            ).first()
            if exists is not None:
                raise Conflict(f"a console user named {name!r} already exists")
            conn.execute(
                insert(t.console_users).values(
                    name=name,
                    role=role,
                    password_hash=password_hash,
                    created_at=now,
                    disabled=False,
                    must_change_password=must_change,
                )
            )
            self._audit(conn, now, actor, "console_user.create", name=name, role=role)
        return ConsoleUser(name, role, now, False, must_change)

    def get_user(self, name: str) -> tuple[ConsoleUser, str] | None:
        with self.db.reading() as conn:
            row = conn.execute(
                select(t.console_users).where(t.console_users.c.name == name)
            ).first()
        return (_user(row), str(row.password_hash)) if row is not None else None

    def list_users(self) -> list[ConsoleUser]:
        with self.db.reading() as conn:
            rows = conn.execute(select(t.console_users).order_by(t.console_users.c.name)).all()
        return [_user(r) for r in rows]

    def update_user(
        self,
        name: str,
        values: dict[str, Any],
        now: float,
        actor: str,
        action: str,
        end_sessions: bool = False,
        keep_session: str | None = None,
        **detail: Any,
    ) -> ConsoleUser:
        c = t.console_users.c
        with self.db.writing() as conn:
            row = conn.execute(select(t.console_users).where(c.name == name)).first()
            if row is None:
                raise NotFound(f"console user {name!r} not found")
            demoted = values.get("role", row.role) != "admin" or values.get("disabled") is True
            if row.role == "admin" and not row.disabled and demoted:
                admins = conn.execute(
                    select(func.count())
                    .select_from(t.console_users)
                    .where(and_(c.role == "admin", c.disabled.is_(False)))
                ).scalar_one()
                if admins <= 1:
                    raise Conflict("this is the last active admin; make another admin first")
            conn.execute(update(t.console_users).where(c.name == name).values(**values))
            if end_sessions:
                s = t.console_sessions.c
                cond = s.user_name == name
                if keep_session is not None:
                    cond = and_(cond, s.id_hash != keep_session)
                conn.execute(delete(t.console_sessions).where(cond))
            self._audit(conn, now, actor, action, name=name, **detail)
            updated = conn.execute(select(t.console_users).where(c.name == name)).one()
        return _user(updated)

    def create_session(
        self, id_hash: str, name: str, csrf: str, now: float, expires_at: float
    ) -> None:
        with self.db.writing() as conn:
            conn.execute(delete(t.console_sessions).where(t.console_sessions.c.expires_at < now))
            conn.execute(
                insert(t.console_sessions).values(
                    id_hash=id_hash,
                    user_name=name,
                    csrf=csrf,
                    created_at=now,
                    expires_at=expires_at,
                )
            )

    def get_session(self, id_hash: str, now: float) -> Session | None:
        s, u = t.console_sessions.c, t.console_users
        with self.db.reading() as conn:
            row = conn.execute(
                select(s.id_hash, s.csrf, s.expires_at, u)
                .join(u, u.c.name == s.user_name)
                .where(s.id_hash == id_hash)
            ).first()
        if row is None or row.expires_at < now or row.disabled:
            return None
        return Session(row.id_hash, _user(row), row.csrf, row.expires_at)

    def delete_session(self, id_hash: str) -> None:
        with self.db.writing() as conn:
            conn.execute(delete(t.console_sessions).where(t.console_sessions.c.id_hash == id_hash))


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


class ConsoleAuth:
    def __init__(self, platform: Platform, hasher: PasswordHasher | None = None) -> None:
        self.platform = platform
        self.db = platform.db
        self.store = UserStore(platform.db)
        self.hasher = hasher or PasswordHasher()
        self.shared = SharedStateStore(platform.db)  # the throttle, alike on every node
        # Argon2 costs ~0.15 s of CPU and 64 MiB: at most two at once, whoever asks
        self._hashing = asyncio.Semaphore(2)
        # a real hash to verify against when the name is unknown (same timing either way)
        self._dummy_hash: str | None = None

    def now(self) -> float:
        return self.platform.clock.now()

    async def _hash(self, password: str) -> str:
        async with self._hashing:
            return await asyncio.to_thread(self.hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        def check() -> bool:
            try:
                return self.hasher.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        async with self._hashing:
            return await asyncio.to_thread(check)

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
        return await self.db.write(
            self.store.update_user,
            name,
            {"role": check_role(role)},
            self.now(),
            actor,
            "console_user.role",
            role=role,
        )

    async def set_disabled(self, name: str, disabled: bool, actor: str) -> ConsoleUser:
        return await self.db.write(
            self.store.update_user,
            name,
            {"disabled": disabled},
            self.now(),
            actor,
            "console_user.disable" if disabled else "console_user.enable",
            end_sessions=disabled,
        )

    async def reset_password(self, name: str, actor: str) -> str:
        """A new one-time password (shown once); the user's sessions end."""
        password = one_time_password()
        await self.db.write(
            self.store.update_user,
            name,
            {"password_hash": await self._hash(password), "must_change_password": True},
            self.now(),
            actor,
            "console_user.reset_password",
            end_sessions=True,
        )
        return password

    async def change_password(self, session: Session, current: str, new: str) -> ConsoleUser:
        found = await self.db.read(self.store.get_user, session.user.name)
        if found is None or not await self._verify(found[1], current):
            raise InvalidInput("the current password is not right")
        check_password(new)
        if new == current:
            raise InvalidInput("choose a password different from the current one")
        return await self.db.write(
            self.store.update_user,
            session.user.name,
            {"password_hash": await self._hash(new), "must_change_password": False},
            self.now(),
            session.user.name,
            "console_user.change_password",
            end_sessions=True,
            keep_session=session.id_hash,
        )

    # --- sign-in ---
    @staticmethod
    def _key(name: str) -> str:
        """One throttle per account however its name is typed (case, spaces); hashed, so any
        typed name fits the column."""
        return hash_secret(name.strip().lower())

    async def _throttled(self, name: str) -> bool:
        since = self.now() - FAILURE_WINDOW_S
        return await self.db.read(self.shared.failures, self._key(name), since) >= FAILURE_LIMIT

    async def authenticate(self, name: str, password: str) -> ConsoleUser:
        if await self._throttled(name):
            raise Forbidden("too many failed sign-ins for this name; wait ten minutes")
        found = await self.db.read(self.store.get_user, name.strip())
        if found is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self._hash(secrets.token_hex(8))
            await self._verify(self._dummy_hash, password)
        ok = found is not None and await self._verify(found[1], password)
        if not ok or found is None:
            await self.db.write(
                self.shared.add_failure, self._key(name), self.now(), FAILURE_WINDOW_S
            )
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
        await self.db.write(self.platform.registry.audit, now, user.name, "console.sign_in", None)
        return token, csrf

    async def end_session(self, session: Session) -> None:
        await self.db.write(self.store.delete_session, session.id_hash)

    async def session(self, request: Request) -> Session | None:
        """The request's session (looked up once per request)."""
        if hasattr(request.state, "console_session"):
            cached: Session | None = request.state.console_session
            return cached
        token = request.cookies.get(SESSION_COOKIE)
        found = None
        if token and len(token) <= 128:
            found = await self.db.read(self.store.get_session, hash_secret(token), self.now())
        request.state.console_session = found
        return found

    async def csrf_ok(self, request: Request, expected: str) -> bool:
        sent = request.headers.get(CSRF_HEADER)
        if sent is None:
            ctype = request.headers.get("content-type", "")
            if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
                form = await request.form()
                value = form.get(CSRF_FIELD)
                sent = value if isinstance(value, str) else None
        return sent is not None and secrets.compare_digest(sent.encode(), expected.encode())

    async def resolve(self, request: Request) -> Principal | None:
        """``app.state.session_resolver``: the signed-in console user as an admin API principal.
        A state-changing method must carry the session's CSRF token."""
        session = await self.session(request)
        if session is None:
            return None
        if request.method not in SAFE_METHODS and not await self.csrf_ok(request, session.csrf):
            raise Forbidden("missing or wrong CSRF token; reload the page and try again")
        if session.user.must_change_password:
            raise Forbidden("choose a new password first (the console asks for it at sign-in)")
        return session.user.principal


def is_https(request: Request, public_url: str) -> bool:
    return request.url.scheme == "https" or public_url.startswith("https://")
