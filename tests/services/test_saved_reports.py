"""The saved-report service on each state database: a report kind registered later (with its
parameters' model) runs what was saved in its shape, and what was saved before in another
shape is a clear error when it runs, never a crash."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from miniport.domain import saved_reports as rules
from miniport.errors import InvalidInput
from miniport.platform import Platform


class PathsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: str
    depth: int = 3


async def test_a_kind_registered_later_checks_what_was_saved_before(
    platforms: Callable[..., Awaitable[Platform]], db: dict[str, Any]
) -> None:
    p = await platforms(**db)
    app = await p.apps.create("Shop", "test")
    saved = p.saved
    await saved.save(app.appid, {"name": "old", "kind": "paths", "params": {"begin": "x"}}, "t")
    await saved.save(app.appid, {"name": "new", "kind": "paths", "params": {"start": "x"}}, "t")
    with pytest.raises(InvalidInput, match="paths reports cannot run on this server"):
        await saved.run(app.appid, "new")
    ran: list[dict[str, Any]] = []

    async def paths(appid: str, params: dict[str, Any]) -> dict[str, Any]:
        ran.append(params)
        return {"paths": [{"path": params["start"], "count": 1}]}

    models = dict(rules.PARAMS_MODELS)
    try:
        saved.register("paths", paths, PathsParams)
        assert await saved.run(app.appid, "new") == {"paths": [{"path": "x", "count": 1}]}
        assert ran == [{"start": "x", "depth": 3}]
        with pytest.raises(InvalidInput, match=r"params\.start: Field required"):
            await saved.run(app.appid, "old")
        with pytest.raises(InvalidInput, match=r"params\.begin: Extra inputs"):
            await saved.save(app.appid, {"name": "x", "kind": "paths",
                                         "params": {"start": "a", "begin": "b"}}, "t")
        await saved.create_dashboard(app.appid, {"name": "D"}, "t")
        await saved.add(app.appid, "D", "old", 1, "t")
        await saved.add(app.appid, "D", "new", 2, "t")
        board = await saved.run_dashboard(app.appid, "D")
        assert [(i["report"], "result" in i) for i in board["items"]] == [
            ("old", False), ("new", True)]
        assert board["items"][0]["error"] == "invalid_input"
    finally:
        rules.PARAMS_MODELS.clear()
        rules.PARAMS_MODELS.update(models)
    entries = await p.db.read(p.registry.list_audit, app.appid)
    assert {"report.save", "dashboard.create", "dashboard.add"} <= {e.action for e in entries}
