"""What a running platform reports about itself: Prometheus metrics (``GET /metrics``) and the
fetch log (one ``miniport.fetch`` log line per fetch attempt).

Invariants: every platform owns its own :class:`Metrics` and registry (nothing global, so two
platforms in one process — as in the tests — never share counts); the services call the
``fetched``/``launched``/``prefetch_waited``/``events`` hooks and never read metrics back;
gauges (open device connections, queue depths) are read from their owners when scraped."""

from __future__ import annotations

import logging
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from .storage.fetches import FetchRecord

CONTENT_TYPE = CONTENT_TYPE_LATEST
fetch_log = logging.getLogger("miniport.fetch")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BODY_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
GC_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)
GC_BOUNDS = (*(repr(b) for b in GC_BUCKETS), "+Inf")  # the buckets' le labels
ACCEPTED_VERDICTS = ("cached", "not_modified")


class GcPauses:
    """``miniport_gc_pause_seconds``, a histogram by generation of the garbage-collection passes
    (the event loop paused), as a collector of its own: the ``gc.callbacks`` hook may run inside
    any allocation, even one made while prometheus_client holds a histogram's (non-reentrant)
    lock, so ``record`` takes no lock; and it keeps no object. A pass recorded as a Python
    object (a ``(generation, seconds)`` tuple kept until the next scrape, as before) is a
    long-lived object allocated wherever the allocator was at: the passes made while 10,000
    event streams opened pinned a pymalloc arena each (1 MiB that a closed stream's memory
    could not leave with). The counts and sums live in preallocated C arrays instead.

    Only the hook writes (one collection runs at a time), the scrape only reads: no lock."""

    GENERATIONS = 3

    def __init__(self) -> None:
        n = len(GC_BUCKETS) + 1  # and +Inf
        self._counts = array("d", bytes(8 * n * self.GENERATIONS))  # not cumulative
        self._sums = array("d", bytes(8 * self.GENERATIONS))
        self._created = array("d", bytes(8 * self.GENERATIONS))  # 0: no pass yet

    def record(self, generation: int, seconds: float) -> None:
        if not 0 <= generation < self.GENERATIONS:
            return
        if not self._created[generation]:
            self._created[generation] = time.time()
        self._counts[generation * (len(GC_BUCKETS) + 1) + bisect_left(GC_BUCKETS, seconds)] += 1
        self._sums[generation] += seconds

    def collect(self) -> Iterator[Metric]:
        """What a prometheus_client ``Histogram`` labelled by generation would expose."""
        name = "miniport_gc_pause_seconds"
        metric = Metric(name, "Garbage-collection passes (the event loop paused)", "histogram")
        n = len(GC_BUCKETS) + 1
        for generation in range(self.GENERATIONS):
            created = self._created[generation]
            if not created:
                continue
            labels = {"generation": str(generation)}
            total = 0.0
            for i, le in enumerate(GC_BOUNDS):
                total += self._counts[generation * n + i]
                metric.add_sample(name + "_bucket", {**labels, "le": le}, total)
            metric.add_sample(name + "_count", labels, total)
            metric.add_sample(name + "_sum", labels, self._sums[generation])
            metric.add_sample(name + "_created", labels, created)
        yield metric


class ReadCounter:
    """A counter whose value its owner keeps (read at each scrape), exposed as a
    prometheus_client ``Counter`` would expose it."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self.name, self.documentation, self.read = name, documentation, read

    def collect(self) -> Iterator[Metric]:
        metric = Metric(self.name, self.documentation, "counter")
        metric.add_sample(self.name + "_total", {}, float(self.read()))
        yield metric


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.fetches = Counter(
            "miniport_fetches", "Fetch attempts by kind and verdict", ["kind", "verdict"],
            registry=r,
        )  # fmt: skip
        self.fetch_seconds = Histogram(
            "miniport_fetch_duration_seconds", "Fetch latency (request to complete body)",
            ["kind"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.fetch_bytes = Histogram(
            "miniport_fetch_body_bytes", "Size of fetched bodies", ["kind"],
            buckets=BODY_BUCKETS, registry=r,
        )  # fmt: skip
        self.launches = Counter("miniport_launches", "Cold launches reported", registry=r)
        self.prefetch_waits = Histogram(
            "miniport_prefetch_wait_seconds", "Time getBackgroundFetchData waited for a pre-fetch",
            buckets=WAIT_BUCKETS, registry=r,
        )  # fmt: skip
        self.events = Counter(
            "miniport_events", "Analytics events by result (accepted, rejected)", ["result"],
            registry=r,
        )  # fmt: skip

        # passes timed by the gc.callbacks hook (see GcPauses: recording one allocates nothing)
        self.gc_pauses = GcPauses()
        r.register(self.gc_pauses)
        # (kind, verdict) -> its fetch counter, latency and size histograms (labelled children)
        self._fetch_children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}

    def watch(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge read from ``read()`` at each scrape."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def watch_count(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A counter (``NAME_total``) read from ``read()`` at each scrape."""
        self.registry.register(ReadCounter(name, documentation, read))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # --- hooks called by the services ---
    def fetched(self, records: Sequence[FetchRecord]) -> None:
        children = self._fetch_children
        for r in records:
            key = (r.kind, r.verdict)
            child = children.get(key)
            if child is None:  # labels() takes a lock and builds a key: once per pair
                child = children[key] = (
                    self.fetches.labels(r.kind, r.verdict),
                    self.fetch_seconds.labels(r.kind),
                    self.fetch_bytes.labels(r.kind),
                )
            child[0].inc()
            if r.latency_ms is not None:
                child[1].observe(r.latency_ms / 1000)
            if r.bytes:
                child[2].observe(r.bytes)
            self._log(r)

    def launched(self) -> None:
        self.launches.inc()

    def prefetch_waited(self, seconds: float) -> None:
        self.prefetch_waits.observe(seconds)

    def gc_paused(self, generation: int, seconds: float) -> None:
        """Called from a ``gc.callbacks`` hook."""
        self.gc_pauses.record(generation, seconds)

    def events_checked(self, accepted: int, rejected: int) -> None:
        if accepted:
            self.events.labels("accepted").inc(accepted)
        if rejected:
            self.events.labels("rejected").inc(rejected)

    @staticmethod
    def _log(r: FetchRecord) -> None:
        level = logging.INFO if r.verdict in ACCEPTED_VERDICTS else logging.WARNING
        if not fetch_log.isEnabledFor(level):
            return
        latency = f"{r.latency_ms:.0f}ms" if r.latency_ms is not None else "-"
        fetch_log.log(
            level,
            "%s %s/%s %s %s %s %s",
            r.kind, r.appid, r.user_id, r.verdict, r.status or "-", latency, r.url or "-",
            extra={
                "fields": {
                    "kind": r.kind, "appid": r.appid, "user": r.user_id, "trigger": r.trigger,
                    "verdict": r.verdict, "status": r.status, "bytes": r.bytes,
                    "latency_ms": r.latency_ms, "url": r.url, "error": r.error,
                }
            },
        )  # fmt: skip
