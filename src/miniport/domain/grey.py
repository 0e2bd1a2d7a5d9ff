"""Grey release (灰度) of a data URL (pure): which users a kind's grey URL serves.

Invariants: a user's bucket is a stable hash of appid and openid, the same in every process and
release; a user is served by the grey URL when they are one of the app's testers or their
bucket falls under the ratio. So a user stays where they are until the ratio changes, raising
the ratio only adds users (the grey set at N % contains the set at every M < N), and at 0 %
only the testers are grey."""

from __future__ import annotations

import hashlib

from ..errors import InvalidInput

BUCKETS = 10_000  # 0.01 % steps: a ratio in whole percent covers ratio * 100 buckets
MAX_RATIO = 100


def grey_bucket(appid: str, openid: str) -> int:
    """The user's bucket, 0 <= bucket < BUCKETS."""
    digest = hashlib.sha256(f"{appid}\x00{openid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def serves_grey(bucket: int, ratio: int, *, tester: bool) -> bool:
    return tester or bucket < ratio * (BUCKETS // MAX_RATIO)


def route_for(
    main_url: str, grey_url: str | None, ratio: int, bucket: int, *, tester: bool
) -> tuple[str, str]:
    """(url, route): the URL that serves this user and whether it is the "main" or "grey" one."""
    if grey_url and serves_grey(bucket, ratio, tester=tester):
        return grey_url, "grey"
    return main_url, "main"


def validate_ratio(ratio: object) -> int:
    """A ratio is a whole percentage 0..100."""
    if isinstance(ratio, bool) or not isinstance(ratio, int) or not 0 <= ratio <= MAX_RATIO:
        raise InvalidInput(f"the grey ratio must be a whole percentage 0..{MAX_RATIO}")
    return ratio
