"""Runtime tokens, login codes, openids and confirmation codes (pure given their keys; a login
code's random nonce aside).

A runtime token is stateless: ``<payload>.<mac>`` where payload is base64url JSON of user id,
device id, issue time and, for a token minted in the console or admin API (the simulator), the
one app it is for, and mac an HMAC-SHA256 with the server key. A host's token (host key) is for
every app its user opens. Verifying needs no database
round trip, which keeps the runtime read path short."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

from ..errors import Forbidden, InvalidInput, Unauthorized
from .sealing import seal, unseal

MAX_USER_ID = 128
MAX_DEVICE_ID = 128
CLOCK_SKEW_S = 60  # how far in the future a token's issue time may be (clocks of several nodes)


@dataclass(frozen=True)
class RuntimeIdentity:
    user_id: str
    device_id: str
    issued_at: int
    appid: str | None = None  # the one app the token is for; None: every app (a host's token)

    def for_app(self, appid: str) -> RuntimeIdentity:
        """This identity, if its token may act in ``appid``: a developer who mints a token to
        test an app as some user must not read that user's data (or token) in other apps."""
        if self.appid is not None and self.appid != appid:
            raise Forbidden(f"this runtime token is for app {self.appid}, not {appid}")
        return self


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison that also takes non-ASCII input (a forged token may carry any
    character; str comparison would raise on it)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def _mac(key: bytes, purpose: str, message: str) -> str:
    return _b64(hmac.new(key, f"{purpose}:{message}".encode(), hashlib.sha256).digest())


def make_runtime_token(key: bytes, identity: RuntimeIdentity) -> str:
    claims: dict[str, str | int] = {
        "u": identity.user_id,
        "d": identity.device_id,
        "t": identity.issued_at,
    }
    if identity.appid is not None:
        claims["a"] = identity.appid
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{payload}.{_mac(key, 'rt', payload)}"


def read_runtime_token(key: bytes, token: str, *, max_age_s: float, now: float) -> RuntimeIdentity:
    payload, _, mac = token.partition(".")
    if not payload or not mac or not _same(mac, _mac(key, "rt", payload)):
        raise Unauthorized("invalid runtime token")
    try:
        data = json.loads(_unb64(payload))
        app = data.get("a")
        identity = RuntimeIdentity(
            str(data["u"]), str(data["d"]), int(data["t"]), None if app is None else str(app)
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise Unauthorized("invalid runtime token") from exc
    if now - identity.issued_at > max_age_s:
        raise Unauthorized("runtime token expired")
    if identity.issued_at > now + CLOCK_SKEW_S:
        raise Unauthorized("runtime token issued in the future")
    return identity


@dataclass(frozen=True)
class LoginCode:
    """What a login code carries: the user's openid for that app, never the host's user id,
    so a code seen by mini-program code or a developer server reveals nothing more."""

    appid: str
    openid: str
    expires_at: float
    nonce: str


def make_login_code(key: bytes, code: LoginCode) -> str:
    """A self-contained one-time code (wx.login), encrypted and authenticated (ChaCha20-Poly1305
    with a key derived from the server key): like WeChat's, it reveals nothing to whoever sees
    it, not even the openid. Minting it needs no database write, which keeps it off the
    cold-start path; its single use is enforced when it is exchanged."""
    plain = json.dumps(
        [code.appid, code.openid, int(code.expires_at), code.nonce], separators=(",", ":")
    ).encode()
    return seal(key, "login-code", plain)


def read_login_code(key: bytes, code: str) -> LoginCode | None:
    """The code's content if it is authentic (expiry and use are the caller's to check)."""
    plain = unseal(key, "login-code", code)
    if plain is None:
        return None
    try:
        appid, openid, expires_at, nonce = json.loads(plain)
        return LoginCode(str(appid), str(openid), float(expires_at), str(nonce))
    except (ValueError, TypeError):
        return None


def openid_for(key: bytes, appid: str, user_id: str) -> str:
    """Stable per (app, user), unrelated across apps, and not reversible to the user id."""
    return "o" + _mac(key, "openid", f"{appid}\x00{user_id}")[:27]


def hash_secret(value: str) -> str:
    """Codes and keys are stored as their SHA-256 only: a leaked database does not leak them."""
    return hashlib.sha256(value.encode()).hexdigest()


# "*" addresses every connected runtime of an app on the event stream (events.broker's
# EVERYONE): as a user's id, that user's own data would be pushed to all of them
RESERVED_IDS = frozenset({"*"})


def validate_id(kind: str, value: str, limit: int = MAX_USER_ID) -> str:
    if not value or len(value) > limit or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidInput(f"{kind} must be 1..{limit} printable characters")
    if value in RESERVED_IDS:
        raise InvalidInput(f"{kind} {value!r} is reserved")
    return value


ACCESS_TOKEN_TTL_S = 7200  # WeChat's expires_in


def make_access_token(key: bytes, appid: str, secret: str, issued_at: int) -> str:
    """A server API access token (WeChat's /cgi-bin/token) for ``appid``: bound to the app's
    current secret, so rotating the secret ends every token issued before."""
    payload = _b64(json.dumps({"a": appid, "t": issued_at}, separators=(",", ":")).encode())
    return f"{payload}.{_mac(key, 'at:' + hash_secret(secret), payload)}"


def access_token_claims(token: str) -> tuple[str, int] | None:
    """(appid, issued_at) as the token states them, NOT yet verified (see check_access_token)."""
    payload = token.partition(".")[0]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims["a"]), int(claims["t"])
    except (ValueError, KeyError, TypeError, OverflowError):  # "t": 1e400 is infinity
        return None


def check_access_token(key: bytes, token: str, secret: str) -> bool:
    payload, _, mac = token.partition(".")
    return bool(payload and mac) and _same(mac, _mac(key, "at:" + hash_secret(secret), payload))
