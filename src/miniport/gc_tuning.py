"""Garbage-collector settings for the long-running server and worker processes.

A full collection walks every tracked object; after start-up that is mostly the framework,
SQLAlchemy and the platform's own long-lived objects (hundreds of thousands), so each full pass
paused the event loop for 60–80 ms, which was the whole p99 tail of pre-fetch latency.
``tune_for_serving`` moves what start-up built into the permanent generation (``gc.freeze``:
never scanned again, never freed, which is what it is for) and makes young collections rarer,
so the remaining passes only see objects made while serving. Called once, by the process
entry points only: tests and embedding code keep the interpreter's defaults."""

from __future__ import annotations

import gc

# gen0: objects allocated (minus freed) before a young pass; gen1/gen2: passes of the younger
# generation before the older one is collected. A request makes a few hundred objects, so a
# young pass comes every few dozen requests and stays well under a millisecond.
THRESHOLDS = (20_000, 20, 20)


def tune_for_serving() -> None:
    gc.collect()  # free start-up garbage first: frozen objects are never freed
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
