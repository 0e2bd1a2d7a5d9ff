"""The text forms of the overview and the funnel at 80 columns: every heading whole, long
values folded rather than pushing the numbers out."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from miniport.cli import analytics

LONG_PATH = "pages/goods/detail/with/a/rather/long/path/name/that/goes/on/and/on"


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setattr(analytics, "console", Console(file=out, width=80, color_system=None))
    return out


def test_top_pages_keep_their_headings_and_show_a_long_path_whole(screen: io.StringIO) -> None:
    page = {"views": 12, "visitors": 4, "avg_time_s": 3.5, "exit_rate": 0.25}
    found = {
        "rows": [{"bucket": "2026-12-01", "active_users": 4, "page_views": 12}],
        "top_pages": [{"path": LONG_PATH, **page}, {"path": "pages/a", **page}],
        "scenes": [],
    }
    analytics._overview_text(found, None)
    text = screen.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text, text
    for heading in ("path", "views", "visitors", "avg s", "exit %"):
        assert heading in text, text
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.lstrip().startswith("pages/goods"))
    assert lines[first].split()[0] + lines[first + 1].strip() == LONG_PATH, text  # folded


def test_a_grouped_funnel_keeps_its_headings(
    screen: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = {"$platform": "ios", "drop_off": 2, "median_s": 12.5}
    rows = [
        {"step": 1, "event": "goods_click", **step, "users": 3, "conversion": 1.0,
         "step_conversion": 1.0},
        {"step": 2, "event": "purchase", **step, "users": 1, "conversion": 1 / 3,
         "step_conversion": 1 / 3, "median_s": None},
    ]  # fmt: skip
    found = {"rows": rows, "from_ms": 0, "to_ms": 1, "window_ms": 86_400_000, "order": "strict"}
    monkeypatch.setattr(analytics, "call", lambda *args, **kwargs: found)
    analytics.funnel("mp1", ["goods_click", "purchase"], group_by="$platform")
    text = screen.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text, text
    for heading in ("step", "event", "$platform", "users", "conv", "drop off", "median s"):
        assert heading in text, text
    assert "33%" in text and "12.5" in text, text


def test_a_users_events_are_readable_at_80_columns(
    screen: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With real ids (36 characters from the JavaScript runtime) a table left about three
    columns to the name, the page and the data: folded one character a line. Each event is a
    few short lines now, nothing empty shown, nothing cut."""
    event = {"ts_ms": 1, "trigger": None, "action": None, "test_id": None, "visible": True}
    found = {
        "user_id": "alice",
        "events": [
            {"id": "5b1c0d9e-8a7f-4c3b-9d2e-1f0a6b7c8d9e", "time": "2026-12-01T10:44:29.857Z",
             "event": "$pageview", "page": "pages/index/index", **event, "data": {}},
            {"id": "0b4c1d2e-3f4a-4b5c-8d6e-7f8091a2b3c4", "time": "2026-12-01T10:44:30.857Z",
             "event": "purchase", "page": LONG_PATH, **event,
             "trigger": "click", "action": "report", "test_id": "t_1", "visible": False,
             "data": {"price": 12, "color": "red"}},
        ],
        "before": "1:alice-0",
        "more": True,
    }  # fmt: skip
    monkeypatch.setattr(analytics, "call", lambda *args, **kwargs: found)
    analytics.user_events("mp1", "alice")
    text = screen.getvalue()
    assert "…" not in text, text
    lines = text.splitlines()
    assert lines[0] == "2026-12-01T10:44:29.857Z  $pageview  pages/index/index", text
    assert lines[1] == "  id 5b1c0d9e-8a7f-4c3b-9d2e-1f0a6b7c8d9e", text
    assert lines[2].startswith("2026-12-01T10:44:30.857Z  purchase  pages/goods/"), text
    joined = " ".join(text.split())  # a long page soft-wraps: it is whole, in order
    for shown in (LONG_PATH + " (click → report)", 'price=12 color="red"',
                  "id 0b4c1d2e-3f4a-4b5c-8d6e-7f8091a2b3c4 test t_1 (not in reports)",
                  "--before 1:alice-0"):  # fmt: skip
        assert shown in joined, text
    for empty in ("trigger", "action", "test_id", "None"):
        assert empty not in text, text


def test_a_watched_events_text_is_shown_as_sent_never_read_as_markup(
    screen: io.StringIO,
) -> None:
    """A device's value like "[/x] sale" ended `analytics test watch` with a MarkupError, and
    "[bold]" vanished from what it showed."""
    analytics._print_line({
        "status": "accepted", "event": "[bold]buy", "page": "pages/[/x]", "trigger": None,
        "action": None, "values": {"color": "[/x] sale"}, "received_ms": 0,
        "coercions": [{"field": "price", "note": "[/red] not a number"}],
    })  # fmt: skip
    analytics._print_line({"status": "rejected", "index": 2, "id": "[/i]", "reason": "[b]x",
                           "received_ms": 0})  # fmt: skip
    text = screen.getvalue()
    for shown in ("[bold]buy", "page=pages/[/x]", 'color="[/x] sale"', "[/red] not a number",
                  "id=[/i]: [b]x"):  # fmt: skip
        assert shown in text, text
