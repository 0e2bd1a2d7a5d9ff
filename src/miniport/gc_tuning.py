"""Garbage-collector settings for the long-running server and worker processes, and the timing
of every collection pass they make.

A full collection walks every tracked object; after start-up that is mostly the framework,
SQLAlchemy and the platform's own long-lived objects (hundreds of thousands), so each full pass
paused the event loop for 60–80 ms, which was the whole p99 tail of pre-fetch latency.
``tune_for_serving`` moves what start-up built into the permanent generation (``gc.freeze``:
never scanned again, never freed, which is what it is for) and makes young collections rarer,
so the remaining passes only see objects made while serving. Called once, by the process
entry points only: tests and embedding code keep the interpreter's defaults.

``PauseTimer`` times each pass (``gc.callbacks``: called at its start and its stop) and hands
the generation and the seconds to an observer: the server's ``miniport_gc_pause_seconds``
histogram, so a pause in the latency tail can be told from the rest."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

# gen0: objects allocated (minus freed) before a young pass; gen1/gen2: passes of the younger
# generation before the older one is collected. A request makes a few hundred objects, so a
# young pass comes every few dozen requests and stays well under a millisecond.
THRESHOLDS = (20_000, 20, 20)


def tune_for_serving() -> None:
    gc.collect()  # free start-up garbage first: frozen objects are never freed
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


def end_serving() -> None:
    """At shutdown: the frozen objects go back to the collector, so the interpreter's exit
    frees them like the rest. Left frozen, DuckDB's bindings (nanobind) found their objects
    alive at exit and printed some sixty lines of "leaked instance" warnings at every stop."""
    gc.unfreeze()


class PauseTimer:
    """A ``gc.callbacks`` entry timing each collection pass: ``observe(generation, seconds)``
    at its end. ``install`` adds it, ``remove`` takes it out again."""

    def __init__(self, observe: Callable[[int, float], None]) -> None:
        self.observe = observe
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif phase == "stop" and self._started:
            self.observe(int(info["generation"]), time.perf_counter() - self._started)
            self._started = 0.0

    def install(self) -> PauseTimer:
        if self not in gc.callbacks:
            gc.callbacks.append(self)
        return self

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)
