"""Sealing with the server key (pure, given a random nonce): ChaCha20-Poly1305 with a key derived
per purpose from the server key, so a value sealed for one purpose never opens as another and
no other use of the server key meets this one. A sealed value is canonical base64url text
(no padding); opening a tampered, truncated, foreign or non-canonical one gives None, so no two
texts open to the same value (a changed last character never slips through as unused bits)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

NONCE_BYTES = 12
TAG_BYTES = 16


def _cipher(key: bytes, purpose: str) -> ChaCha20Poly1305:
    return ChaCha20Poly1305(hmac.new(key, f"seal:{purpose}".encode(), hashlib.sha256).digest())


def seal(key: bytes, purpose: str, plain: bytes) -> str:
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = nonce + _cipher(key, purpose).encrypt(nonce, plain, purpose.encode())
    return _text(sealed)


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unseal(key: bytes, purpose: str, text: str) -> bytes | None:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if len(raw) < NONCE_BYTES + TAG_BYTES or _text(raw) != text:
            return None
        return _cipher(key, purpose).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], purpose.encode())
    except (InvalidTag, ValueError, TypeError):  # binascii.Error and UnicodeError are ValueErrors
        return None
