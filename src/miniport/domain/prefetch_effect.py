"""Pre-fetch effectiveness (pure): for each launch, whether the pre-fetched data was ready at
the device's first ``getBackgroundFetchData('pre')`` call, how long after the launch it was
ready, and how long the device waited; and the report by scene, path and platform.

Invariants: a launch is judged once, at its first 'pre' read; "ready" means the data had
arrived when the call was made (not after waiting); ``ready_ms`` is known whenever the data
arrived before the read returned, else None; percentiles are nearest-rank over known values."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput
from .requests import Launch
from .shown import short_repr


@dataclass
class LaunchTrace:
    launched_at: float
    scene: int
    path: str
    platform: str
    ready_at: float | None = None  # when the pre-fetched data arrived
    launch: Launch | None = None  # what the launch asked for (its pre-fetch is for it)


@dataclass(frozen=True)
class LaunchOutcome:
    ts: float
    scene: int
    path: str
    platform: str
    ready: bool  # ready when the device first asked
    ready_ms: float | None  # launch -> data arrived
    wait_ms: int  # the waitMs the device asked for
    waited_ms: float  # how long the call actually waited


def judge_launch(
    trace: LaunchTrace, called_at: float, returned_at: float, wait_ms: int
) -> LaunchOutcome:
    ready_at = trace.ready_at
    arrived = ready_at is not None and ready_at <= returned_at
    return LaunchOutcome(
        ts=trace.launched_at,
        scene=trace.scene,
        path=trace.path,
        platform=trace.platform,
        ready=ready_at is not None and ready_at <= called_at,
        ready_ms=(ready_at - trace.launched_at) * 1000
        if arrived and ready_at is not None
        else None,
        wait_ms=wait_ms,
        waited_ms=max(0.0, (returned_at - called_at) * 1000),
    )


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def report(rows: Iterable[tuple[int, str, str, bool, float | None]]) -> list[dict[str, Any]]:
    """Rows of (scene, path, platform, ready, ready_ms) -> one line per (scene, path,
    platform): launches, ready_share, p50_ms, p90_ms; most launches first."""
    groups: dict[tuple[int, str, str], list[tuple[bool, float | None]]] = {}
    for scene, path, platform, ready, ready_ms in rows:
        groups.setdefault((scene, path, platform), []).append((ready, ready_ms))
    out: list[dict[str, Any]] = []
    for (scene, path, platform), items in sorted(
        groups.items(), key=lambda g: (-len(g[1]), g[0][0], g[0][1], g[0][2])
    ):
        known = [ms for _, ms in items if ms is not None]
        out.append(
            {
                "scene": scene,
                "path": path,
                "platform": platform,
                "launches": len(items),
                "ready_share": sum(1 for ready, _ in items if ready) / len(items),
                "p50_ms": percentile(known, 50),
                "p90_ms": percentile(known, 90),
            }
        )
    return out


def day_bound(text: str | None, *, end: bool = False) -> float | None:
    """A report bound: ``YYYY-MM-DD`` (a whole UTC day; as an end, the day is included) or Unix
    seconds; None when not given."""
    if text is None or text == "":
        return None
    refused = InvalidInput(f"{short_repr(text)} is not a date (YYYY-MM-DD) or Unix seconds")
    try:
        if len(text) == 10 and text[4] == "-":
            day = dt.date.fromisoformat(text) + dt.timedelta(days=1 if end else 0)
            return dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()
        seconds = float(text)
    except (ValueError, OverflowError) as exc:  # overflow: the day after 9999-12-31
        raise refused from exc
    if not math.isfinite(seconds):  # "nan", "inf", "1e400": no bound at all
        raise refused
    return seconds
