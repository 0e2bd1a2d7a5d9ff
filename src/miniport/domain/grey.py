"""Grey release (灰度) of a data URL (pure): which users a kind's grey URL serves.

Invariants: a user's bucket is a stable hash of appid and openid, the same in every process and
release; a user is served by the grey URL when they are one of the app's testers or their
bucket falls under the ratio. So a user stays where they are until the ratio changes, raising
the ratio only adds users (the grey set at N % contains the set at every M < N), and at 0 %
only the testers are grey. A change of the settings (or of a tester) moves only the users whose
serving URL differs before and after it (``url_moves``): a ramp step touches the users between
the two ratios, not the whole app."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

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


@dataclass(frozen=True)
class UrlSettings:
    """A kind's URL settings (a row of fetch_urls): the main URL, its switch, the grey release."""

    url: str | None
    enabled: bool
    grey_url: str | None = None
    grey_ratio: int | None = 0

    @property
    def fetchable(self) -> bool:
        return self.enabled and bool(self.url)


def serving_url(settings: UrlSettings, bucket: int, *, tester: bool) -> str | None:
    """The URL that serves this user under ``settings`` (None: the kind is not fetched)."""
    if not settings.fetchable or settings.url is None:
        return None
    url = settings.url
    return route_for(url, settings.grey_url, settings.grey_ratio or 0, bucket, tester=tester)[0]


def url_moves(
    before: UrlSettings,
    after: UrlSettings,
    bucket: int,
    *,
    tester: bool,
    tester_after: bool | None = None,
) -> bool:
    """A change of the settings (or of the user's tester flag, ``tester_after``) moves this user
    to another URL: their validators and schedule belong to the URL that served them."""
    now_tester = tester if tester_after is None else tester_after
    return serving_url(before, bucket, tester=tester) != serving_url(
        after, bucket, tester=now_tester
    )


def wakes_everyone(before: UrlSettings, after: UrlSettings) -> bool:
    """The change concerns every user at once: the kind starts or stops being fetched, or its
    main URL is replaced by one that served nobody (not a promote, whose grey users stay)."""
    if not before.fetchable or not after.fetchable:
        return True
    return after.url != before.url and after.url != before.grey_url


def replaces_a_url(before: UrlSettings, after: UrlSettings) -> bool:
    """A URL that serves a route (main or grey) is replaced, added or dropped, or the switch
    flips: validators stored before it may come from another URL than the route's now. A ratio
    alone moves users between the routes, which the stored route of validators tells apart."""
    return (before.url, before.enabled, before.grey_url) != (
        after.url,
        after.enabled,
        after.grey_url,
    )
