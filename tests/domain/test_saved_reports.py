"""The rules of saved reports and dashboards, without I/O: names, kinds, parameters, a
dashboard's range (time zones and DST), the range put on a report, and reordering."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miniport.domain import saved_reports as rules
from miniport.errors import InvalidInput


def test_parameters_are_checked_and_completed_by_kind() -> None:
    report = rules.validate_params("report", {"event": "buy", "from": "2026-01-01"})
    assert report == {"event": "buy", "metrics": ["count"], "group_by": [], "filters": [],
                      "any": False, "granularity": "day", "from": "2026-01-01", "to": None,
                      "tz": "UTC"}
    # the stored form validates again to itself (a saved report can be saved again)
    assert rules.validate_params("report", report) == report
    assert rules.validate_params("paths", {"start": "pages/a", "depth": 3}) == {
        "start": "pages/a", "by": "page", "depth": 3, "from": None, "to": None, "tz": "UTC"}
    with pytest.raises(InvalidInput, match=r"params\.depth: depth is 1 to 5, got 6"):
        rules.validate_params("paths", {"start": "pages/a", "depth": 6})
    with pytest.raises(InvalidInput, match=r"params\.any: Input should be a valid boolean"):
        rules.validate_params("report", {"event": "buy", "any": "yes"})
    with pytest.raises(InvalidInput, match="larger than"):
        rules.validate_params("overview", {"group_by": "y" * rules.MAX_PARAMS_BYTES})
    with pytest.raises(InvalidInput, match="not JSON"):
        rules.validate_params("overview", {"x": float("nan")})
    with pytest.raises(InvalidInput, match="unknown report kind 'table'"):
        rules.validate_params("table", {})


def test_names() -> None:
    assert rules.check_name("销售 · by colour") == "销售 · by colour"
    for bad in (None, "", "  ", " a", "a\n", "x" * 65, "a/b", "a\\b", ".", ".."):
        with pytest.raises(InvalidInput):
            rules.check_name(bad)
    assert rules.check_name("v1.2") == "v1.2"


def test_a_dashboards_range() -> None:
    # 2026-03-08 04:30 UTC is still 03-07 in New York (23:30 EST; DST starts there on 03-08)
    now = datetime(2026, 3, 8, 4, 30, tzinfo=UTC).timestamp()
    assert rules.range_dates(7, None, None, "America/New_York", now) == ("2026-03-01",
                                                                         "2026-03-07")
    assert rules.range_dates(1, None, None, "Asia/Shanghai", now) == ("2026-03-08",
                                                                      "2026-03-08")
    assert rules.range_dates(None, "2026-01-01", "2026-01-31", "UTC", now) == (
        "2026-01-01", "2026-01-31")
    rules.check_range(366, None, None, "UTC")
    for args, says in [((0, None, None, "UTC"), "1 to 366"),
                       ((367, None, None, "UTC"), "1 to 366"),
                       ((7, "2026-01-01", None, "UTC"), "not both"),
                       ((None, None, "2026-01-01", "UTC"), "both a from and a to"),
                       ((None, "2026-1-1", "2026-01-02", "UTC"), "YYYY-MM-DD"),
                       # fromisoformat's compact form, which the reports read as 1970 (ms)
                       ((None, "20261126", "2026-12-01", "UTC"), "YYYY-MM-DD"),
                       ((None, "2026-11-26", "20261201", "UTC"), "YYYY-MM-DD"),
                       ((None, "2026-01-02", "2026-01-01", "UTC"), "after"),
                       ((7, None, None, "Nowhere/City"), "unknown time zone")]:
        with pytest.raises(InvalidInput, match=says):
            rules.check_range(*args)


def test_the_range_replaces_only_a_dated_reports_dates() -> None:
    params = {"event": "buy", "from": "2020-01-01", "to": None, "tz": "UTC"}
    assert rules.with_range("report", params, ("2026-01-01", "2026-01-07"), "Asia/Tokyo") == {
        "event": "buy", "from": "2026-01-01", "to": "2026-01-07", "tz": "Asia/Tokyo"}
    paths = {"start": "pages/a"}  # every kind is dated now, paths too
    assert rules.with_range("paths", paths, ("2026-01-01", "2026-01-07"), "UTC") == {
        "start": "pages/a", "from": "2026-01-01", "to": "2026-01-07", "tz": "UTC"}


def test_widths() -> None:
    assert rules.check_width(2) == 2
    for bad in (0, 3, True, "1", 1.0):
        with pytest.raises(InvalidInput, match="width must be 1 or 2"):
            rules.check_width(bad)


@given(order=st.lists(st.text(min_size=1, max_size=3), min_size=1, max_size=8, unique=True),
       pick=st.integers(0, 7), to=st.integers(0, 10))
def test_moving_keeps_every_report_once(order: list[str], pick: int, to: int) -> None:
    name = order[pick % len(order)]
    moved = rules.moved(order, name, to)
    assert sorted(moved) == sorted(order)
    assert moved.index(name) == min(to, len(order) - 1)
    assert [n for n in moved if n != name] == [n for n in order if n != name]


def test_moving_refuses_a_negative_position() -> None:
    with pytest.raises(InvalidInput, match="0 or more"):
        rules.moved(["a", "b"], "a", -1)

