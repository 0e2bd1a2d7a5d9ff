"""Saved reports and dashboards: save any report with a name, list, show and run it, and put
saved reports on dashboards that share a date range.

A report runs through the runner registered for its kind (:func:`analytics_runners` gives the
five kinds the analytics service answers; a new report kind registers its own with
:meth:`SavedReportService.register`), so ``run`` answers exactly what the report itself
answers. A kind without a runner can be saved (its parameters a JSON object) but not run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ..clock import Clock
from ..domain import saved_reports as rules
from ..domain.shown import short_repr
from ..errors import InvalidInput, MiniportError, NotFound
from ..storage.db import Database
from ..storage.registry import RegistryStore
from ..storage.saved_reports import Dashboard, SavedReportStore

if TYPE_CHECKING:  # the analytics service is imported when a report runs, not at start
    from .analytics import AnalyticsService

Runner = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def _times(p: Any) -> dict[str, int | None]:
    """``from_ms``/``to_ms`` of a report's parameters (dates in their time zone)."""
    from .analytics import parse_time

    return {"from_ms": parse_time(p.from_, p.tz), "to_ms": parse_time(p.to, p.tz, end=True)}


async def run_params(service: AnalyticsService, appid: str, p: BaseModel) -> dict[str, Any]:
    """The answer of a report of any kind from its checked parameters (one of the models of
    :data:`miniport.domain.saved_reports.PARAMS_MODELS`): what the admin API's report routes
    and a saved report's run both call."""
    if isinstance(p, rules.ReportParams):
        return await service.event_analysis(
            appid,
            event=p.event,
            metrics=p.metrics,
            group_by=p.group_by,
            filters=p.filters,
            any_=p.any,
            granularity=p.granularity,
            **_times(p),
            tz=p.tz,
        )
    if isinstance(p, rules.FunnelParams):
        return await service.funnel(
            appid, steps=p.steps, group_by=p.group_by, **_times(p), window=p.window, order=p.order
        )
    if isinstance(p, rules.RetentionParams):
        return await service.retention(
            appid,
            start=p.start,
            returning=p.return_,
            unit=p.unit,
            periods=p.periods,
            group_by=p.group_by,
            **_times(p),
            tz=p.tz,
        )
    if isinstance(p, rules.PathsParams):
        return await service.paths(appid, start=p.start, by=p.by, depth=p.depth, **_times(p))
    if isinstance(p, rules.OverviewParams):
        return await service.overview(
            appid,
            **_times(p),
            granularity=p.granularity,
            tz=p.tz,
            group_by=p.group_by,
            top_pages=p.top_pages,
        )
    raise TypeError(f"no report runs from {type(p).__name__}")


def analytics_runners(service: Callable[[], AnalyticsService]) -> dict[str, Runner]:
    """Runners of the report kinds the analytics service answers: event analysis, funnel,
    retention, paths and the overview. ``service`` gives the analytics service when a report
    runs (the platform builds it at first use)."""

    def runner(model: type[BaseModel]) -> Runner:
        async def run(appid: str, params: dict[str, Any]) -> dict[str, Any]:
            return await run_params(service(), appid, model.model_validate(params))

        return run

    return {kind: runner(model) for kind, model in rules.PARAMS_MODELS.items()}


def _field(body: dict[str, Any], key: str, kind: type, default: Any = None) -> Any:
    value = body.get(key, default)
    if value is None:
        return None
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidInput(f"{key} must be an integer, not {short_repr(value)}")
    if kind is str and not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string, not {short_repr(value)}")
    return value


class SavedReportService:
    def __init__(
        self,
        db: Database,
        registry: RegistryStore,
        clock: Clock,
        runners: dict[str, Runner] | None = None,
    ) -> None:
        self.db, self.registry, self.clock = db, registry, clock
        self.store = SavedReportStore(db)
        self.runners: dict[str, Runner] = dict(runners or {})
        # this service's own: register() used to add to the module's, shared by every
        # platform of the process
        self.models: dict[str, type[BaseModel]] = dict(rules.PARAMS_MODELS)

    def register(self, kind: str, runner: Runner, model: type[BaseModel] | None = None) -> None:
        """Make saved reports of ``kind`` runnable (``model``: its parameters' model, which
        checks them from then on when saved and when run)."""
        rules.check_kind(kind)
        self.runners[kind] = runner
        if model is not None:
            self.models[kind] = model

    async def _app(self, appid: str) -> None:
        await self.db.read(self.registry.get_app, appid)

    # --- saved reports ---
    async def save(self, appid: str, body: dict[str, Any], actor: str) -> dict[str, Any]:
        """``{"name", "kind", "params"}``: the parameters are validated for the kind; a name
        already saved is ``Conflict`` (409)."""
        await self._app(appid)
        name = rules.check_name(body.get("name"))
        kind = rules.check_kind(body.get("kind"))
        params = rules.validate_params(kind, body.get("params", {}), self.models)
        saved = await self.db.write(
            self.store.save, appid, name, kind, params, actor, self.clock.now()
        )
        return saved.as_dict()

    async def list_saved(self, appid: str) -> dict[str, Any]:
        await self._app(appid)
        return {"reports": [r.as_dict() for r in await self.db.read(self.store.all, appid)]}

    async def show(self, appid: str, name: str) -> dict[str, Any]:
        await self._app(appid)
        return (await self.db.read(self.store.get, appid, name)).as_dict()

    async def delete(self, appid: str, name: str, actor: str) -> dict[str, Any]:
        await self._app(appid)
        await self.db.write(self.store.delete, appid, name, actor, self.clock.now())
        return {"name": name, "status": "deleted"}

    async def run_kind(self, appid: str, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        runner = self.runners.get(kind)
        if runner is None:
            raise InvalidInput(f"{kind} reports cannot run on this server (saved, not runnable)")
        # checked again: a report saved before its kind had a model may not fit it
        return await runner(appid, rules.validate_params(kind, params, self.models))

    async def run(self, appid: str, name: str) -> dict[str, Any]:
        """The saved report's result: the same answer as its report kind."""
        await self._app(appid)
        saved = await self.db.read(self.store.get, appid, name)
        return await self.run_kind(appid, saved.kind, saved.params)

    # --- dashboards ---
    @staticmethod
    def _range(body: dict[str, Any]) -> tuple[tuple[int | None, str | None, str | None], str]:
        last_days = _field(body, "last_days", int)
        date_from = _field(body, "from", str)
        date_to = _field(body, "to", str)
        tz = _field(body, "tz", str, "UTC")
        if last_days is None and date_from is None and date_to is None:
            last_days = 7
        rules.check_range(last_days, date_from, date_to, tz)
        return (last_days, date_from, date_to), tz

    async def create_dashboard(
        self, appid: str, body: dict[str, Any], actor: str
    ) -> dict[str, Any]:
        """``{"name", "last_days"}`` or ``{"name", "from", "to"}``, with ``tz`` (the last 7
        days in UTC by default)."""
        await self._app(appid)
        name = rules.check_name(body.get("name"), "dashboard")
        range_, tz = self._range(body)
        now = self.clock.now()
        await self.db.write(self.store.create_dashboard, appid, name, range_, tz, actor, now)
        return await self.dashboard(appid, name)

    async def set_range(
        self, appid: str, name: str, body: dict[str, Any], actor: str
    ) -> dict[str, Any]:
        await self._app(appid)
        range_, tz = self._range(body)
        await self.db.write(self.store.set_range, appid, name, range_, tz, actor, self.clock.now())
        return await self.dashboard(appid, name)

    async def dashboards(self, appid: str) -> dict[str, Any]:
        await self._app(appid)
        return {"dashboards": await self.db.read(self.store.dashboards, appid)}

    async def dashboard(self, appid: str, name: str) -> dict[str, Any]:
        await self._app(appid)
        board = await self.db.read(self.store.dashboard, appid, name)
        dates = rules.range_dates(
            board.last_days, board.date_from, board.date_to, board.tz, self.clock.now()
        )
        return {**board.as_dict(), "from": dates[0], "to": dates[1]}

    async def delete_dashboard(self, appid: str, name: str, actor: str) -> dict[str, Any]:
        await self._app(appid)
        await self.db.write(self.store.delete_dashboard, appid, name, actor, self.clock.now())
        return {"name": name, "status": "deleted"}

    async def add(
        self, appid: str, name: str, report: str, width: object, actor: str
    ) -> dict[str, Any]:
        await self._app(appid)
        checked = rules.check_width(width)
        now = self.clock.now()
        await self.db.write(self.store.add_item, appid, name, report, checked, actor, now)
        return await self.dashboard(appid, name)

    async def move(
        self, appid: str, name: str, report: str, position: object, actor: str
    ) -> dict[str, Any]:
        await self._app(appid)
        if isinstance(position, bool) or not isinstance(position, int) or position < 0:
            raise InvalidInput(f"position must be an integer, 0 or more, not {position!r}")

        def order(names: list[str]) -> list[str]:
            if report not in names:
                raise NotFound(f"{report!r} is not on dashboard {name!r}")
            return rules.moved(names, report, position)

        await self.db.write(self.store.reorder, appid, name, order, actor, self.clock.now())
        return await self.dashboard(appid, name)

    async def remove(self, appid: str, name: str, report: str, actor: str) -> dict[str, Any]:
        await self._app(appid)

        def order(names: list[str]) -> list[str]:
            if report not in names:
                raise NotFound(f"{report!r} is not on dashboard {name!r}")
            return [n for n in names if n != report]

        now = self.clock.now()
        await self.db.write(self.store.reorder, appid, name, order, actor, now, removed=report)
        return await self.dashboard(appid, name)

    async def run_dashboard(self, appid: str, name: str) -> dict[str, Any]:
        """Every report of the dashboard under its range, in grid order; a report that fails
        carries its error instead of a result (the others still show)."""
        await self._app(appid)
        board: Dashboard = await self.db.read(self.store.dashboard, appid, name)
        dates = rules.range_dates(
            board.last_days, board.date_from, board.date_to, board.tz, self.clock.now()
        )

        async def one(kind: str, params: dict[str, Any]) -> dict[str, Any]:
            try:
                ranged = rules.with_range(kind, params, dates, board.tz)
                return {"result": await self.run_kind(appid, kind, ranged)}
            except MiniportError as exc:
                return {"error": exc.code, "message": exc.message}

        results = await asyncio.gather(*(one(i.report.kind, i.report.params) for i in board.items))
        items = [
            {
                "report": i.report.name,
                "kind": i.report.kind,
                "params": i.report.params,
                "position": i.position,
                "width": i.width,
                **outcome,
            }
            for i, outcome in zip(board.items, results, strict=True)
        ]
        return {**board.as_dict(), "from": dates[0], "to": dates[1], "items": items}
