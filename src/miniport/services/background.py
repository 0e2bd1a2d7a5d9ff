"""Background data for the runtime and the devtools: launch, token, reads, pre-fetch, fetch now,
clear cache, push a refresh."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..clock import Clock
from ..domain.acceptance import Verdict
from ..domain.prefetch_effect import LaunchOutcome, LaunchTrace, day_bound, judge_launch, report
from ..domain.requests import Launch, build_prefetch_request
from ..domain.schedule import ScheduleRules
from ..domain.tokens import validate_id
from ..errors import InvalidInput, NoData, TokenNotSet
from ..events.broker import Broker
from ..fetch.client import Fetcher, FetchResult
from ..fetch.engine import fetch_periodic
from ..fetch.outcome import record_for, schedule_after
from ..fetch.prefetch import SingleFlight
from ..metrics import Metrics
from ..storage.db import Database
from ..storage.fetches import DueFetch, FetchRecord, FetchStore
from ..storage.prefetch_launches import PrefetchLaunchStore
from ..storage.registry import RegistryStore
from .app_cache import AppCache
from .auth import AuthService
from .write_behind import WriteBehind

MAX_TOKEN = 1024
MAX_TRACES = 100_000
MAX_WAIT_MS = 10_000
KINDS = ("periodic", "pre")


def data_message(record: FetchRecord) -> dict[str, Any]:
    return {
        "type": "backgroundFetchData",
        "appid": record.appid,
        "fetchType": record.kind,
        "fetchedData": record.body,
        "timeStamp": record.fetched_at_ms,
        "path": record.path,
        "query": record.query,
        "scene": record.scene,
    }


class BackgroundService:
    def __init__(
        self,
        *,
        db: Database,
        registry: RegistryStore,
        fetches: FetchStore,
        auth: AuthService,
        fetcher: Fetcher,
        broker: Broker,
        clock: Clock,
        rules: ScheduleRules,
        fetch_timeout_s: float,
        prefetch_timeout_s: float,
        wake_engine: Callable[[], None] = lambda: None,
        metrics: Metrics | None = None,
        open_headers: Callable[[str], dict[str, str]] | None = None,
    ) -> None:
        self.db, self.registry, self.fetches, self.auth = db, registry, fetches, auth
        self.fetcher, self.broker, self.clock, self.rules = fetcher, broker, clock, rules
        self.fetch_timeout_s = fetch_timeout_s
        self.prefetch_timeout_s = prefetch_timeout_s
        self.wake_engine = wake_engine
        self.metrics = metrics or Metrics()
        self.prefetch = SingleFlight(self._prefetch)
        self.apps = AppCache(db, registry, open_headers=open_headers)
        self.pending = WriteBehind(db, fetches, after_flush=wake_engine)
        self.launches = PrefetchLaunchStore(db)
        self._traces: dict[tuple[str, str], LaunchTrace] = {}  # launch -> its first 'pre' read
        self._writes: set[asyncio.Task[None]] = set()
        self._versions: dict[tuple[str, str], tuple[str, str]] = {}

    async def close(self) -> None:
        await self.prefetch.drain()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self.pending.close()

    async def notify(self, records: Sequence[FetchRecord]) -> None:
        """Every fetch attempt passes here (periodic, pre-fetch, devtools): count and log it,
        then send accepted bodies to the user's connected runtimes."""
        self.metrics.fetched(records)
        for record in records:
            if record.body is not None:
                await self.broker.publish(record.user_id, data_message(record))

    # --- runtime ---
    async def launch(self, appid: str, user_id: str, launch: Launch) -> dict[str, Any]:
        """A cold start: pre-fetch at once (if enabled) and mark the user active. The launch is
        written behind (grouped with others); the pre-fetch does not wait for it."""
        targets = await self.apps.get(appid)
        prefetching = targets.enabled_url("pre") is not None
        if prefetching:
            if len(self._traces) > MAX_TRACES:  # launches never read: forget the oldest
                for key in list(self._traces)[: MAX_TRACES // 10]:
                    del self._traces[key]
            self._traces[(appid, user_id)] = LaunchTrace(
                self.clock.now(), launch.scene, launch.path, launch.platform, launch=launch
            )
            self.prefetch.start(appid, user_id, launch)
        self.pending.launch(appid, user_id, self.clock.now())
        self.metrics.launched()
        versions = (launch.version, launch.env_version)
        if any(versions) and self._versions.get((appid, user_id)) != versions:
            self._versions[(appid, user_id)] = versions  # stored only when it changes
            if len(self._versions) > MAX_TRACES:
                self._versions.clear()
            task = asyncio.create_task(
                self.db.write(self.fetches.set_version, appid, user_id, *versions)
            )
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)
        return {"errMsg": "launch:ok", "prefetch": prefetching}

    async def set_token(self, appid: str, user_id: str, token: object) -> None:
        if not isinstance(token, str):
            raise InvalidInput("setBackgroundFetchToken:fail token must be a string")
        if not token or len(token) > MAX_TOKEN:
            raise InvalidInput(
                f"setBackgroundFetchToken:fail token must be 1..{MAX_TOKEN} characters"
            )
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in token):  # NUL: PostgreSQL's 500
            raise InvalidInput("setBackgroundFetchToken:fail token contains control characters")
        await self.apps.get(appid)
        # a changed token (another account, perhaps) drops the stored bodies in set_token's
        # transaction, and here those fetched for the previous token and not stored yet: not
        # read (nor stored: their write is checked). A first token is the same user's, who
        # signed in after a launch: what the login code fetched is theirs and stays.
        if await self.db.write(self.fetches.set_token, appid, user_id, token, self.clock.now()):
            self.pending.forget(appid, user_id)
        self.wake_engine()

    async def get_token(self, appid: str, user_id: str) -> str:
        user = await self.db.read(self.fetches.get_user, appid, user_id)
        if user is None or not user.get("token"):
            await self.apps.get(appid)  # an unknown app is a 404 of its own
            raise TokenNotSet()
        return str(user["token"])

    async def get_data(
        self, appid: str, user_id: str, kind: str, wait_ms: int = 0
    ) -> dict[str, Any]:
        if kind not in KINDS:
            raise InvalidInput(f"fetchType must be periodic or pre, not {kind!r}")
        if wait_ms < 0 or wait_ms > MAX_WAIT_MS:
            raise InvalidInput(f"waitMs must be 0..{MAX_WAIT_MS}")
        trace = self._traces.get((appid, user_id)) if kind == "pre" else None
        called_at = self.clock.now()
        if wait_ms and kind == "pre":
            started = time.perf_counter()
            await self.prefetch.wait(appid, user_id, wait_ms / 1000)
            self.metrics.prefetch_waited(time.perf_counter() - started)
        if trace is not None and self._traces.get((appid, user_id)) is trace:
            del self._traces[(appid, user_id)]  # judged once, at the launch's first read
            self._record_launch(appid, judge_launch(trace, called_at, self.clock.now(), wait_ms))
        # the in-memory copy first: a flush between the two reads then still finds it stored
        fresh = self.pending.fresh.get((appid, user_id, kind))
        data = await self.db.read_point(self.fetches.get_data, appid, user_id, kind)
        if fresh is not None and (data is None or fresh.fetched_at_ms > data.fetched_at_ms):
            data = fresh  # arrived, not yet flushed
        if data is None:
            # checked only on this failure path, so a read of cached data stays one query
            await self.apps.get(appid)
            pending = self.prefetch.in_flight(appid, user_id) is not None and kind == "pre"
            raise NoData(
                "getBackgroundFetchData:fail "
                + (
                    "the fetch has not finished and there is no earlier data"
                    if pending
                    else "no data has been fetched yet"
                )
            )
        result: dict[str, Any] = {
            "fetchedData": data.body,
            "timeStamp": data.fetched_at_ms,
            "errMsg": "getBackgroundFetchData:ok",
        }
        if kind == "pre":
            result.update(path=data.path or "", query=data.query or "", scene=data.scene)
        return result

    # --- pre-fetch ---
    async def _prefetch(self, appid: str, user_id: str, launch: Launch) -> FetchRecord:
        record, _ = await self._fetch_pre(appid, user_id, launch, trigger="launch")
        trace = self._traces.get((appid, user_id))
        # the user's current launch, if this fetch is for it (or for one it joined): an
        # earlier launch's answer, arriving after the user reopened the app elsewhere, made the
        # later launch count as ready though its own data had not come
        if (
            record.body is not None
            and trace is not None
            and trace.ready_at is None
            and trace.launch == launch
        ):
            trace.ready_at = self.clock.now()
        return record

    def _record_launch(self, appid: str, outcome: LaunchOutcome) -> None:
        task = asyncio.create_task(self.db.write(self.launches.add, appid, [outcome]))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def prefetch_report(
        self, appid: str, since: str | None = None, until: str | None = None
    ) -> dict[str, Any]:
        """Pre-fetch effectiveness by scene, path and platform (dates: YYYY-MM-DD, UTC)."""
        await self.apps.get(appid)
        low, high = day_bound(since), day_bound(until, end=True)
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        rows = await self.db.read(self.launches.rows, appid, low, high)
        return {"appid": appid, "rows": report(rows)}

    async def _fetch_pre(
        self, appid: str, user_id: str, launch: Launch, trigger: str
    ) -> tuple[FetchRecord, dict[str, Any]]:
        targets = await self.apps.get(appid)
        now = self.clock.now()
        url, route = targets.serving_url("pre", user_id, self.auth.openid)
        request: dict[str, Any] = {}
        token: str | None = None
        if url is None:
            result = FetchResult(Verdict.NO_URL, "", error="no enabled pre-fetch URL")
        else:
            token = await self.db.read_point(self.fetches.get_token, appid, user_id)
            code = None if token else self.auth.login_code(appid, user_id)
            out = build_prefetch_request(
                base_url=url,
                appid=appid,
                secret=targets.app.secret,
                timestamp=int(now),
                launch=launch,
                token=token,
                code=code,
                headers=targets.headers,
            )
            request = out.as_dict()
            url = out.url
            timeout_s = min(targets.timeout_s or self.prefetch_timeout_s, self.prefetch_timeout_s)
            result = await self.fetcher.fetch(out, timeout_s=timeout_s)
        record = record_for(
            result,
            appid=appid,
            user_id=user_id,
            kind="pre",
            trigger=trigger,
            now=now,
            requested_url=url or "",
            path=launch.path,
            query=launch.query,
            scene=launch.scene,
            arrived_at=self.clock.now(),
            route=route,
            token=token,  # stored only while it is still the user's token
        )
        if record.body is not None and token is not None:
            record = await self._for_current_token(record, token)
        self.pending.record(record)  # readable now, stored with the next group commit
        await self.notify([record])
        return record, {"request": request, "route": route if url else None, **result.shown()}

    async def _for_current_token(self, record: FetchRecord, token: str) -> FetchRecord:
        """``record`` without its body if the user's token is no longer ``token``, the one
        the pre-fetch sent: the user signed in as another account while it was in flight, and
        the body, another account's data perhaps, must not be read as the new one's nor
        pushed. Its log row stays. Checked here because a pre-fetch body is readable before it
        is stored; the store checks again when it writes (a token set between this read and
        the write). A pre-fetch that sent a login code (no token yet) is not checked: the code
        names this very user, and the app setting its first token right after the launch (it
        signed in) is the usual first start, not another account."""
        now_token = await self.db.read_point(self.fetches.get_token, record.appid, record.user_id)
        if now_token == token:
            return record
        return dataclasses.replace(record, body=None, fetched_at_ms=None)

    # --- devtools ---
    async def fetch_now(
        self, appid: str, user_id: str, kind: str, launch: Launch | None = None
    ) -> dict[str, Any]:
        """Fetch now and show the exact request and the verdict. Periodic: a full (not
        conditional) fetch that also resets the user's schedule on success."""
        validate_id("user id", user_id)  # "*" is the broker's every device: not a user
        if kind == "pre":
            _, shown = await self._fetch_pre(appid, user_id, launch or Launch(), trigger="devtools")
            return shown
        if kind != "periodic":
            raise InvalidInput(f"type must be periodic or pre, not {kind!r}")
        targets = await self.apps.get(appid)
        url, route = targets.serving_url("periodic", user_id, self.auth.openid)
        user = await self.db.read(self.fetches.get_user, appid, user_id) or {}
        now = self.clock.now()
        if url is None:
            result = FetchResult(Verdict.NO_URL, "", error="no enabled periodic URL")
            record = record_for(
                result,
                appid=appid,
                user_id=user_id,
                kind="periodic",
                trigger="devtools",
                now=now,
                requested_url="",
            )
            await self.db.write(self.fetches.record, [record])
            return {"request": {}, **result.shown()}
        due = DueFetch(
            appid,
            user_id,
            user.get("token"),
            None,
            None,
            int(user.get("failures") or 0),
            user.get("last_success_at"),
            url,
            targets.app.secret,
            route,
            interval_s=targets.interval_s,
            version=user.get("version") or "",
            env_version=user.get("env_version") or "",
            timeout_s=targets.timeout_s,
            headers=tuple(targets.headers.items()),
        )
        result, sent = await fetch_periodic(
            self.fetcher, due, now, self.fetch_timeout_s, conditional=False
        )
        record = record_for(
            result,
            appid=appid,
            user_id=user_id,
            kind="periodic",
            trigger="devtools",
            now=now,
            requested_url=sent.url if sent else url,
            arrived_at=self.clock.now(),
            route=route,
            token=due.token,  # stored only while it is still the user's token
        )
        schedule = []
        if user:
            schedule.append(
                schedule_after(
                    due,
                    result.verdict,
                    now,
                    self.rules,
                    random.random,
                    error=result.error,
                    etag=result.etag,
                    last_modified=result.last_modified,
                )
            )
        await self.notify(await self.db.write(self.fetches.record, [record], schedule))
        return {"request": sent.as_dict() if sent else {}, "route": route, **result.shown()}

    async def clear(self, appid: str, user_id: str | None) -> int:
        if user_id is not None:
            validate_id("user id", user_id)
        await self.apps.get(appid)
        await self.pending.flush()
        self.pending.forget(appid, user_id)
        return await self.db.write(self.fetches.clear_data, appid, user_id)

    async def push(self, appid: str, user_id: str) -> dict[str, Any]:
        """Tell the user's connected devices to refresh: fetch the periodic data now (which
        notifies them with the new data) and send them a devtoolsRefresh message."""
        validate_id("user id", user_id)  # "*" would reach every device of the app
        devices = await self.broker.devices(user_id, appid)
        shown = await self.fetch_now(appid, user_id, "periodic")
        await self.broker.publish(
            user_id,
            {
                "type": "devtoolsRefresh",
                "appid": appid,
                "fetchType": "periodic",
                "verdict": shown["verdict"],
            },
        )
        return {"devices": devices, **shown}

    async def log(
        self, appid: str, limit: int = 100, user_id: str | None = None
    ) -> list[dict[str, Any]]:
        await self.apps.get(appid)
        await self.pending.flush()
        return await self.db.read(self.fetches.list_log, appid, limit, user_id)

    async def health(self, appid: str, since: float) -> dict[str, Any]:
        return await self.db.read(self.fetches.health, appid, since)
