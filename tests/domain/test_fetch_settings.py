"""Per-app fetch settings rules and sealed header values (pure)."""

from __future__ import annotations

import pytest

from miniport.domain import fetch_settings as fs
from miniport.domain.sealed import HeaderSealer, seal, unseal
from miniport.errors import InvalidInput

KEY = bytes(range(32))


def test_durations() -> None:
    assert fs.parse_duration("6h") == 21600
    assert fs.parse_duration("90m") == 5400
    assert fs.parse_duration("5s") == 5
    assert fs.parse_duration("1d") == 86400
    assert fs.parse_duration("2", "h") == 7200
    assert fs.parse_duration("2.5s") == 2.5
    for bad in ("", "6 hours", "-1h", "h", "1w"):
        with pytest.raises(InvalidInput):
            fs.parse_duration(bad)


def test_ranges() -> None:
    assert fs.check_interval(3600) == 3600 and fs.check_interval(86400) == 86400
    for bad in (3599, 86401):
        with pytest.raises(InvalidInput, match="1 h to 24 h"):
            fs.check_interval(bad)
    assert fs.check_timeout(1) == 1 and fs.check_timeout(30) == 30
    with pytest.raises(InvalidInput):
        fs.check_timeout(0.5)
    assert fs.check_active_days(3, 7) == 3
    for days in (0, 8, True):
        with pytest.raises(InvalidInput):
            fs.check_active_days(days, 7)  # type: ignore[arg-type]


def test_headers() -> None:
    assert fs.parse_header("X-Api-Key:  sk-1 ") == ("X-Api-Key", "sk-1")
    assert fs.parse_header("Authorization: Bearer a:b") == ("Authorization", "Bearer a:b")
    for bad in (
        "X-Api-Key",
        "Bad Name: v",
        "X-Api-Key:",
        "Host: x",
        "X-Miniport-Appid: x",
        "X-A: line\r\nInjected: 1",
        "User-Agent: me",
    ):
        with pytest.raises(InvalidInput):
            fs.parse_header(bad)


def test_mask_hides_all_but_the_ends_of_long_values() -> None:
    assert fs.mask("sk-live-0123456789") == "sk…89"
    assert fs.mask("short-value") == "…"  # too short to show anything


def test_sealed_values_open_only_with_their_key_and_purpose() -> None:
    sealed = seal(KEY, "secret", "p")
    assert sealed.startswith("v1:") and "secret" not in sealed
    assert unseal(KEY, sealed, "p") == "secret"
    assert seal(KEY, "secret", "p") != sealed  # a fresh nonce each time
    for key, purpose in ((bytes(32), "p"), (KEY, "other")):
        with pytest.raises(InvalidInput):
            unseal(key, sealed, purpose)
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(InvalidInput):
        unseal(KEY, tampered, "p")
    sealer = HeaderSealer(KEY)
    assert sealer.open(sealer.seal({"X-Api-Key": "k"})) == {"X-Api-Key": "k"}


@pytest.mark.parametrize("damaged", ["v1:!!!", "v1:AAAA", "v1:", "v1:" + "A" * 40 + "="])
def test_a_damaged_sealed_value_is_invalid_input_not_a_crash(damaged: str) -> None:
    """Bad base64 or a value too short for its nonce raised binascii.Error or ValueError, which
    a key rotation did not expect: it stopped half-way, its new key ring already committed."""
    from miniport.domain.sealed import HeaderSealer
    from miniport.services.keys import _resealed_headers
    from miniport.storage.keyring import KeyRing

    with pytest.raises(InvalidInput):
        HeaderSealer(b"k" * 32).open(damaged)
    ring = KeyRing(b"k" * 32, b"p" * 32, b"o" * 32)
    assert _resealed_headers([("mpx", damaged)], ring) == ([], 1)  # counted, not raised
