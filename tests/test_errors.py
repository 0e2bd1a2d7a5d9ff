"""One error tree: every error raised on purpose is a MiniportError with a code, an HTTP status
and, where it has them, ``{path, message}`` problems; one renderer for HTTP, one for the CLI."""

from __future__ import annotations

import inspect
import json

import aiohttp
import pytest
import typer

from miniport import errors
from miniport.analytics.definitions import parse_event
from miniport.analytics.ingest_rules import check_batch
from miniport.analytics.reports import EventQuery
from miniport.cli.common import fail
from miniport.errors import (
    BatchInvalid,
    DefinitionsInvalid,
    InvalidInput,
    MiniportError,
    Problem,
    ReportQueryError,
)
from tests.conftest import LiveServer

TREE = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, MiniportError) and cls.__module__ == errors.__name__
]


def test_every_error_has_a_code_a_status_and_a_place_in_the_drawn_tree() -> None:
    drawn = (errors.__doc__ or "").split("::", 1)[1].split("\n\n")[1]
    rows = {
        ln.lstrip(" │├└─").split()[0]: ln.lstrip(" │├└─").split()[1:3] for ln in drawn.splitlines()
    }
    assert set(rows) == {cls.__name__ for cls in TREE}
    for cls in TREE:
        assert rows[cls.__name__] == [cls.code, str(cls.http_status)], cls


def test_the_analytics_errors_are_miniport_errors_with_problems() -> None:
    with pytest.raises(DefinitionsInvalid) as bad_def:
        parse_event({"name": "Bad Name", "mode": "configured"})
    assert isinstance(bad_def.value, InvalidInput) and bad_def.value.http_status == 422
    assert bad_def.value.code == "invalid_definition"
    assert bad_def.value.problems and bad_def.value.errors == bad_def.value.problems
    assert bad_def.value.message == "; ".join(str(p) for p in bad_def.value.problems)
    with pytest.raises(BatchInvalid) as bad_batch:
        check_batch([], config=None, received_at_ms=0)  # type: ignore[arg-type]
    assert bad_batch.value.code == "invalid_input" and bad_batch.value.http_status == 422
    with pytest.raises(ReportQueryError) as bad_query:
        EventQuery.parse(
            event="e", metrics=[], group_by=[], filters=[], from_ms=2, to_ms=1, not_before_ms=0
        )
    assert isinstance(bad_query.value, MiniportError) and bad_query.value.http_status == 422


def test_as_dict_lists_problems_only_when_there_are_some() -> None:
    assert errors.NotFound("app 'x' not found").as_dict() == {
        "error": "not_found",
        "message": "app 'x' not found",
    }
    invalid = InvalidInput("name: too long", [Problem("name", "too long")])
    assert invalid.as_dict() == {
        "error": "invalid_input",
        "message": "name: too long",
        "problems": [{"path": "name", "message": "too long"}],
    }


def test_the_cli_prints_one_json_object_or_one_line_per_problem(
    capsys: pytest.CaptureFixture[str],
) -> None:
    exc = DefinitionsInvalid([Problem("events[0].name", "bad"), Problem("", "whole")])
    with pytest.raises(typer.Exit) as done:
        fail(True, exc)
    assert done.value.exit_code == 1
    printed = json.loads(capsys.readouterr().out)
    problems = [{"path": "events[0].name", "message": "bad"}, {"path": "", "message": "whole"}]
    assert printed == {
        "error": "invalid_definition",
        "message": "events[0].name: bad; whole",
        "problems": problems,
        "errors": problems,
    }
    with pytest.raises(typer.Exit):
        fail(False, exc)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["error: the definition is invalid:", "  events[0].name: bad", "  whole"]


async def test_http_errors_carry_their_problems(live_server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {live_server.admin_key}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.post(f"{live_server.url}/admin/v1/apps", json={"name": 5}) as r:
            invalid = await r.json()
        assert r.status == 422 and invalid["error"] == "invalid_input"
        assert invalid["problems"] == [
            {"path": "name", "message": "Input should be a valid string"}
        ]
        assert invalid["message"] == "name: Input should be a valid string"
        assert invalid["detail"][0]["loc"] == ["body", "name"]
        async with s.get(f"{live_server.url}/admin/v1/apps/nosuch") as r:
            missing = await r.json()
        assert r.status == 404 and missing == {
            "error": "not_found",
            "message": "app 'nosuch' not found",
        }


def test_every_try_again_later_error_says_when_and_others_do_not() -> None:
    """A 503 (or a 429) tells the client when to try again (``Retry-After``); without it every
    device that failed at the same moment came back at the same moments, doubling in step."""
    for cls in TREE:
        if cls.http_status in (429, 503):
            assert isinstance(cls.retry_after_s, int) and cls.retry_after_s > 0, cls
            assert f"Retry-After {cls.retry_after_s}" in (errors.__doc__ or ""), cls
        else:
            assert cls.retry_after_s is None, cls


def test_an_error_answer_carries_retry_after_only_when_its_error_has_one() -> None:
    from miniport.web.deps import error_response

    busy = error_response(errors.AnalyticsUnavailable("ClickHouse cannot be reached"))
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
    down = error_response(errors.ServerNotRunning("the server does not answer"), "launch")
    assert down.status_code == 503 and down.headers["Retry-After"] == "10"
    assert "Retry-After" not in error_response(errors.NotFound("app 'x' not found")).headers
