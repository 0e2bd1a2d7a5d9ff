"""The saved-report service on each state database: a report kind registered later (with its
parameters' model) runs what was saved in its shape, and what was saved before in another
shape is a clear error when it runs, never a crash."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from miniport.domain import saved_reports as rules
from miniport.errors import InvalidInput
from miniport.platform import Platform
from miniport.services.saved_reports import SavedReportService


class PathsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    start: str
    depth: int = 3
    from_: str | int | None = Field(default=None, alias="from")  # a dashboard's range
    to: str | int | None = None
    tz: str = "UTC"


async def test_a_kind_registered_later_checks_what_was_saved_before(
    platforms: Callable[..., Awaitable[Platform]], db: dict[str, Any]
) -> None:
    p = await platforms(**db)
    app = await p.apps.create("Shop", "test")
    saved = p.saved
    models = dict(rules.PARAMS_MODELS)
    # as on a server from before paths reports: neither a runner nor a parameter model
    saved.runners.pop("paths")
    saved.models.pop("paths")
    await _saved_before_and_registered_after(saved, app.appid)
    # the service's own models: another platform of the process is not changed (register()
    # wrote into the module's, which every platform shares)
    assert models == rules.PARAMS_MODELS and rules.PARAMS_MODELS["paths"] is not PathsParams
    entries = await p.db.read(p.registry.list_audit, app.appid)
    assert {"report.save", "dashboard.create", "dashboard.add"} <= {e.action for e in entries}


async def _saved_before_and_registered_after(saved: SavedReportService, appid: str) -> None:
    await saved.save(appid, {"name": "old", "kind": "paths", "params": {"begin": "x"}}, "t")
    await saved.save(appid, {"name": "new", "kind": "paths", "params": {"start": "x"}}, "t")
    with pytest.raises(InvalidInput, match="paths reports cannot run on this server"):
        await saved.run(appid, "new")
    ran: list[dict[str, Any]] = []

    async def paths(appid: str, params: dict[str, Any]) -> dict[str, Any]:
        ran.append(params)
        return {"paths": [{"path": params["start"], "count": 1}]}

    saved.register("paths", paths, PathsParams)
    assert await saved.run(appid, "new") == {"paths": [{"path": "x", "count": 1}]}
    assert ran == [{"start": "x", "depth": 3, "from": None, "to": None, "tz": "UTC"}]
    with pytest.raises(InvalidInput, match=r"params\.start: Field required"):
        await saved.run(appid, "old")
    with pytest.raises(InvalidInput, match=r"params\.begin: Extra inputs"):
        await saved.save(appid, {"name": "x", "kind": "paths",
                                 "params": {"start": "a", "begin": "b"}}, "t")
    await saved.create_dashboard(appid, {"name": "D"}, "t")
    await saved.add(appid, "D", "old", 1, "t")
    await saved.add(appid, "D", "new", 2, "t")
    board = await saved.run_dashboard(appid, "D")
    assert [(i["report"], "result" in i) for i in board["items"]] == [
        ("old", False), ("new", True)]
    assert board["items"][0]["error"] == "invalid_input"


async def test_a_report_added_after_a_delete_goes_last(platforms: Any) -> None:
    """Deleting a report leaves a gap in its dashboards' positions; the next one added took
    len(items), the position of one still there (their order then undefined)."""
    p = await platforms()
    app = await p.apps.create("Shop", "test")
    s = p.saved
    for n in ("a", "b", "c", "d"):
        await s.save(app.appid, {"name": n, "kind": "overview", "params": {}}, "t")
    await s.create_dashboard(app.appid, {"name": "B"}, "t")
    for n in ("a", "b", "c"):
        await s.add(app.appid, "B", n, 1, "t")
    await s.delete(app.appid, "b", "t")
    await s.add(app.appid, "B", "d", 1, "t")
    board = await s.dashboard(app.appid, "B")
    assert [(i["report"], i["position"]) for i in board["items"]] == [
        ("a", 0), ("c", 2), ("d", 3)
    ]
