"""Periodic-update scheduling rules with literal datetimes (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from miniport.domain.schedule import DAY, HostHealth, ScheduleRules, host_answered


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


H = 3600.0
RULES = ScheduleRules()  # 12 h interval, 7 days active, 60 s base, 1 h cap, 120 s lease


def test_defaults_are_the_seeds_twelve_hours_and_seven_days() -> None:
    assert RULES.interval_s == 12 * H
    assert RULES.active_days == 7


def test_due_twelve_hours_after_the_last_success() -> None:
    success = ts(2026, 3, 1, 8, 30)
    assert RULES.next_after_success(success) == ts(2026, 3, 1, 20, 30)
    three_hours = ScheduleRules(interval_s=3 * H)
    assert three_hours.next_after_success(success) == ts(2026, 3, 1, 11, 30)


def test_active_within_seven_days_of_the_last_launch() -> None:
    now = ts(2026, 3, 8, 12, 0)
    assert RULES.active_since(now) == ts(2026, 3, 1, 12, 0)
    assert RULES.is_active(ts(2026, 3, 1, 12, 0), now)  # exactly 7 days: still active
    assert RULES.is_active(ts(2026, 3, 8, 11, 59), now)
    assert not RULES.is_active(ts(2026, 3, 1, 11, 59, 59), now)
    assert not RULES.is_active(None, now)  # never launched
    assert ScheduleRules(active_days=1).is_active(ts(2026, 3, 7, 12, 0), now)
    assert not ScheduleRules(active_days=1).is_active(ts(2026, 3, 7, 11, 0), now)


@pytest.mark.parametrize(("failures", "low", "high"),
                         [(1, 30, 60), (2, 60, 120), (3, 120, 240), (6, 960, 1920),
                          (7, 1800, 3600), (8, 1800, 3600), (50, 1800, 3600), (10_000, 1800, 3600)])
def test_backoff_grows_exponentially_capped_with_equal_jitter(
    failures: int, low: float, high: float,
) -> None:
    assert RULES.retry_delay(failures, lambda: 0.0) == low
    assert RULES.retry_delay(failures, lambda: 1.0) == high
    assert low < RULES.retry_delay(failures, lambda: 0.5) < high


def test_backoff_is_jittered() -> None:
    values = [0.1, 0.9, 0.35]
    delays = {RULES.retry_delay(4, lambda v=v: v) for v in values}  # type: ignore[misc]
    assert len(delays) == 3


def test_backoff_is_never_longer_than_the_interval() -> None:
    short = ScheduleRules(interval_s=100, retry_base_s=60, retry_max_s=3600)
    for failures in range(1, 40):
        assert short.retry_delay(failures, lambda: 1.0) <= 100


def test_a_failure_never_pushes_the_next_regular_fetch_past_the_interval() -> None:
    success = ts(2026, 3, 1, 0, 0)
    regular = ts(2026, 3, 1, 12, 0)
    # a failure 11:50 after the last success: the 30..60 min retry would land after 12:00
    now = ts(2026, 3, 1, 11, 50)
    assert RULES.next_after_failure(now, 7, success, lambda: 1.0) == regular
    assert RULES.next_after_failure(now, 1, success, lambda: 1.0) == now + 60
    # early in the interval the backoff applies as is
    early = ts(2026, 3, 1, 1, 0)
    assert RULES.next_after_failure(early, 3, success, lambda: 0.0) == early + 120


def test_after_the_regular_time_has_passed_backoff_applies() -> None:
    success = ts(2026, 3, 1, 0, 0)
    now = ts(2026, 3, 1, 13, 0)  # the regular 12:00 attempt failed
    assert RULES.next_after_failure(now, 2, success, lambda: 0.0) == now + 60
    assert RULES.next_after_failure(now, 2, None, lambda: 1.0) == now + 120  # never succeeded


def test_a_pair_with_a_short_interval_never_backs_off_past_it() -> None:
    rules = ScheduleRules(interval_s=1, retry_base_s=60, retry_max_s=3600)
    assert rules.retry_delay(5, lambda: 1.0) == 1


def test_lease() -> None:
    now = ts(2026, 3, 1, 9, 0)
    assert RULES.lease_until(now) == now + 120
    assert ScheduleRules(lease_s=30).lease_until(now) == now + 30


def test_host_health_rests_a_host_that_keeps_failing() -> None:
    health = HostHealth(threshold=3, rest_s=300)
    t0 = ts(2026, 3, 1, 9, 0)
    health.record(False, t0)
    health.record(False, t0 + 1)
    assert not health.resting(t0 + 2)
    health.record(False, t0 + 2)
    assert health.resting(t0 + 2)
    assert health.resting(t0 + 301)
    assert not health.resting(t0 + 302)
    assert health.resting_until == t0 + 302


def test_host_health_a_success_resets_the_count() -> None:
    health = HostHealth(threshold=3, rest_s=300)
    t0 = ts(2026, 3, 1, 9, 0)
    health.record(False, t0)
    health.record(False, t0)
    health.record(True, t0)
    health.record(False, t0)
    health.record(False, t0)
    assert not health.resting(t0)


def test_literal_dates_line_up() -> None:
    # the constants the rules use are what they claim
    assert timedelta(days=1).total_seconds() == DAY


@pytest.mark.parametrize(
    ("verdict", "status", "answered"),
    [
        ("cached", 200, True),
        ("not_modified", 304, True),
        ("http_error", 401, True),  # about one user's token: the host is fine
        ("http_error", 404, True),
        ("oversize", 200, True),
        ("bad_encoding", 200, True),
        ("http_error", 500, False),
        ("http_error", 503, False),
        ("http_error", 429, False),
        ("timeout", None, False),
        ("connection_error", None, False),
        ("token_not_set", None, None),  # no request went out
        ("host_backoff", None, None),
        ("blocked_address", None, None),
    ],
)
def test_only_the_hosts_own_trouble_counts_against_it(
    verdict: str, status: int | None, answered: bool | None
) -> None:
    assert host_answered(verdict, status) is answered
