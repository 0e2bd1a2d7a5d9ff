"""The console's sign-in throttle holds against guesses sent all at once: each guess reads the
throttle when its turn to check a password comes, not when it arrives."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher

from miniport.errors import Forbidden, Unauthorized
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
