"""The periodic fetch engine: claim due pairs, fetch them concurrently (bounded overall and per
developer host), and store results in batches.

It is a pipeline: a claimer keeps up to ``concurrency`` fetches in flight, each finished fetch
queues its outcome, and a recorder writes queued outcomes in one transaction per batch and then
tells connected runtimes. When nothing is due it sleeps until the next due time (at most a
second, so changes made by another process are seen), or until ``wake()``.

Leases: every claimed pair is held until the result of its last claim is stored (a pair made due
while held is claimed again), and its lease is renewed while it
waits (for a per-host slot, say), so neither this worker nor another claims it again within the
interval. On stop, fetches in flight get ``stop_grace_s`` to finish; the rest are cancelled and
their claims released (due at once), so a stop is prompt and loses nothing."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from ..clock import Clock
from ..domain.acceptance import Verdict
from ..domain.requests import OutboundRequest, Validators, build_periodic_request
from ..domain.schedule import HostHealth, ScheduleRules, host_answered
from ..errors import StateUnavailable, TokenNotSet
from ..storage.db import Database
from ..storage.fetches import DueFetch, FetchRecord, FetchStore, ScheduleUpdate
from .client import Fetcher, FetchResult
from .outcome import record_for, schedule_after

log = logging.getLogger("miniport.engine")
RETRY_S = 1.0  # the first wait after a claim failed (the database away), doubling ...
RETRY_MAX_S = 30.0  # ... up to this
Notify = Callable[[Sequence[FetchRecord]], Awaitable[None]]
Pair = tuple[str, str]


async def fetch_periodic(
    fetcher: Fetcher,
    due: DueFetch,
    now: float,
    timeout_s: float,
    *,
    conditional: bool = True,
) -> tuple[FetchResult, OutboundRequest | None]:
    """Fetch one pair's periodic URL. Returns the result and the exact request sent (None when
    no request could be made)."""
    if not due.token:
        return FetchResult(Verdict.TOKEN_NOT_SET, due.url, error=TokenNotSet().message), None
    request = build_periodic_request(
        base_url=due.url,
        appid=due.appid,
        secret=due.secret,
        token=due.token,
        timestamp=int(now),
        validators=Validators(due.etag, due.last_modified) if conditional else None,
        headers=dict(due.headers),
        version=due.version,
        env_version=due.env_version,
    )
    return await fetcher.fetch(request, timeout_s=due.timeout_s or timeout_s), request


@functools.lru_cache(maxsize=4096)
def _host_of(url: str) -> str:
    return urlsplit(url).netloc.lower()


class PeriodicEngine:
    def __init__(
        self,
        *,
        db: Database,
        store: FetchStore,
        fetcher: Fetcher,
        rules: ScheduleRules,
        clock: Clock,
        timeout_s: float,
        concurrency: int,
        host_concurrency: int,
        claim_batch: int,
        host_failure_threshold: int,
        host_backoff_s: float,
        notify: Notify | None = None,
        rand: Callable[[], float] = random.random,
        stop_grace_s: float = 2.0,
    ) -> None:
        self.db, self.store, self.fetcher, self.rules, self.clock = db, store, fetcher, rules, clock
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.host_concurrency = host_concurrency
        self.claim_batch = claim_batch
        self.host_failure_threshold = host_failure_threshold
        self.host_backoff_s = host_backoff_s
        self.notify = notify
        self.rand = rand
        self._host_slots: dict[str, asyncio.Semaphore] = {}
        self._host_health: dict[str, HostHealth] = {}
        self._in_flight = 0
        # claim in sizeable batches: each claim is a write transaction
        self._low_water = max(1, min(claim_batch, concurrency) // 2)
        self._slot_free = asyncio.Event()
        self._wake = asyncio.Event()
        self._done: list[tuple[FetchRecord, ScheduleUpdate]] = []
        self._done_event = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # claimed, result not stored yet: the lease set (each pair's lease is its latest claim's,
        # the row's), and how many claims of each pair are held: a pair made due while held (a
        # new token) is claimed again, and stays held until its last claim's result is stored
        self._leases: dict[Pair, float] = {}
        self._claims: collections.Counter[Pair] = collections.Counter()
        self.stop_grace_s = stop_grace_s
        self.completed = 0

    def in_flight(self) -> int:
        """Claimed fetches not yet recorded (running, or done and waiting for the recorder)."""
        return self._in_flight + len(self._done)

    def wake(self) -> None:
        self._wake.set()

    # --- one pair ---
    def _health(self, host: str) -> HostHealth:
        health = self._host_health.get(host)
        if health is None:
            health = HostHealth(self.host_failure_threshold, self.host_backoff_s)
            self._host_health[host] = health
        return health

    async def _fetch_one(self, due: DueFetch) -> None:
        try:
            host = _host_of(due.url)
            health = self._health(host)
            now = self.clock.now()
            request: OutboundRequest | None = None
            retry_at = None
            if health.resting(now):  # the whole host rests: no request, back when it ends
                result = FetchResult(
                    Verdict.HOST_BACKOFF,
                    due.url,
                    error=f"host {host} is resting after repeated failures",
                )
                retry_at = health.resting_until
            else:
                result, request, now = await self._fetch_bounded(due, host, now)
                answered = host_answered(result.verdict, result.status)
                if answered is not None:
                    health.record(answered, now)
            record = record_for(
                result,
                appid=due.appid,
                user_id=due.user_id,
                kind="periodic",
                trigger="schedule",
                now=now,
                requested_url=request.url if request else due.url,
                arrived_at=self.clock.now(),
                route=due.route,
                token=due.token,
            )
            update = schedule_after(
                due,
                result.verdict,
                now,
                self.rules,
                self.rand,
                error=result.error,
                etag=result.etag,
                last_modified=result.last_modified,
                next_due_at=retry_at,
            )
            self._finish(record, update)
        except Exception:  # a bug must not stall the pipeline; the lease retries the pair
            log.exception("periodic fetch of %s/%s failed", due.appid, due.user_id)
            self._unhold((due.appid, due.user_id))
            self._release()
        except asyncio.CancelledError:  # stopping: run() releases the claim
            self._release()
            raise

    async def _fetch_bounded(
        self, due: DueFetch, host: str, now: float
    ) -> tuple[FetchResult, OutboundRequest | None, float]:
        """Fetch within the per-host bound (skipped when the overall bound is the tighter
        one); returns the time the request went out."""
        if self.host_concurrency >= self.concurrency:
            return (*await fetch_periodic(self.fetcher, due, now, self.timeout_s), now)
        slot = self._host_slots.get(host)
        if slot is None:
            slot = self._host_slots[host] = asyncio.Semaphore(self.host_concurrency)
        async with slot:
            now = self.clock.now()
            return (*await fetch_periodic(self.fetcher, due, now, self.timeout_s), now)

    def _finish(self, record: FetchRecord, update: ScheduleUpdate) -> None:
        self._done.append((record, update))
        self._done_event.set()
        self._release()

    def _release(self) -> None:
        self._in_flight -= 1
        # wake the claimer only when a sizeable batch can be claimed (or all is done)
        if self.concurrency - self._in_flight >= self._low_water or self._in_flight == 0:
            self._slot_free.set()

    # --- the pipeline ---
    async def _record_loop(self, stop: asyncio.Event) -> None:
        while not (stop.is_set() and not self._done and self._in_flight == 0):
            if not self._done:
                self._done_event.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._done_event.wait(), 0.2)
                continue
            if len(self._done) < self.claim_batch and self._in_flight:
                await asyncio.sleep(0.02)  # let a batch gather: one transaction per batch
            await self.flush()

    async def flush(self) -> int:
        batch, self._done = self._done, []
        if not batch:
            return 0
        try:
            # as stored: a body fetched with a previous token is neither stored nor pushed
            records = await self.db.write(
                self.store.record, [r for r, _ in batch], [u for _, u in batch]
            )
        except StateUnavailable:  # each alone would fail too: one write per try, not per row
            log.warning("storing %d fetch results failed: the state database is away; their "
                        "pairs are fetched again once their lease runs out", len(batch))
            records = []
        except Exception:
            # one bad row must not stop the recorder: write each alone, drop what still fails
            # (its lease makes the pair due again, so nothing is lost for good)
            log.exception("storing %d fetch results failed; storing them one by one", len(batch))
            records = []
            for record, update in batch:
                try:
                    records += await self.db.write(self.store.record, [record], [update])
                except Exception:
                    log.exception("dropped the result of %s/%s", record.appid, record.user_id)
        # stored or dropped, no claim of this batch is held any more: a dropped result's lease
        # must run out (the pair is then due again), not be renewed with the held ones
        for record, _ in batch:
            self._unhold((record.appid, record.user_id))
        self.completed += len(batch)
        if self.notify is not None:
            try:
                await self.notify(records)
            except Exception:
                log.exception("notifying runtimes failed")
        return len(batch)

    async def _claim(self, limit: int) -> list[DueFetch]:
        """Claim due pairs and hold their leases. A pair held already is claimed again only if
        it was made due meanwhile (a new token): it is then fetched again, on purpose."""
        now = self.clock.now()
        lease = self.rules.lease_until(now)
        claimed = await self.db.write(
            self.store.claim_due, now, self.rules.active_since(now), lease, limit
        )
        for due in claimed:
            self._leases[(due.appid, due.user_id)] = lease
            self._claims[(due.appid, due.user_id)] += 1
        return claimed

    def _unhold(self, pair: Pair) -> None:
        """One claim of ``pair`` is over (its result stored or dropped). The pair's lease
        stays held while another claim of it is in flight: the first result must not end the
        second claim's lease, which would then run out and let the pair be claimed again."""
        self._claims[pair] -= 1
        if self._claims[pair] <= 0:
            del self._claims[pair]
            self._leases.pop(pair, None)

    async def _renew(self, lease_until: float, older_than: float) -> None:
        """Move the leases this worker holds that end before ``older_than`` to ``lease_until``
        (a lease ending now is a released claim)."""
        held = [(a, u, old) for (a, u), old in self._leases.items() if old < older_than]
        if not held:
            return
        await self.db.write(self.store.renew_leases, held, lease_until)
        for a, u, old in held:
            if self._leases.get((a, u)) == old:
                self._leases[(a, u)] = lease_until

    async def _renew_loop(self) -> None:
        period = self.rules.lease_s / 3
        while True:
            await asyncio.sleep(period)
            now = self.clock.now()
            try:
                await self._renew(self.rules.lease_until(now), now + 2 * period)
            except Exception:  # a failed renewal is retried; at worst a pair is fetched twice
                log.exception("renewing %d leases failed", len(self._leases))

    async def _finish_in_flight(self) -> None:
        """Let fetches in flight finish for ``stop_grace_s``; cancel the rest and release their
        claims, so the next worker fetches them at once."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.stop_grace_s)
        if self._tasks:
            log.info("stopping: %d fetches still in flight are released", len(self._tasks))
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _wait_for_work(self) -> None:
        self._wake.clear()  # before reading: a wake() during the read is not lost
        now = self.clock.now()
        next_due = await self.db.read(self.store.next_due_at, self.rules.active_since(now))
        delay = 1.0 if next_due is None else min(1.0, max(0.0, next_due - now))
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def run(self, stop: asyncio.Event, *, until_idle: bool = False) -> None:
        """Run until ``stop`` is set (or, with ``until_idle``, until nothing is due). The
        database away (a claim or the idle poll failing) does not end it: it tries again
        after a wait that doubles from RETRY_S to RETRY_MAX_S, and goes on once it answers."""
        recorder = asyncio.create_task(self._record_loop(stop))
        renewer = asyncio.create_task(self._renew_loop())
        failures = 0
        try:
            while not stop.is_set():
                try:
                    if not await self._step(until_idle):
                        break
                    failures = 0
                except Exception as exc:  # the state database away: the loop must outlive it
                    failures += 1
                    delay = min(RETRY_MAX_S, RETRY_S * 2 ** min(failures - 1, 16))
                    if isinstance(exc, StateUnavailable):  # Database logs why: one line here
                        log.warning("claiming due fetches: %s; again in %.1f s", exc, delay)
                    else:
                        log.exception("claiming due fetches failed; trying again in %.1f s", delay)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
        finally:
            await self._finish_in_flight()
            stop.set()
            self._done_event.set()  # the recorder need not wait out its poll to see the stop
            await recorder
            await self.flush()
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self._release_claims()

    async def _step(self, until_idle: bool) -> bool:
        """One turn of ``run``: claim what there is room for, or wait for room or for work.
        False when ``until_idle`` is met."""
        room = self.concurrency - self._in_flight
        if room <= 0 or (room < self._low_water and self._in_flight):
            self._slot_free.clear()
            await self._slot_free.wait()
            return True
        claimed = await self._claim(min(room, self.claim_batch))
        for due in claimed:
            self._in_flight += 1
            task = asyncio.create_task(self._fetch_one(due))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if claimed:
            return True
        if until_idle and self._in_flight == 0:
            if not self._done:
                return False
            await asyncio.sleep(0.01)  # the recorder is storing the last results
            return True
        if self._in_flight:
            self._slot_free.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_free.wait(), 0.05)
        else:
            await self._wait_for_work()
        return True

    async def _release_claims(self) -> None:
        """Claims still held after the last flush (fetches cancelled, results that failed to
        store) become due at once instead of waiting out their lease."""
        if self._leases:
            now = self.clock.now()
            try:
                await self._renew(now, float("inf"))
            except Exception:  # the leases run out by themselves
                log.exception("releasing %d claims failed", len(self._leases))
            self._leases.clear()
            self._claims.clear()
