"""The text forms of retention and paths fit 80 columns whatever the data."""

from __future__ import annotations

from miniport.cli.analytics_cohorts import paths_lines, retention_lines


def test_thirty_periods_wrap_into_blocks_of_80_columns() -> None:
    found = {
        "unit": "week",
        "group_by": "color",
        "cohorts": [
            {"cohort": "2026-11-02", "color": "a very long colour name", "size": 1234,
             "retained": list(range(1234, 1203, -1))},
            {"cohort": "2026-11-09", "color": None, "size": 0, "retained": [0, 0]},
        ],
    }  # fmt: skip
    lines = retention_lines(found)
    assert max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    assert all(f"W{k}" in text for k in range(31)) and "W31" not in text
    assert "1234 100%" in text and "1204 98%" in text and "a very long…" in text
    assert sum(line.startswith("cohort") for line in lines) > 1  # several blocks


def test_no_cohorts_says_so() -> None:
    assert retention_lines({"cohorts": []}) == [
        "no cohorts in this window (nobody did the start event)"
    ]


def test_paths_cut_long_names() -> None:
    found = {
        "start": "pages/" + "x" * 100,
        "by": "page",
        "users": 7,
        "links": [{"depth": 5, "from": "p" * 90, "to": "q", "users": 1_000_000}],
    }
    lines = paths_lines(found)
    assert max(len(line) for line in lines) <= 80
    assert lines[-1].startswith("    5  ppp") and lines[-1].endswith("1000000")
    assert paths_lines({**found, "users": 0, "links": []})[-1].startswith("nobody reached")
