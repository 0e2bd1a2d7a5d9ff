"""The analytics service's reports: event analysis, funnels, the overview and real time,
retention, paths, CSV export, counts and one user's events. Each checks the app, builds the
report's query object from :mod:`miniport.analytics` (pure: its rules and SQL), and runs it on
the event store in a thread, with the fields' slots (and their retype histories) as the
service knows them.

:class:`ReportQueries` is the part of :class:`~miniport.services.analytics.AnalyticsService`
that reads; the service supplies what it declares (the store, the app check, the slots)."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from ..analytics.overview import OverviewQuery, RealtimeQuery
from ..analytics.paths import PathsQuery
from ..analytics.reports import EventQuery, FieldSlots, FunnelQuery
from ..analytics.retention import RetentionQuery
from ..analytics.system_props import BUILTIN_EVENTS
from ..analytics.user_events import DEFAULT_LIMIT
from ..errors import NotFound

if TYPE_CHECKING:
    from ..analytics.event_store import EventStore
    from ..storage.analytics_defs import AnalyticsDefsStore
    from ..storage.db import Database

DAY_MS = 86_400_000
RECEIVED_WAIT_S = 2.0  # a batch takes ms to check and store: a bound, never the case


class ReportQueries:
    """The report use-cases (see the module's docstring)."""

    if TYPE_CHECKING:  # supplied by AnalyticsService
        db: Database
        defs: AnalyticsDefsStore
        _inflight: dict[int, int]  # received_ms -> batches of this node not yet stored
        _stored: asyncio.Event  # set when one of them is

        @property
        def store(self) -> EventStore: ...

        async def _app(self, appid: str) -> None: ...

        def _now_ms(self) -> int: ...

        def not_before_ms(self) -> int: ...

        async def slots(self, appid: str) -> FieldSlots: ...

        async def field_types(
            self, appid: str, names: list[str], metrics: Sequence[str] = ()
        ) -> dict[str, Any]: ...

    def _window(self, from_ms: int | None, to_ms: int | None) -> tuple[int, int]:
        now = self._now_ms()
        to = to_ms if to_ms is not None else now + 1
        start = from_ms if from_ms is not None else to - 7 * DAY_MS
        return start, to

    async def event_analysis(
        self,
        appid: str,
        *,
        event: str,
        metrics: list[str],
        group_by: list[str],
        filters: list[str],
        any_: bool,
        granularity: str,
        from_ms: int | None,
        to_ms: int | None,
        tz: str,
    ) -> dict[str, Any]:
        await self._app(appid)
        start, end = self._window(from_ms, to_ms)
        query = EventQuery.parse(
            event=event,
            from_ms=start,
            to_ms=end,
            not_before_ms=self.not_before_ms(),
            metrics=metrics or ["count"],
            group_by=group_by,
            filters=filters,
            any=any_,
            granularity=granularity,
            tz=tz,
        )
        rows = await asyncio.to_thread(
            self.store.event_analysis, appid, query, await self.slots(appid)
        )
        if not rows:  # after the query's own checks: nothing found may mean no such event
            await self._known_events(appid, [event])
        read = [*query.group_by, *(f.field for f in query.filters)]
        read += [m.field for m in query.metrics if m.field]
        types = await self.field_types(appid, read, [m.name for m in query.metrics])
        return {"rows": rows, "from_ms": start, "to_ms": end, **_typed(types)}

    async def _known_events(self, appid: str, names: list[str]) -> None:
        """A report on an event never defined (draft or published) is an error, not "no
        data"."""
        names = [n for n in names if not n.startswith("$")]  # built-in events need none
        if not names:
            return
        known = {e.name for e in await self.db.read(self.defs.events, appid)}
        unknown = [n for n in names if n and n not in known and n not in BUILTIN_EVENTS]
        if unknown:
            raise NotFound(
                f"event {unknown[0]!r} is not defined for app {appid}"
                + (f" (defined: {', '.join(sorted(known))})" if known else " (none is defined)")
            )

    async def funnel(
        self,
        appid: str,
        *,
        steps: list[str],
        group_by: str | None,
        from_ms: int | None,
        to_ms: int | None,
        window: str | None = None,
        order: str | None = None,
    ) -> dict[str, Any]:
        """Users reaching each step within ``window`` (``30m``, ``1h``, ``1d``: default one
        day) after their step-1 event, in ``strict`` order (the default) or ``any``."""
        await self._app(appid)
        start, end = self._window(from_ms, to_ms)
        parsed: list[tuple[str, list[str]]] = []
        for step in steps:  # "event" or "event:filter;filter"
            name, _, rest = step.partition(":")
            parsed.append((name.strip(), [f.strip() for f in rest.split(";") if f.strip()]))
        query = FunnelQuery.parse(
            steps=parsed,
            group_by=group_by,
            from_ms=start,
            to_ms=end,
            not_before_ms=self.not_before_ms(),
            window=window,
            order=order,
        )
        rows = await asyncio.to_thread(self.store.funnel, appid, query, await self.slots(appid))
        if not any(row.get("users") for row in rows):  # no one at all: maybe no such event
            await self._known_events(appid, [name for name, _ in parsed])
        read = [f.field for step in query.steps for f in step.filters]
        types = await self.field_types(appid, [*([group_by] if group_by else []), *read])
        return {
            "rows": rows,
            "from_ms": start,
            "to_ms": end,
            "window_ms": query.window_ms,
            "order": query.order,
            **_typed(types),
        }

    async def overview(
        self,
        appid: str,
        *,
        from_ms: int | None,
        to_ms: int | None,
        granularity: str = "day",
        tz: str = "UTC",
        group_by: str | None = None,
        top_pages: int = 20,
    ) -> dict[str, Any]:
        """Active and new users, launches, sessions, page views and times per bucket, the
        top pages and the launch scenes (definitions: :mod:`miniport.analytics.overview`).
        Default window: the 7 days up to now."""
        await self._app(appid)
        start, end = self._window(from_ms, to_ms)
        query = OverviewQuery(
            from_ms=start,
            to_ms=end,
            not_before_ms=self.not_before_ms(),
            granularity=cast(Any, granularity),
            tz=tz,
            group_by=group_by or None,
            top_pages=top_pages,
        )
        found = await asyncio.to_thread(self.store.overview, appid, query)
        return {**found, "from_ms": start, "to_ms": end}

    async def realtime(
        self, appid: str, *, tz: str = "UTC", minutes: int = 30, latest: int = 50
    ) -> dict[str, Any]:
        """Users and events per minute over the last ``minutes`` minutes by the platform's
        clock, and the latest events received (newest first): exactly the batches received
        before ``received_before_ms`` (now, once the batches this node received before now are
        stored). The console adds what pushes say about batches received from then on, so a
        push that spans the fetch counts nothing twice (:mod:`miniport.analytics.live`)."""
        await self._app(appid)
        now = self._now_ms()
        await self._received_before(now)
        query = RealtimeQuery(
            now_ms=now,
            not_before_ms=self.not_before_ms(),
            minutes=minutes,
            latest=latest,
            tz=tz,
            received_before_ms=now,
        )
        found = await asyncio.to_thread(self.store.realtime, appid, query)
        return {**found, "now_ms": query.now_ms, "received_before_ms": now}

    async def _received_before(self, cut_ms: int) -> None:
        """Wait (briefly) until the batches received before ``cut_ms`` are stored (this node's;
        the ingest side keeps the count)."""
        deadline = time.monotonic() + RECEIVED_WAIT_S
        while any(r < cut_ms for r in self._inflight):
            self._stored.clear()
            try:
                await asyncio.wait_for(self._stored.wait(), deadline - time.monotonic())
            except TimeoutError:
                return

    async def retention(
        self,
        appid: str,
        *,
        start: str,
        returning: str,
        unit: str = "day",
        periods: int = 7,
        group_by: str | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
        tz: str = "UTC",
    ) -> dict[str, Any]:
        """Cohorts (see :mod:`miniport.analytics.retention`). Without ``from``, the window
        holds the last ``periods + 1`` days or weeks up to ``to`` (default now)."""
        await self._app(appid)
        end = to_ms if to_ms is not None else self._now_ms() + 1
        width = 7 * DAY_MS if unit == "week" else DAY_MS
        span = (periods + 1 if isinstance(periods, int) and 0 < periods <= 30 else 8) * width
        begin = from_ms if from_ms is not None else end - span
        query = RetentionQuery(
            start=start,
            returning=returning,
            unit=unit,  # type: ignore[arg-type]  # checked by RetentionQuery
            periods=periods,
            group_by=group_by,
            from_ms=begin,
            to_ms=end,
            not_before_ms=self.not_before_ms(),
            tz=tz,
        )
        await self._known_events(appid, query.events)
        slots = await self.slots(appid)
        cohorts = await asyncio.to_thread(self.store.retention, appid, query, slots)
        return {
            "cohorts": cohorts,
            "start": start,
            "return": returning,
            "unit": unit,
            "periods": periods,
            "group_by": group_by,
            "from_ms": begin,
            "to_ms": end,
            **_typed(await self.field_types(appid, [group_by] if group_by else [])),
        }

    async def paths(
        self,
        appid: str,
        *,
        start: str,
        by: str = "page",
        depth: int = 3,
        from_ms: int | None = None,
        to_ms: int | None = None,
    ) -> dict[str, Any]:
        """Next steps after a start page or event (see :mod:`miniport.analytics.paths`)."""
        await self._app(appid)
        begin, end = self._window(from_ms, to_ms)
        query = PathsQuery(
            start=start,
            by=by,  # type: ignore[arg-type]  # checked by PathsQuery
            depth=depth,
            from_ms=begin,
            to_ms=end,
            not_before_ms=self.not_before_ms(),
        )
        if by == "event":
            await self._known_events(appid, [start])
        found = await asyncio.to_thread(self.store.paths, appid, query, await self.slots(appid))
        return {**found, "from_ms": begin, "to_ms": end}

    async def export_csv(
        self, appid: str, event: str, from_ms: int | None, to_ms: int | None
    ) -> str:
        await self._app(appid)
        start, end = self._window(from_ms, to_ms)
        out = io.StringIO()
        await asyncio.to_thread(
            self.store.export_csv,
            appid,
            event,
            start,
            end,
            await self.slots(appid),
            out,
            not_before_ms=self.not_before_ms(),
        )
        return out.getvalue()

    async def count(self, appid: str, event: str | None = None, include_tests: bool = False) -> int:
        await self._app(appid)
        return await asyncio.to_thread(self.store.count, appid, event, include_tests=include_tests)

    async def user_events(
        self, appid: str, user_id: str, *, limit: int = DEFAULT_LIMIT, before: str | None = None
    ) -> dict[str, Any]:
        """A page of one user's events in time order (newest last), fields decoded; the page's
        ``before`` is the cursor of the older events."""
        await self._app(appid)
        page = await asyncio.to_thread(
            self.store.user_events,
            appid,
            user_id,
            await self.slots(appid),
            limit=limit,
            before=before,
            not_before_ms=self.not_before_ms(),
        )
        return {"user_id": user_id, **page.as_dict()}


def _typed(types: dict[str, Any]) -> dict[str, Any]:
    """A report's ``field_types`` entry: present when it read a retyped field."""
    return {"field_types": types} if types else {}
