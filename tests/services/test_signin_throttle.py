"""The console's sign-in throttle holds against guesses sent all at once: each guess reads the
throttle when its turn to check a password comes, not when it arrives."""

from __future__ import annotations

import asyncio

import pytest
from argon2 import PasswordHasher
from sqlalchemy import insert

from miniport.errors import Conflict, Forbidden, InvalidInput, Unauthorized
from miniport.platform import Platform
from miniport.services.console_users import (
    FAILURE_LIMIT,
    NETWORK_FACTOR,
    ConsoleUsers,
    address_key,
    address_keys,
)
from miniport.storage import schema as t


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


def _users(platform: Platform, address_limit: int) -> ConsoleUsers:
    return ConsoleUsers(platform.db, platform.console_users.store, platform.registry,
                        platform.clock, PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
                        address_limit=address_limit)


async def test_one_password_sprayed_over_many_names_is_throttled_per_address(
    platform: Platform,
) -> None:
    """Each name stays under its own limit; the address that tries them all does not. Another
    address is not held back, and the attacker's own account, signed in between guesses,
    does not reset the address's count."""
    users = _users(platform, address_limit=5)
    await users.create_user("boss", "admin", "right-password-1")
    await users.create_user("mallory", "viewer", "mallory-password-1")
    attacker = "203.0.113.7"
    for i in range(4):
        with pytest.raises(Unauthorized):
            await users.authenticate(f"name-{i}", "Summer2026!", attacker)
    await users.authenticate("mallory", "mallory-password-1", attacker)  # clears no count
    with pytest.raises(Unauthorized):
        await users.authenticate("name-4", "Summer2026!", attacker)
    with pytest.raises(Forbidden, match="from this address"):
        await users.authenticate("boss", "right-password-1", attacker)
    with pytest.raises(Forbidden, match="from this address"):
        await users.authenticate("mallory", "mallory-password-1", attacker)
    assert (await users.authenticate("boss", "right-password-1", "198.51.100.1")).name == "boss"
    assert (await users.authenticate("boss", "right-password-1")).name == "boss"  # CLI, tests
    platform.clock.advance(601)  # type: ignore[attr-defined]
    assert (await users.authenticate("boss", "right-password-1", attacker)).name == "boss"


async def test_addresses_of_one_ipv6_64_share_a_throttle(platform: Platform) -> None:
    users = _users(platform, address_limit=3)
    await users.create_user("boss", "admin", "right-password-1")
    for i in range(3):
        with pytest.raises(Unauthorized):
            await users.authenticate(f"name-{i}", "guess", f"2001:db8:1:2::{i + 1:x}")
    with pytest.raises(Forbidden, match="from this address"):
        await users.authenticate("boss", "right-password-1", "2001:db8:1:2:ffff::9")
    assert (await users.authenticate("boss", "right-password-1", "2001:db8:1:3::1")).name == "boss"


async def test_guesses_spread_over_the_64s_of_one_ipv6_48_are_throttled_together(
    platform: Platform,
) -> None:
    """A site holds a whole /48: each guess from another /64 stays under every /64's limit,
    not under the /48's, which allows NETWORK_FACTOR times as many. Another /48 is not held
    back."""
    users = _users(platform, address_limit=2)
    await users.create_user("boss", "admin", "right-password-1")
    for i in range(2 * NETWORK_FACTOR):
        with pytest.raises(Unauthorized):
            await users.authenticate(f"name-{i}", "guess", f"2001:db8:7:{i:x}::1")
    with pytest.raises(Forbidden, match="from this network"):
        await users.authenticate("boss", "right-password-1", "2001:db8:7:ffff::1")
    assert (await users.authenticate("boss", "right-password-1", "2001:db8:8::1")).name == "boss"
    assert (await users.authenticate("boss", "right-password-1", "192.0.2.1")).name == "boss"
    platform.clock.advance(601)  # type: ignore[attr-defined]
    ok = await users.authenticate("boss", "right-password-1", "2001:db8:7:ffff::1")
    assert ok.name == "boss"


def test_an_ipv6_address_has_a_64_and_a_48_key_an_ipv4_one_only_its_own() -> None:
    host, site = address_keys("2001:db8:7:1::1")
    assert host == (address_key("2001:db8:7:1::2"), 1)
    assert site == (address_keys("2001:db8:7:ffff::9")[1][0], NETWORK_FACTOR)
    assert site[0] != address_keys("2001:db8:8:1::1")[1][0]
    assert len(address_keys("192.0.2.1")) == len(address_keys("::ffff:192.0.2.1")) == 1
    assert len(address_keys("testclient")) == 1


async def test_no_typed_name_throttles_an_address(platform: Platform) -> None:
    """Guesses for a name spelled like an address's key count for that name only: nobody can
    lock an address out from elsewhere."""
    users = _users(platform, address_limit=3)
    await users.create_user("boss", "admin", "right-password-1")
    for spelled in ("address:192.0.2.1", "192.0.2.1") * 3:
        with pytest.raises((Unauthorized, Forbidden)):
            await users.authenticate(spelled, "guess", "198.51.100.9")
    assert (await users.authenticate("boss", "right-password-1", "192.0.2.1")).name == "boss"


async def test_no_limit_per_address_when_set_to_zero(platform: Platform) -> None:
    users = _users(platform, address_limit=0)
    await users.create_user("boss", "admin", "right-password-1")
    for i in range(12):
        with pytest.raises(Unauthorized):
            await users.authenticate(f"name-{i}", "guess", "192.0.2.1")
    assert (await users.authenticate("boss", "right-password-1", "192.0.2.1")).name == "boss"


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("2001:db8::1", "2001:db8::ffff:1", True),  # one /64
        ("2001:db8:0:1::1", "2001:db8:0:2::1", False),
        ("[2001:db8::1]", "2001:db8::2", True),
        ("::ffff:192.0.2.1", "192.0.2.1", True),  # IPv4-mapped
        ("192.0.2.1", "192.0.2.2", False),  # IPv4 by address
        ("testclient", "TestClient ", True),  # not an address: the string
        ("testclient", "192.0.2.1", False),
    ],
)
def test_address_keys(a: str, b: str, same: bool) -> None:
    assert (address_key(a) == address_key(b)) is same
    assert address_key(a) != ConsoleUsers._key(a)


async def test_names_that_differ_only_in_case_neither_share_nor_reset_a_throttle(
    platform: Platform,
) -> None:
    """"alice" and "Alice" (made before such twins were refused) shared one throttle, so the
    owner of "Alice" could sign in to their own account after every 9 guesses at "alice" and
    start again: the per-name limit never held."""
    users = _users(platform, address_limit=0)
    await users.create_user("alice", "admin", "right-password-1")
    hashed = PasswordHasher().hash("right-password-2")

    def made_by_an_older_version() -> None:
        with platform.db.writing() as conn:
            conn.execute(insert(t.console_users).values(
                name="Alice", role="viewer", password_hash=hashed, created_at=0.0,
                disabled=False, must_change_password=False, password_set_at=0.0))

    await platform.db.write(made_by_an_older_version)
    for _ in range(FAILURE_LIMIT - 1):
        with pytest.raises(Unauthorized):
            await users.authenticate("alice", "guess")
    assert (await users.authenticate("Alice", "right-password-2")).name == "Alice"
    with pytest.raises(Unauthorized):
        await users.authenticate("alice", "guess")  # the tenth: still counted
    with pytest.raises(Forbidden, match="too many failed sign-ins for this name"):
        await users.authenticate("alice", "right-password-1")
    # nor do guesses at "alice" lock "Alice" out
    assert (await users.authenticate("Alice", "right-password-2")).name == "Alice"
    assert (await users.authenticate(" Alice ", "right-password-2")).name == "Alice"


async def test_a_name_that_differs_only_in_case_from_a_users_is_refused(
    platform: Platform,
) -> None:
    users = platform.console_users
    await users.create_user("alice", "admin", "right-password-1")
    twin = r"named 'alice' already exists \(names differ only in case\)"
    with pytest.raises(Conflict, match=twin):
        await users.create_user("ALICE", "viewer", "right-password-2")
    assert [u.name for u in await users.list_users()] == ["alice"]
