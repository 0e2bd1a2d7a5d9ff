"""Values stored encrypted with the server key (pure): AES-GCM under a key derived from the
server key for one purpose, so a leaked state database does not leak them.

Invariants: ``unseal(key, seal(key, x, p), p) == x``; a different key or purpose, or any changed
byte, raises InvalidInput rather than returning something else."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import InvalidInput

_VERSION = "v1:"


def _aead(key: bytes, purpose: str) -> AESGCM:
    return AESGCM(hmac.new(key, b"sealed\x00" + purpose.encode(), hashlib.sha256).digest())


def seal(key: bytes, plaintext: str, purpose: str) -> str:
    nonce = os.urandom(12)
    sealed = _aead(key, purpose).encrypt(nonce, plaintext.encode(), purpose.encode())
    return _VERSION + base64.b64encode(nonce + sealed).decode()


def unseal(key: bytes, text: str, purpose: str) -> str:
    if not text.startswith(_VERSION):
        raise InvalidInput("not a sealed value")
    try:
        raw = base64.b64decode(text[len(_VERSION) :], validate=True)
        return _aead(key, purpose).decrypt(raw[:12], raw[12:], purpose.encode()).decode()
    except InvalidTag as exc:
        raise InvalidInput("a sealed value does not open with this server key") from exc
    except ValueError as exc:  # bad base64, too short for a nonce, not UTF-8: damaged
        raise InvalidInput("a sealed value is damaged") from exc


class HeaderSealer:
    """An app's request headers (a name -> value dict) sealed as one value."""

    PURPOSE = "app-headers"

    def __init__(self, key: bytes, previous: bytes | None = None) -> None:
        self._key = key
        self._previous = previous

    def seal(self, headers: dict[str, str]) -> str:
        return seal(self._key, json.dumps(headers, sort_keys=True), self.PURPOSE)

    def open(self, text: str) -> dict[str, str]:
        """The headers; sealed with the current key or, failing that, the previous one (a
        server not yet restarted after a rotation seals with the key it started with)."""
        try:
            plain = unseal(self._key, text, self.PURPOSE)
        except InvalidInput:
            if self._previous is None:
                raise
            plain = unseal(self._previous, text, self.PURPOSE)
        value = json.loads(plain)
        return {str(k): str(v) for k, v in value.items()}
