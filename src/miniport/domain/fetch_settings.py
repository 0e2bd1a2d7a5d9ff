"""Per-app fetch settings (pure): interval, active-days window, timeout and the request headers
a developer's server needs.

Invariants: an interval is 1 h..24 h, an active-days window 1..the platform's, a timeout
1..30 s; a header has a token name (not one the platform sets itself) and a value without line
breaks; a header value is shown only masked (its length hidden beyond 4 visible characters)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import InvalidInput

HOUR = 3600.0
MIN_INTERVAL_S, MAX_INTERVAL_S = HOUR, 24 * HOUR
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 1.0, 30.0
MAX_HEADERS = 10
MAX_HEADER_VALUE = 1024
_UNITS = {"s": 1.0, "m": 60.0, "h": HOUR, "d": 24 * HOUR}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
# set by the platform itself (or by HTTP): a developer header must not replace them
RESERVED = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "user-agent",
        "if-none-match",
        "if-modified-since",
        "accept-encoding",
    }
)


@dataclass(frozen=True)
class FetchSettings:
    """None: the platform's setting."""

    interval_s: float | None = None
    active_days: int | None = None
    timeout_s: float | None = None
    headers: dict[str, str] = field(default_factory=dict)


def parse_duration(text: str, default_unit: str = "s") -> float:
    """``"6h"``, ``"90m"``, ``"5s"``, ``"1d"`` or a plain number in ``default_unit``."""
    match = _DURATION.match(str(text))
    if not match:
        raise InvalidInput(f"{text!r} is not a duration (like 6h, 90m, 5s)")
    return float(match.group(1)) * _UNITS[match.group(2) or default_unit]


def check_interval(seconds: float) -> float:
    if not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise InvalidInput("the interval must be from 1 h to 24 h")
    return seconds


def check_timeout(seconds: float) -> float:
    if not MIN_TIMEOUT_S <= seconds <= MAX_TIMEOUT_S:
        raise InvalidInput(f"the timeout must be from {MIN_TIMEOUT_S:g} s to {MAX_TIMEOUT_S:g} s")
    return seconds


def check_active_days(days: int, platform_days: float) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= platform_days:
        raise InvalidInput(f"active days must be a whole number from 1 to {platform_days:g}")
    return days


def parse_header(line: str) -> tuple[str, str]:
    """``"X-Api-Key: value"`` -> (name, value)."""
    name, sep, value = str(line).partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not _TOKEN.match(name):
        raise InvalidInput("a header is written 'Name: value' with a plain token as its name")
    if name.lower() in RESERVED or name.lower().startswith("x-miniport-"):
        raise InvalidInput(f"the platform sets {name} itself")
    if not value or len(value) > MAX_HEADER_VALUE or any(ord(c) < 0x20 for c in value):
        raise InvalidInput(
            f"a header value is 1..{MAX_HEADER_VALUE} characters without control characters"
        )
    return name, value


def mask(value: str) -> str:
    """What is shown of a header value: its first 2 and last 2 characters when long enough."""
    return f"{value[:2]}…{value[-2:]}" if len(value) >= 12 else "…"
