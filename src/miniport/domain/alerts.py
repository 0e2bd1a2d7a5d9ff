"""When a developer's server is failing (pure): alert rules over a window of fetch verdicts.

Invariants: a kind's state changes only on enough evidence (at least ``min_fetches`` fetches
in the window); it turns failing when the success share falls under ``threshold`` and recovers
when it is back at or above it; one alert per state change, never one per check. The cause
names the commonest failure (``timeout``, ``http_error 503``, ``oversize`` ...)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput

OK_VERDICTS = frozenset({"cached", "not_modified"})
# not the developer server's fault: no alert for these
IGNORED_VERDICTS = frozenset({"token_not_set", "no_url", "host_backoff"})


@dataclass(frozen=True)
class AlertRule:
    threshold: float = 0.8  # success share, 0..1
    window_s: float = 300.0
    min_fetches: int = 20

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise InvalidInput("the threshold is a success percentage above 0 and at most 100")
        if not 60 <= self.window_s <= 86400:
            raise InvalidInput("the window must be from 1 min to 24 h")
        if not 1 <= self.min_fetches <= 100_000:
            raise InvalidInput("min fetches must be from 1 to 100000")


@dataclass(frozen=True)
class WindowStats:
    """Counts per (verdict, HTTP status) of one kind's fetches in the window."""

    counts: dict[tuple[str, int | None], int]

    @property
    def total(self) -> int:
        return sum(n for (v, _), n in self.counts.items() if v not in IGNORED_VERDICTS)

    @property
    def ok(self) -> int:
        return sum(n for (v, _), n in self.counts.items() if v in OK_VERDICTS)

    def success_rate(self) -> float | None:
        return self.ok / self.total if self.total else None

    def cause(self) -> str | None:
        failures = {
            k: n
            for k, n in self.counts.items()
            if k[0] not in OK_VERDICTS and k[0] not in IGNORED_VERDICTS
        }
        if not failures:
            return None
        verdict, status = max(sorted(failures, key=str), key=lambda k: failures[k])
        return f"{verdict} {status}" if verdict == "http_error" and status else verdict


def judge(stats: WindowStats, rule: AlertRule, failing: bool) -> bool | None:
    """The new state (True: failing) when it changes, else None."""
    rate = stats.success_rate()
    if rate is None or stats.total < rule.min_fetches:
        return None
    now_failing = rate < rule.threshold
    return now_failing if now_failing != failing else None


MAX_DELIVERY_ATTEMPTS = 5
RETRY_FOR_S = 86_400.0  # an alert older than a day is history, not news
IN_FLIGHT_S = 60.0  # a delivery (webhook 10 s, mail 10 s) started this recently may be running


def channels_to_retry(
    delivery: dict[str, Any], configured: tuple[str, ...], ts: float, now: float
) -> tuple[str, ...]:
    """The channels (of ``configured``: "webhook", "email") an alert recorded at ``ts`` is
    sent again on at ``now``: those whose last attempt did not end in "sent" (an alert
    recorded and never delivered, a node stopped in between, has none), unless the failure
    cannot change by trying again (the address is malformed or blocked, no SMTP server is
    configured), the alert is more than a day old, it was tried ``MAX_DELIVERY_ATTEMPTS``
    times, or its last attempt (``claimed_at``, else its recording) may still be running."""
    started = float(delivery.get("claimed_at", ts))
    if now - ts > RETRY_FOR_S or now - started < IN_FLIGHT_S:
        return ()
    if int(delivery.get("attempts", 1)) >= MAX_DELIVERY_ATTEMPTS:
        return ()
    final = ("sent", "bad_url", "blocked_address", "not sent:")
    return tuple(c for c in configured if not str(delivery.get(c, "")).startswith(final))
