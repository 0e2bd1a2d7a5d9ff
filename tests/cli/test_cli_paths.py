"""The CLI's one path: every operation's admin API route exists on the server, each operation
can run somewhere, the backend is chosen in one place, and human output shows no Python repr
and local dates. Pure unit tests (no subprocess)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute

from miniport.cli import backend, common
from miniport.cli.backend import HttpBackend, LocalBackend, Server, choose_backend
from miniport.cli.operations import OPERATIONS
from miniport.errors import InvalidInput, ServerNotRunning
from miniport.web import (
    admin_api,
    analytics_api,
    analytics_users_api,
    members_api,
    saved_reports_api,
)

PARAMS: dict[str, Any] = {
    "appid": "mp1", "name": "n", "code": "C", "test": "t1", "kind": "periodic", "op": "set",
    "url": "https://x", "limit": 5, "user_id": "u", "device_id": None, "type": "periodic",
    "path": "", "query": "", "scene": 1001, "body": {}, "event": "e", "tz": "UTC",
    "from": None, "to": None, "include_tests": False, "role": "viewer", "password": None,
    "user": "key:k", "before": None, "report": "r", "width": 1, "position": 0,
    "changes": {"interval": "6h"}, "trusted": True, "minutes": 30, "latest": 50, "on": False,
    "prune": True,
}
ADMIN_ROUTES = [r for r in (*admin_api.router.routes, *analytics_api.admin.routes,
                            *members_api.router.routes, *analytics_users_api.router.routes,
                            *saved_reports_api.router.routes)
                if isinstance(r, APIRoute)]


@pytest.mark.parametrize("name", sorted(n for n, op in OPERATIONS.items() if op.route))
def test_each_route_is_one_the_admin_api_serves(name: str) -> None:
    route = OPERATIONS[name].route
    assert route is not None
    call = route(PARAMS)
    assert any(
        r.path_regex.match(call.path) and call.method in r.methods for r in ADMIN_ROUTES
    ), (name, call)


def test_every_operation_runs_somewhere_and_says_why_when_one_side_is_missing() -> None:
    for op in OPERATIONS.values():
        assert op.route or op.local, op.name
        assert op.route or op.why_local, op.name
        assert op.local or op.why_server, op.name
    assert OPERATIONS["devtools.push"].local is None  # devices are connected to the server
    assert OPERATIONS["console.user.create"].route is None  # the first admin is made here


def test_the_backend_is_the_server_when_one_runs(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    server = Server("http://127.0.0.1:1", "k")
    monkeypatch.setattr(backend, "running_server", lambda data_dir: server)
    assert choose_backend(tmp_path, OPERATIONS["app.list"]) == HttpBackend(server)
    assert choose_backend(tmp_path, OPERATIONS["devtools.push"]) == HttpBackend(server)
    # no admin API: runs here, beside the server
    assert choose_backend(tmp_path, OPERATIONS["key.create"]) == LocalBackend(tmp_path)

    monkeypatch.setattr(backend, "running_server", lambda data_dir: None)
    assert choose_backend(tmp_path, OPERATIONS["app.list"]) == LocalBackend(tmp_path)
    with pytest.raises(ServerNotRunning, match="miniport serve") as refused:
        choose_backend(tmp_path, OPERATIONS["devtools.push"])
    assert "`miniport devtools push` needs one" in refused.value.message  # the command typed


def test_human_output_has_no_repr_and_local_dates(capsys: pytest.CaptureFixture[str]) -> None:
    ts = 1_700_000_000.5
    common.render(False, {
        "appid": "mp1",
        "created_at": ts,
        "urls": {"periodic": {"url": "https://x/[b]", "enabled": True, "updated_at": ts}},
        "pending": [],
        "changes": [{"id": "c1", "detail": {"a": 1}, "tags": ["x", "y"], "expires_at": ts}],
    })
    out = capsys.readouterr().out
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    assert out.count(when) >= 3
    assert str(ts) not in out
    for repr_mark in ("{'", "['", "True", "None"):
        assert repr_mark not in out
    assert "https://x/[b]" in out  # shown as is, not read as markup
    assert "a=1" in out and "x, y" in out


def test_json_output_is_the_same_value(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    value = {"created_at": 1.5, "urls": {"p": {"enabled": True}}}
    common.render(True, value, human=lambda: print("not this"))
    assert json.loads(capsys.readouterr().out) == value


def test_a_data_directory_that_cannot_be_written_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common.check_data_dir(tmp_path / "new" / "data")  # made later, by the platform
    assert not (tmp_path / "new").exists()
    monkeypatch.setattr(common.os, "access", lambda path, mode: False)  # as if not root
    with pytest.raises(InvalidInput, match="cannot be written: choose another with --data-dir"):
        common.check_data_dir(tmp_path)
    with pytest.raises(InvalidInput, match=f"cannot be made in {tmp_path}:"):
        common.check_data_dir(tmp_path / "new" / "data")


def test_a_long_value_is_never_cut_by_a_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token, key or URL printed as a labelled line is copied from the terminal: at 80
    columns the terminal folds it, no newline is put inside it."""
    import io

    from rich.console import Console

    out = io.StringIO()
    monkeypatch.setattr(common, "console", Console(file=out, width=80, color_system=None))
    token = "eyJ1IjoiYWxpY2UiLCJkIjoiZGVmYXVsdCIsInQiOjE3OTYxMjI3OTd9." + "x" * 60
    common.render(False, {"runtime_token": token, "nested": {"url": "https://x/" + "p" * 90}})
    lines = out.getvalue().splitlines()
    assert lines[0] == f"runtime_token: {token}"
    assert lines[2] == "  url: https://x/" + "p" * 90
