"""Alert rules (pure): state changes only on enough evidence, one per change, a named cause."""

from __future__ import annotations

import pytest

from miniport.domain.alerts import AlertRule, WindowStats, judge
from miniport.errors import InvalidInput

RULE = AlertRule()  # 80 %, 5 min, at least 20 fetches


def stats(ok: int, **failures: int) -> WindowStats:
    counts: dict[tuple[str, int | None], int] = {("cached", 200): ok}
    for name, n in failures.items():
        verdict, _, status = name.partition("_")
        counts[(verdict if not status else "http_error", int(status) if status else None)] = n
    return WindowStats(counts)


def test_state_changes() -> None:
    assert judge(stats(15, timeout=5), RULE, failing=False) is True
    assert judge(stats(15, timeout=5), RULE, failing=True) is None  # already failing: no repeat
    assert judge(stats(16, timeout=4), RULE, failing=True) is False  # 80 %: recovered
    assert judge(stats(16, timeout=4), RULE, failing=False) is None


def test_too_few_fetches_change_nothing() -> None:
    assert judge(stats(0, timeout=19), RULE, failing=False) is None
    assert judge(stats(0), RULE, failing=True) is None
    # not the server's fault: no token, no URL, a resting host do not count
    quiet = WindowStats({("token_not_set", None): 50, ("cached", 200): 1})
    assert quiet.total == 1 and judge(quiet, RULE, failing=False) is None


def test_the_cause_is_the_commonest_failure() -> None:
    assert stats(1, timeout=3, http_503=5).cause() == "http_error 503"
    assert stats(1, timeout=6, http_503=5).cause() == "timeout"
    assert stats(1, oversize=2).cause() == "oversize"
    assert stats(9).cause() is None


@pytest.mark.parametrize(
    ("threshold", "window", "minimum"), [(0, 300, 20), (1.5, 300, 20), (0.8, 30, 20),
                                         (0.8, 300, 0)],
)  # fmt: skip
def test_bad_rules(threshold: float, window: float, minimum: int) -> None:
    with pytest.raises(InvalidInput):
        AlertRule(threshold, window, minimum)


def test_which_channels_an_alert_is_sent_again_on() -> None:
    from miniport.domain.alerts import channels_to_retry

    both = ("webhook", "email")
    t0 = 1_000_000.0
    failed = {"webhook": "http_error 503", "email": "sent"}
    assert channels_to_retry(failed, both, t0, t0 + 30) == ()  # may still be running
    assert channels_to_retry(failed, both, t0, t0 + 61) == ("webhook",)
    assert channels_to_retry({}, both, t0, t0 + 61) == both  # recorded, never delivered
    assert channels_to_retry({"webhook": "timeout"}, ("webhook",), t0, t0 + 86_401) == ()
    again = {**failed, "attempts": 2, "claimed_at": t0 + 61}
    assert channels_to_retry(again, both, t0, t0 + 100) == ()  # its retry may be running
    assert channels_to_retry(again, both, t0, t0 + 122) == ("webhook",)
    assert channels_to_retry({**again, "attempts": 5}, both, t0, t0 + 200) == ()
    final = {"webhook": "blocked_address: 10.0.0.1", "email": "not sent: no SMTP server"}
    assert channels_to_retry(final, both, t0, t0 + 61) == ()
    assert channels_to_retry({"webhook": "bad_url: x"}, ("webhook",), t0, t0 + 61) == ()
