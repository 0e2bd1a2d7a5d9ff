"""The two line-per-entry logs (devtools log, change audit) say so when they are empty, rather
than printing nothing at all."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from miniport.cli import main


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setattr(main, "console", Console(file=out, width=80, color_system=None))
    monkeypatch.setattr(main, "call", lambda *args, **kwargs: {"entries": []})
    return out


def test_an_empty_fetch_log_says_how_to_make_a_fetch(screen: io.StringIO) -> None:
    main.devtools_log("mp1", limit=50, user=None)
    assert screen.getvalue() == (
        "no fetches yet: `miniport devtools fetch mp1 --user USER` makes one\n"
    )


def test_an_empty_audit_log_says_so(screen: io.StringIO) -> None:
    main.change_audit("mp1")
    assert screen.getvalue() == "no audit entries\n"


def test_json_stays_the_empty_list(screen: io.StringIO, capsys: pytest.CaptureFixture[str]) -> None:
    main.devtools_log("mp1", limit=50, user=None, as_json=True)
    main.change_audit(None, as_json=True)
    assert capsys.readouterr().out == '{"entries": []}\n' * 2 and screen.getvalue() == ""
