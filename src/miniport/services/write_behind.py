"""Write-behind for the cold-start path: launches and pre-fetch results are queued and written
in one transaction every ``interval_s`` (group commit), instead of one transaction each.
Flushes run one at a time: when ``flush()`` returns, everything queued before the call is stored.

A pre-fetched body is readable from memory the moment it arrives (``fresh``), and from the
database once flushed; readers take whichever is newer. ``close()`` flushes what is queued."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ..errors import StateUnavailable
from ..storage.db import Database
from ..storage.fetches import FetchRecord, FetchStore, StoredData

log = logging.getLogger("miniport.write_behind")
Key = tuple[str, str, str]
MAX_PENDING = 100_000  # queued items kept while the database is away


class WriteBehind:
    def __init__(
        self,
        db: Database,
        store: FetchStore,
        *,
        interval_s: float = 0.02,
        after_flush: Callable[[], None] = lambda: None,
    ) -> None:
        self.db, self.store, self.interval_s, self.after_flush = db, store, interval_s, after_flush
        self._launches: dict[tuple[str, str], float] = {}
        self._records: list[FetchRecord] = []
        self.fresh: dict[Key, StoredData] = {}
        self._task: asyncio.Task[None] | None = None
        self._wanted = asyncio.Event()
        self._flushing = asyncio.Lock()

    def launch(self, appid: str, user_id: str, at: float) -> None:
        self._launches[(appid, user_id)] = at
        self._kick()

    def record(self, record: FetchRecord) -> None:
        if record.body is not None and record.fetched_at_ms is not None:
            self.fresh[(record.appid, record.user_id, record.kind)] = StoredData(
                record.body, record.fetched_at_ms, record.path, record.query, record.scene
            )
        self._records.append(record)
        self._kick()

    def depth(self) -> int:
        """Launches and fetch results waiting for the next group commit."""
        return len(self._launches) + len(self._records)

    def forget(self, appid: str, user_id: str | None) -> None:
        for key in [k for k in self.fresh if k[0] == appid and user_id in (None, k[1])]:
            del self.fresh[key]

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        self._wanted.set()

    async def _run(self) -> None:
        while self._launches or self._records:
            await asyncio.sleep(self.interval_s)
            try:
                await self.flush()
            except StateUnavailable:  # Database logs why (rate limited); no traceback a second
                await asyncio.sleep(1)
            except Exception:
                log.exception("write-behind flush failed; retrying")
                await asyncio.sleep(1)

    async def flush(self) -> None:
        """Write what is queued. A flush already under way is waited for first, so when this
        returns everything queued before the call is stored (or kept for a retry)."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        launches = [(a, u, t) for (a, u), t in self._launches.items()]
        records = self._records
        self._launches, self._records = {}, []
        if not launches and not records:
            return
        try:
            await self.db.write(self.store.write_batch, launches, records)
        except StateUnavailable:  # all kept for the next try: not one write per item
            self._keep(launches, records)
            raise
        except Exception:
            launches, records = await self._one_by_one(launches, records)
        self._unfresh(records)  # flushed: the database now has them
        if launches:
            self.after_flush()

    def _unfresh(self, records: list[FetchRecord]) -> None:
        """Stop serving these records' bodies from memory (unless a newer one replaced them):
        stored, the database serves them; dropped, nobody should."""
        for r in records:
            key = (r.appid, r.user_id, r.kind)
            data = self.fresh.get(key)
            if data is not None and data.fetched_at_ms == r.fetched_at_ms:
                del self.fresh[key]

    async def _one_by_one(
        self, launches: list[tuple[str, str, float]], records: list[FetchRecord]
    ) -> tuple[list[tuple[str, str, float]], list[FetchRecord]]:
        """After a group write failed on its data: write each item alone. One bad item (say,
        a value the database refuses) is dropped and logged instead of blocking everything
        behind it. An item that failed because the database was away (``StateUnavailable``:
        it may go, or come back, during the pass) is kept for the next try, never taken for a
        bad one; when nothing could be written at all, everything is kept."""
        done_l: list[tuple[str, str, float]] = []
        done_r: list[FetchRecord] = []
        away_l: list[tuple[str, str, float]] = []
        away_r: list[FetchRecord] = []
        bad_l: list[tuple[str, str, float]] = []
        bad_r: list[FetchRecord] = []
        for launch in launches:
            try:
                await self.db.write(self.store.write_batch, [launch], [])
                done_l.append(launch)
            except StateUnavailable:
                away_l.append(launch)
            except Exception:
                bad_l.append(launch)
        for record in records:
            try:
                await self.db.write(self.store.write_batch, [], [record])
                done_r.append(record)
            except StateUnavailable:
                away_r.append(record)
            except Exception:
                bad_r.append(record)
        if not done_l and not done_r:  # nothing went through: keep all and retry
            self._keep(away_l + bad_l, away_r + bad_r)
            raise RuntimeError("the database refused every queued write; retrying")
        for appid, user_id, _ in bad_l:  # the database works: what still fails is bad data
            log.error("write-behind dropped a launch of %s/%s the database refuses",
                      appid, user_id)
        for r in bad_r:  # named, not shown: the record carries the user's data
            log.error("write-behind dropped the %s fetch result of %s/%s (%s) the database "
                      "refuses", r.kind, r.appid, r.user_id, r.verdict)
        self._unfresh(bad_r)  # never stored: not to be read as if it were
        self._keep(away_l, away_r)
        return done_l, done_r

    def _keep(self, launches: list[tuple[str, str, float]], records: list[FetchRecord]) -> None:
        """Queue again what could not be written because the database is away, ahead of what
        was queued since (a launch queued since keeps its newer time), up to MAX_PENDING
        items of each kind: the oldest go first."""
        again = {(appid, user_id): at for appid, user_id, at in launches}
        self._launches = {**again, **self._launches}  # older first; a newer time wins
        kept = records + self._records
        self._unfresh(kept[:-MAX_PENDING])  # the oldest, given up on while the database is away
        self._records = kept[-MAX_PENDING:]
        if len(self._launches) > MAX_PENDING:
            self._launches = dict(list(self._launches.items())[-MAX_PENDING:])

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
