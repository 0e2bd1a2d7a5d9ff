"""Pre-fetch effectiveness rules with literal times."""

from __future__ import annotations

from miniport.domain.prefetch_effect import LaunchTrace, judge_launch, percentile, report


def test_ready_before_the_call() -> None:
    trace = LaunchTrace(100.0, 1001, "pages/a", "ios", ready_at=100.25)
    out = judge_launch(trace, called_at=100.5, returned_at=100.5, wait_ms=0)
    assert (out.ready, out.ready_ms, out.waited_ms) == (True, 250.0, 0.0)


def test_arrived_while_the_device_waited() -> None:
    trace = LaunchTrace(100.0, 1001, "pages/a", "android", ready_at=100.75)
    out = judge_launch(trace, called_at=100.5, returned_at=100.75, wait_ms=2000)
    assert (out.ready, out.ready_ms, out.wait_ms, out.waited_ms) == (False, 750.0, 2000, 250.0)


def test_never_arrived() -> None:
    trace = LaunchTrace(100.0, 1001, "pages/a", "android")
    out = judge_launch(trace, called_at=100.5, returned_at=102.5, wait_ms=2000)
    assert (out.ready, out.ready_ms, out.waited_ms) == (False, None, 2000.0)


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 90) == 5.0
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 50) == 5.0 and percentile(values, 90) == 9.0
    assert percentile(values, 100) == 10.0


def test_report_groups_by_scene_path_platform() -> None:
    rows = [
        (1001, "pages/a", "ios", True, 100.0),
        (1001, "pages/a", "ios", True, 300.0),
        (1001, "pages/a", "ios", False, None),
        (1001, "pages/a", "android", False, 900.0),
        (1007, "pages/b", "ios", True, 50.0),
    ]
    assert report(rows) == [
        {"scene": 1001, "path": "pages/a", "platform": "ios", "launches": 3,
         "ready_share": 2 / 3, "p50_ms": 100.0, "p90_ms": 300.0},
        {"scene": 1001, "path": "pages/a", "platform": "android", "launches": 1,
         "ready_share": 0.0, "p50_ms": 900.0, "p90_ms": 900.0},
        {"scene": 1007, "path": "pages/b", "platform": "ios", "launches": 1,
         "ready_share": 1.0, "p50_ms": 50.0, "p90_ms": 50.0},
    ]  # fmt: skip
