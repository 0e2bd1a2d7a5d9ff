"""The server's garbage-collector settings: start-up objects frozen, young passes rarer. Run in
a child interpreter, so the test process keeps the defaults."""

from __future__ import annotations

import json
import subprocess
import sys

from miniport.gc_tuning import THRESHOLDS

PROBE = """
import gc, json
from miniport.gc_tuning import tune_for_serving
from miniport.platform import create_platform  # a realistic heap: the platform's modules
before = gc.get_freeze_count()
tune_for_serving()
print(json.dumps({"before": before, "frozen": gc.get_freeze_count(),
                  "thresholds": gc.get_threshold(), "young": gc.get_count()[0]}))
"""


def test_serving_freezes_start_up_objects_and_raises_the_thresholds() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    state = json.loads(out.stdout)
    assert state["before"] == 0
    assert state["frozen"] > 50_000  # the imported framework: never scanned again
    assert tuple(state["thresholds"]) == THRESHOLDS
    assert state["young"] < 100  # collected before freezing: no start-up garbage kept


def test_pause_timer_reports_each_pass_with_its_generation_and_duration() -> None:
    import gc

    from miniport.gc_tuning import PauseTimer
    from miniport.metrics import Metrics

    metrics = Metrics()
    timer = PauseTimer(metrics.gc_paused).install()
    try:
        assert timer.install() is timer and gc.callbacks.count(timer) == 1  # installed once
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
    finally:
        timer.remove()
    assert timer not in gc.callbacks
    timer.remove()  # removing twice is harmless
    gc.collect(2)  # not timed any more
    scrape = metrics.exposition().decode()
    assert 'miniport_gc_pause_seconds_count{generation="0"} 1.0' in scrape
    assert 'miniport_gc_pause_seconds_count{generation="2"} 2.0' in scrape
    assert 'miniport_gc_pause_seconds_count{generation="1"}' not in scrape
    total = float(scrape.split('miniport_gc_pause_seconds_sum{generation="2"} ')[1].split()[0])
    assert 0 < total < 5


def test_pause_timer_ignores_a_stop_without_its_start() -> None:
    from miniport.gc_tuning import PauseTimer

    seen: list[tuple[int, float]] = []
    timer = PauseTimer(lambda g, s: seen.append((g, s)))
    timer("stop", {"generation": 2})  # installed in the middle of a pass: no start time
    assert seen == []
    timer("start", {"generation": 1})
    timer("stop", {"generation": 1})
    assert len(seen) == 1 and seen[0][0] == 1 and 0 <= seen[0][1] < 1


def test_recording_a_pass_takes_no_lock_and_keeps_no_object() -> None:
    """The hook can run inside any allocation, including one made while prometheus_client holds
    a histogram's (non-reentrant) lock during a scrape: recording a pass takes no lock (with the
    hook observing a Histogram directly, a pass recorded under its lock hung). And it keeps no
    object: passes kept as (generation, seconds) tuples until the next scrape were long-lived
    objects scattered over the allocator's arenas, each pinning one after a wave of event
    streams had closed (1 MiB apiece not given back)."""
    import sys

    from miniport.metrics import Metrics

    metrics = Metrics()
    for generation in range(3):  # the first pass of each generation notes its creation time
        metrics.gc_paused(generation, 0.001)
    before = sys.getallocatedblocks()
    for i in range(3000):
        metrics.gc_paused(i % 3, 0.0004 * (i % 7))
    assert sys.getallocatedblocks() - before < 100  # it was 2 per pass: 6000
    scrape = metrics.exposition().decode()
    assert 'miniport_gc_pause_seconds_count{generation="1"} 1001.0' in scrape
    # passes of 0, 0.0004 (<= 0.0005) of each 7: 2 of 7, of the 1000 passes of generation 0
    zeros = sum(1 for i in range(0, 3000, 3) if i % 7 < 2)
    bucket = 'miniport_gc_pause_seconds_bucket{generation="0",le="0.0005"} '
    assert f"{bucket}{zeros + 0.0}" in scrape
