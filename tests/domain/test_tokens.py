"""Runtime tokens, login codes and openids (pure), and the settings they are built from."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from miniport.config import Settings
from miniport.domain.tokens import (
    LoginCode,
    RuntimeIdentity,
    make_login_code,
    make_runtime_token,
    openid_for,
    read_login_code,
    read_runtime_token,
    validate_id,
)
from miniport.errors import Forbidden, InvalidInput, Unauthorized

KEY = b"k" * 32
OTHER = b"o" * 32
T = 1_767_225_600
DAY = 86400


def test_a_runtime_token_carries_its_identity() -> None:
    token = make_runtime_token(KEY, RuntimeIdentity("alice", "phone", T))
    assert read_runtime_token(KEY, token, max_age_s=30 * DAY, now=T + 5) == \
        RuntimeIdentity("alice", "phone", T)


@pytest.mark.parametrize("mangle", [
    lambda t: t + "x",
    lambda t: t.replace(".", ".A", 1),
    lambda t: "A" + t,
    lambda t: t.split(".")[0],
    lambda t: "",
    lambda t: ".",
    lambda t: "not-a-token",
])
def test_a_tampered_runtime_token_is_refused(mangle) -> None:  # type: ignore[no-untyped-def]
    token = make_runtime_token(KEY, RuntimeIdentity("alice", "phone", T))
    with pytest.raises(Unauthorized, match="invalid runtime token"):
        read_runtime_token(KEY, mangle(token), max_age_s=30 * DAY, now=T)


def test_a_token_for_another_user_cannot_be_forged_from_a_real_one() -> None:
    real = make_runtime_token(KEY, RuntimeIdentity("alice", "phone", T))
    forged_payload = make_runtime_token(OTHER, RuntimeIdentity("bob", "phone", T)).split(".")[0]
    with pytest.raises(Unauthorized):
        read_runtime_token(KEY, forged_payload + "." + real.split(".")[1], max_age_s=DAY, now=T)
    with pytest.raises(Unauthorized):  # signed with another server's key
        read_runtime_token(OTHER, real, max_age_s=DAY, now=T)


def test_a_runtime_token_expires() -> None:
    token = make_runtime_token(KEY, RuntimeIdentity("alice", "phone", T))
    read_runtime_token(KEY, token, max_age_s=30 * DAY, now=T + 30 * DAY)
    with pytest.raises(Unauthorized, match="expired"):
        read_runtime_token(KEY, token, max_age_s=30 * DAY, now=T + 30 * DAY + 1)


def test_a_runtime_token_issued_in_the_future_is_refused() -> None:
    """A token claiming a later issue time would outlive its maximum age (and could be minted
    ahead of a key leak's discovery): beyond a small clock skew it is refused."""
    token = make_runtime_token(KEY, RuntimeIdentity("alice", "phone", T + 3600))
    with pytest.raises(Unauthorized, match="future"):
        read_runtime_token(KEY, token, max_age_s=30 * DAY, now=T)
    skewed = make_runtime_token(KEY, RuntimeIdentity("alice", "phone", T + 30))
    assert read_runtime_token(KEY, skewed, max_age_s=30 * DAY, now=T).issued_at == T + 30


def test_login_codes_are_signed_and_carry_app_user_and_expiry() -> None:
    # names long enough that the sealed code (random-looking base64) cannot hold them by
    # chance: with "mpA", one run in a few thousand failed on a code that happened to
    # contain it
    content = LoginCode("mpVisibleApp", "alice-visible-user", T + 300, "nonce1")
    code = make_login_code(KEY, content)
    raw = base64.urlsafe_b64decode(code + "=" * (-len(code) % 4))
    for shown in (code.encode(), raw):  # neither in the text nor merely base64-encoded
        assert b"alice-visible-user" not in shown
        assert b"mpVisibleApp" not in shown
    assert read_login_code(KEY, code) == content
    assert read_login_code(OTHER, code) is None
    assert read_login_code(KEY, code[:-2] + ("AA" if code[-2:] != "AA" else "BB")) is None
    assert read_login_code(KEY, "garbage") is None
    assert read_login_code(KEY, "") is None


def test_openid_is_stable_per_app_and_user_and_unrelated_across_apps() -> None:
    assert openid_for(KEY, "mpA", "alice") == openid_for(KEY, "mpA", "alice")
    ids = {openid_for(KEY, a, u) for a in ("mpA", "mpB") for u in ("alice", "bob")}
    assert len(ids) == 4
    assert openid_for(KEY, "mpA", "alice") != openid_for(OTHER, "mpA", "alice")
    # the separator cannot be gamed: ("mpA", "x") and ("mp", "Ax") differ
    assert openid_for(KEY, "mpA", "x") != openid_for(KEY, "mp", "Ax")


@pytest.mark.parametrize("value", ["", "a" * 129, "bad\nid", "tab\tid", "del\x7fid"])
def test_user_ids_are_bounded_printable_text(value: str) -> None:
    with pytest.raises(InvalidInput, match=r"user id must be 1\.\.128 printable characters"):
        validate_id("user id", value)


def test_the_broadcast_address_is_no_user_id() -> None:
    """A user called "*" had that user's own pushes (their fetched data) sent to every
    connected runtime of the app: "*" is the event stream's address of everyone."""
    from miniport.events.broker import EVERYONE

    with pytest.raises(InvalidInput, match="reserved"):
        validate_id("user id", EVERYONE)
    assert validate_id("user id", "**") == "**"


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("PERIODIC_INTERVAL_S", "ACTIVE_DAYS", "DEV", "DATABASE_URL", "ALLOW_HOSTS",
                 "DATA_DIR"):
        monkeypatch.delenv(f"MINIPORT_{name}", raising=False)
    defaults = Settings.from_env()
    assert defaults.periodic_interval_s == 43200
    assert defaults.active_days == 7
    assert defaults.max_body_bytes == 256 * 1024
    assert defaults.dev is False
    assert defaults.data_dir == Path("miniport-data")

    monkeypatch.setenv("MINIPORT_PERIODIC_INTERVAL_S", "5")
    monkeypatch.setenv("MINIPORT_ACTIVE_DAYS", "1.5")
    monkeypatch.setenv("MINIPORT_DEV", "1")
    monkeypatch.setenv("MINIPORT_ALLOW_HOSTS", "10.0.0.0/8, internal.example ,")
    monkeypatch.setenv("MINIPORT_DATA_DIR", str(tmp_path))
    settings = Settings.from_env()
    assert settings.periodic_interval_s == 5
    assert settings.active_days == 1.5
    assert settings.dev is True
    assert settings.allow_hosts == ("10.0.0.0/8", "internal.example")
    assert settings.state_url == f"sqlite:///{(tmp_path / 'miniport.db').resolve()}"
    monkeypatch.setenv("MINIPORT_DATABASE_URL", "postgresql://u@127.0.0.1/db")
    assert Settings.from_env().state_url == "postgresql://u@127.0.0.1/db"
    assert Settings.from_env(dev=None).dev is True  # an unset override keeps the environment's


@pytest.mark.parametrize(("name", "value"), [("PERIODIC_INTERVAL_S", "0"), ("ACTIVE_DAYS", "-1"),
                                             ("MAX_BODY_BYTES", "abc")])
def test_bad_settings_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(f"MINIPORT_{name}", value)
    with pytest.raises(ValueError, match=name.lower()):
        Settings.from_env()


def test_non_ascii_forgeries_are_refused_not_crashed() -> None:
    from miniport.verify import verify_request

    with pytest.raises(Unauthorized):
        read_runtime_token(KEY, "abc.é", max_age_s=60, now=T)
    assert read_login_code(KEY, "abc.é") is None
    assert verify_request("s", "t=1,v1=é", "GET", "/", now=1) is False


def test_a_login_code_reveals_nothing_without_the_server_key() -> None:
    """Encrypted, not just signed: neither the openid nor the appid can be read from a code, and
    two codes for the same user look unrelated."""
    import base64

    first = make_login_code(KEY, LoginCode("mpAPPID", "oOPENID", T + 300, "n"))
    second = make_login_code(KEY, LoginCode("mpAPPID", "oOPENID", T + 300, "n"))
    for code in (first, second):
        raw = base64.urlsafe_b64decode(code + "=" * (-len(code) % 4))
        for secret in (b"oOPENID", b"mpAPPID", b"OPENID", b"APPID"):
            assert secret not in raw and secret.decode() not in code
    assert first != second and first[:16] != second[:16]
    assert read_login_code(KEY, first) == read_login_code(KEY, second)


@pytest.mark.parametrize("mangle", [
    lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),
    lambda c: ("A" if c[0] != "A" else "B") + c[1:],
    lambda c: c[:20],
    lambda c: c + "AAAA",
    lambda c: c.replace(c[30], "-" if c[30] != "-" else "_", 1),
    lambda c: "!!" + c,
])
def test_a_tampered_login_code_is_refused(mangle) -> None:  # type: ignore[no-untyped-def]
    code = make_login_code(KEY, LoginCode("mpA", "oX", T + 300, "n"))
    assert read_login_code(KEY, mangle(code)) is None


def test_a_sealed_value_opens_only_from_its_canonical_text() -> None:
    """29 sealed bytes end in a base64 character with 2 unused bits: the text with those bits
    changed decodes to the same bytes, and is refused all the same."""
    from miniport.domain.sealing import seal, unseal

    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    text = seal(KEY, "test", b"x")
    assert len(text) % 4 == 3 and unseal(KEY, "test", text) == b"x"
    twin = text[:-1] + alphabet[alphabet.index(text[-1]) ^ 1]
    pad = "=" * (-len(text) % 4)
    assert base64.urlsafe_b64decode(twin + pad) == base64.urlsafe_b64decode(text + pad)
    assert unseal(KEY, "test", twin) is None


def test_a_token_for_one_app_says_so_and_is_refused_in_another() -> None:
    token = make_runtime_token(KEY, RuntimeIdentity("alice", "sim", T, "mpA"))
    identity = read_runtime_token(KEY, token, max_age_s=30 * DAY, now=T)
    assert identity == RuntimeIdentity("alice", "sim", T, "mpA")
    assert identity.for_app("mpA") is identity
    with pytest.raises(Forbidden):
        identity.for_app("mpB")
    every = read_runtime_token(KEY, make_runtime_token(KEY, RuntimeIdentity("bob", "d", T)),
                               max_age_s=30 * DAY, now=T)
    assert every.appid is None and every.for_app("mpB") is every


def test_access_token_claims_that_do_not_parse_are_none() -> None:
    """A payload whose time is 1e400 (infinity) raised OverflowError: a 500 to anyone, before
    the signature was checked."""
    import base64

    from miniport.domain.tokens import access_token_claims

    def token(payload: bytes) -> str:
        return base64.urlsafe_b64encode(payload).decode().rstrip("=") + ".x"

    assert access_token_claims(token(b'{"a":"mpx","t":1e400}')) is None
    assert access_token_claims(token(b'{"a":"mpx","t":"soon"}')) is None
    assert access_token_claims(token(b'{"a":"mpx","t":7}')) == ("mpx", 7)
