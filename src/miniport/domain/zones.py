"""Time zones named by users (reports, dashboards, exports): an IANA name, or None. Every
way ``ZoneInfo`` refuses a name is a refusal here: an unknown name, a malformed one, a name
that is one of tzdata's directories ("America": IsADirectoryError) or too long for a file
name (OSError)."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_NAME = 64  # the longest IANA name is 32 characters


def zone(name: object) -> ZoneInfo | None:
    """The zone named ``name``, or None when there is none by that name."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
