"""Periodic-update scheduling rules (pure functions of literal times, in Unix seconds).

- A (app, user) pair is eligible while the user launched the app within ``active_days``, the
  periodic URL is enabled and a token is set.
- A pair is due ``interval`` after its last success; a new pair (first launch or first token) is
  due at once.
- A failure retries with capped exponential backoff and jitter, never later than the next regular
  time (last success + interval) when that is still ahead.
- A claimed pair is leased: if its worker dies, the pair becomes due again when the lease ends,
  so a restart neither loses it nor fetches it twice in a burst.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

DAY = 86400.0


@dataclass(frozen=True)
class ScheduleRules:
    interval_s: float = 43200.0
    active_days: float = 7.0
    retry_base_s: float = 60.0
    retry_max_s: float = 3600.0
    lease_s: float = 120.0

    def active_since(self, now: float) -> float:
        """Users whose last launch is at or after this time are active."""
        return now - self.active_days * DAY

    def is_active(self, last_launch_at: float | None, now: float) -> bool:
        return last_launch_at is not None and last_launch_at >= self.active_since(now)

    def next_after_success(self, fetched_at: float) -> float:
        return fetched_at + self.interval_s

    def retry_delay(self, failures: int, rand: Callable[[], float]) -> float:
        """Equal-jitter exponential backoff: between half and all of base * 2^(failures-1),
        capped at retry_max_s and at the interval itself."""
        cap = min(self.retry_max_s, self.interval_s)
        exp = min(cap, self.retry_base_s * float(2 ** max(0, min(failures - 1, 30))))
        return exp / 2 + rand() * exp / 2

    def next_after_failure(
        self,
        now: float,
        failures: int,
        last_success_at: float | None,
        rand: Callable[[], float],
    ) -> float:
        retry = now + self.retry_delay(failures, rand)
        if last_success_at is not None:
            regular = last_success_at + self.interval_s
            if regular > now:
                return min(retry, regular)
        return retry

    def lease_until(self, now: float) -> float:
        return now + self.lease_s


# what says the developer's host itself is in trouble (down, overloaded, too slow), as opposed
# to an answer about one request (401 for one user's token, 404 for one path): only the former
# counts towards resting the whole host, for every app on it
_HOST_DOWN = frozenset({"timeout", "connection_error"})
_NO_WORD = frozenset({"token_not_set", "no_url", "blocked_address", "host_backoff"})


def host_answered(verdict: str, status: int | None) -> bool | None:
    """How a fetch's outcome speaks of its host: False when the host failed (no answer in
    time, no connection, a 5xx or a 429), True when it answered (a 2xx or 304, and a 4xx about
    the request: twenty users with revoked tokens in a row answered 401, and rested the host
    for every user of every app on it), None when no request reached it."""
    if verdict in _NO_WORD:
        return None
    if verdict in _HOST_DOWN:
        return False
    overloaded = status is not None and (status >= 500 or status == 429)
    return not (verdict == "http_error" and overloaded)


@dataclass
class HostHealth:
    """Per-developer-host failure tracking: a host that keeps failing rests as a whole."""

    threshold: int
    rest_s: float
    failures: int = 0
    resting_until: float = 0.0

    def resting(self, now: float) -> bool:
        return now < self.resting_until

    def record(self, ok: bool, now: float) -> None:
        if ok:
            self.failures = 0
            self.resting_until = 0.0
            return
        self.failures += 1
        if self.failures >= self.threshold:
            self.resting_until = now + self.rest_s
            self.failures = 0
