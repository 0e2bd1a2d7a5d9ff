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
