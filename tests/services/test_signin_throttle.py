"""The console's sign-in throttle holds against guesses sent all at once: each guess reads the
throttle when its turn to check a password comes, not when it arrives."""

from __future__ import annotations

import asyncio

import pytest
from argon2 import PasswordHasher

from miniport.errors import Forbidden, InvalidInput, Unauthorized
from miniport.platform import Platform
from miniport.services.console_users import FAILURE_LIMIT, ConsoleUsers


async def test_parallel_guesses_get_no_more_password_checks_than_the_limit(
    platform: Platform,
) -> None:
    p = platform
    checked = 0

    class Counting(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            nonlocal checked
            checked += 1
            return super().verify(hash, password)

    users = ConsoleUsers(p.db, p.console_users.store, p.registry, p.clock,
                         Counting(time_cost=1, memory_cost=8, parallelism=1))
    await users.create_user("boss", "admin", "right-password-1")
    guesses = [users.authenticate("boss", f"guess-{i}") for i in range(4 * FAILURE_LIMIT)]
    outcomes = await asyncio.gather(*guesses, return_exceptions=True)
    assert all(isinstance(o, Unauthorized | Forbidden) for o in outcomes), outcomes
    # at most one more than the limit: the other hashing slot may be checking the last one
    assert FAILURE_LIMIT <= checked <= FAILURE_LIMIT + 1, checked
    assert sum(isinstance(o, Forbidden) for o in outcomes) == 4 * FAILURE_LIMIT - checked


async def test_wrong_current_passwords_on_the_password_form_are_throttled_as_sign_ins(
    platform: Platform,
) -> None:
    """Whoever holds a session (a stolen cookie, an unlocked screen) cannot guess the current
    password without limit on the password form, to change it and keep the account."""
    users = ConsoleUsers(platform.db, platform.console_users.store, platform.registry,
                         platform.clock, PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    user, _ = await users.create_user("boss", "admin", "right-password-1")
    token, _ = await users.start_session(user)
    session = await users.session_for(token)
    assert session is not None
    for i in range(FAILURE_LIMIT):
        with pytest.raises(InvalidInput, match="current password"):
            await users.change_password(session, f"guess-{i}", "new-password-1")
    with pytest.raises(Forbidden, match="too many"):
        await users.change_password(session, "right-password-1", "new-password-1")
    with pytest.raises(Forbidden, match="too many"):
        await users.authenticate("boss", "right-password-1")
