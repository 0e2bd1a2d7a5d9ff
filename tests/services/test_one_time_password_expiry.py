"""A generated one-time password expires ``ONE_TIME_PASSWORD_TTL_S`` after it was set: one left
unused in a chat or an e-mail no longer takes the account over. Time comes from the FakeClock."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy import update

from miniport.clock import FakeClock
from miniport.errors import Forbidden, Unauthorized
from miniport.platform import Platform
from miniport.services.console_users import (
    FAILURE_LIMIT,
    ONE_TIME_PASSWORD_TTL_S,
    ConsoleUsers,
)
from miniport.storage import schema as t


def users_of(platform: Platform, clock: FakeClock) -> ConsoleUsers:
    return ConsoleUsers(platform.db, platform.console_users.store, platform.registry, clock,
                        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


async def test_a_fresh_one_time_password_signs_in(platform: Platform, clock: FakeClock) -> None:
    users = users_of(platform, clock)
    _, generated = await users.create_user("finn", "admin")
    assert generated
    clock.advance(ONE_TIME_PASSWORD_TTL_S - 60)
    user = await users.authenticate("finn", generated)
    assert user.must_change_password


async def test_an_expired_one_time_password_is_refused_and_counted(
    platform: Platform, clock: FakeClock
) -> None:
    users = users_of(platform, clock)
    _, generated = await users.create_user("finn", "admin")
    assert generated
    clock.advance(ONE_TIME_PASSWORD_TTL_S)
    with pytest.raises(Forbidden, match=r"expired.*ask an admin for a new one"):
        await users.authenticate("finn", generated)
    # a wrong password still gets the plain answer (the expiry tells nothing without it)
    with pytest.raises(Unauthorized):
        await users.authenticate("finn", "not-the-password")
    # each refusal counted like a wrong password: the throttle closes at the same count
    for _ in range(FAILURE_LIMIT - 2):
        with pytest.raises(Forbidden, match="expired"):
            await users.authenticate("finn", generated)
    with pytest.raises(Forbidden, match="too many"):
        await users.authenticate("finn", generated)


async def test_a_reset_gives_a_new_working_one_time_password(
    platform: Platform, clock: FakeClock
) -> None:
    users = users_of(platform, clock)
    _, old = await users.create_user("finn", "admin")
    assert old
    clock.advance(ONE_TIME_PASSWORD_TTL_S + 1)
    with pytest.raises(Forbidden, match="expired"):
        await users.authenticate("finn", old)
    new = await users.reset_password("finn", actor="boss")
    clock.advance(3600)
    user = await users.authenticate("finn", new)
    assert user.must_change_password and user.password_set_at == clock.now() - 3600
    with pytest.raises(Unauthorized):
        await users.authenticate("finn", old)
    # ... which expires in turn
    clock.advance(ONE_TIME_PASSWORD_TTL_S)
    with pytest.raises(Forbidden, match="expired"):
        await users.authenticate("finn", new)


async def test_a_chosen_password_never_expires(platform: Platform, clock: FakeClock) -> None:
    users = users_of(platform, clock)
    await users.create_user("boss", "admin", "bosses-own-pw")
    _, generated = await users.create_user("finn", "developer")
    assert generated
    user = await users.authenticate("finn", generated)
    token, _ = await users.start_session(user)
    session = await users.session_for(token)
    assert session is not None
    await users.change_password(session, generated, "finns-own-pw")
    clock.advance(400 * 24 * 3600)
    assert not (await users.authenticate("boss", "bosses-own-pw")).must_change_password
    assert not (await users.authenticate("finn", "finns-own-pw")).must_change_password


async def test_the_password_form_refuses_an_expired_one_time_password(
    platform: Platform, clock: FakeClock
) -> None:
    """A session started just before expiry cannot use the expired password to keep the
    account: the password form checks the current password the same way."""
    users = users_of(platform, clock)
    _, generated = await users.create_user("finn", "admin")
    assert generated
    clock.advance(ONE_TIME_PASSWORD_TTL_S - 60)
    token, _ = await users.start_session(await users.authenticate("finn", generated))
    clock.advance(120)
    session = await users.session_for(token)
    assert session is not None
    with pytest.raises(Forbidden, match="expired"):
        await users.change_password(session, generated, "finns-own-pw")


async def test_rows_from_before_the_column_count_from_created_at(
    platform: Platform, clock: FakeClock
) -> None:
    users = users_of(platform, clock)
    _, generated = await users.create_user("finn", "admin")
    assert generated

    def forget() -> None:
        with platform.db.writing() as conn:
            conn.execute(update(t.console_users).values(password_set_at=None))

    await platform.db.write(forget)
    assert (await users.authenticate("finn", generated)).password_set_at is None
    clock.advance(ONE_TIME_PASSWORD_TTL_S)
    with pytest.raises(Forbidden, match="expired"):
        await users.authenticate("finn", generated)
