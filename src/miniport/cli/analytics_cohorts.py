"""``miniport analytics retention`` and ``miniport analytics paths``.

Each is one operation of :mod:`.operations` (``analytics.retention``, ``analytics.paths``);
``--json`` prints the service's object, otherwise a text table that fits 80 columns
(retention's periods wrap into several blocks; long names are cut with ``…``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.markup import escape

from .backend import call
from .common import DataDir, Json, console, render

WIDTH = 80
_CELL = 9  # "1234 100%"

From = Annotated[str | None, typer.Option("--from", help="YYYY-MM-DD, ISO date-time or ms")]
To = Annotated[str | None, typer.Option("--to", help="YYYY-MM-DD (included), ISO time or ms")]
Zone = Annotated[str, typer.Option("--tz", help="IANA time zone for days, weeks and dates")]


class Unit(StrEnum):
    DAY = "day"
    WEEK = "week"


class PathBy(StrEnum):
    PAGE = "page"
    EVENT = "event"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _cell(n: int, size: int) -> str:
    pct = round(100 * n / size) if size else 0
    return f"{n} {pct}%".rjust(_CELL)


def retention_lines(found: dict[str, Any], width: int = WIDTH) -> list[str]:
    """Cohort rows as text: cohort, [group,] size, then per period "count percent%";
    periods that do not fit in ``width`` go to further blocks."""
    cohorts: list[dict[str, Any]] = found["cohorts"]
    if not cohorts:
        return ["no cohorts in this window (nobody did the start event)"]
    group = found.get("group_by")
    group_w = 12 if group else 0
    label_w = 10 + (group_w + 1 if group else 0) + 8
    per_block = max(1, (width - label_w) // (_CELL + 1))
    longest = max(len(c["retained"]) for c in cohorts)
    prefix = "D" if found.get("unit", "day") == "day" else "W"
    lines: list[str] = []
    for first in range(0, longest, per_block):
        ks = range(first, min(longest, first + per_block))
        head = "cohort".ljust(10) + (
            " " + _cut(str(group), group_w).ljust(group_w) if group else ""
        )
        head += "size".rjust(8) + "".join(f"{prefix}{k}".rjust(_CELL + 1) for k in ks)
        if lines:
            lines.append("")
        lines.append(head)
        for c in cohorts:
            line = str(c["cohort"]).ljust(10)
            if group:
                line += " " + _cut(str(c.get(group)), group_w).ljust(group_w)
            line += str(c["size"]).rjust(8)
            kept = c["retained"]
            line += "".join(
                (" " + _cell(kept[k], c["size"])) if k < len(kept) else " " * (_CELL + 1)
                for k in ks
            )
            lines.append(line.rstrip())
    return lines


def paths_lines(found: dict[str, Any], width: int = WIDTH) -> list[str]:
    """Links as ``depth  from → to  users``, depth by depth (most users first)."""
    users = found["users"]
    head = f"{users} user(s) reached {found['by']} "
    lines = [head + _cut(repr(found["start"]), width - len(head))]
    if not found["links"]:
        lines.append("no next step" if users else "nobody reached the start in this window")
        return lines
    name_w = (width - 5 - 2 - 3 - 1 - 7) // 2
    lines.append("depth".rjust(5) + "  " + "from".ljust(name_w) + "   " + "to".ljust(name_w))
    lines[-1] += " " + "users".rjust(7)
    for link in found["links"]:
        lines.append(
            f"{link['depth']:>5}  {_cut(str(link['from']), name_w):<{name_w}} → "
            f"{_cut(str(link['to']), name_w):<{name_w}} {link['users']:>7}"
        )
    return lines


def _print(lines: list[str]) -> None:
    for line in lines:
        console.print(escape(line), highlight=False, soft_wrap=True)


def retention_command(
    appid: str,
    start: Annotated[
        str, typer.Option("--start", help="An event, $any (any activity) or $new (new users)")
    ],
    returning: Annotated[str, typer.Option("--return", help="An event or $any")],
    unit: Annotated[Unit, typer.Option("--unit", case_sensitive=False)] = Unit.DAY,
    periods: Annotated[int, typer.Option("--periods", help="Periods after the cohort's")] = 7,
    group_by: Annotated[str | None, typer.Option("--group-by", help="One field")] = None,
    from_: From = None,
    to: To = None,
    tz: Zone = "UTC",
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Retention: who did START in a day (week) and RETURN 0..N days (weeks) later."""
    body = {
        "start": start,
        "return": returning,
        "unit": unit.value,
        "periods": periods,
        "group_by": group_by,
        "from": from_,
        "to": to,
        "tz": tz,
    }
    found = call(data_dir, as_json, "analytics.retention", appid=appid, body=body)
    render(as_json, found, lambda: _print(retention_lines(found)))


def paths_command(
    appid: str,
    start: Annotated[str, typer.Option("--start", help="The start page (or event with --by)")],
    by: Annotated[PathBy, typer.Option("--by", case_sensitive=False)] = PathBy.PAGE,
    depth: Annotated[int, typer.Option("--depth", help="Steps after the start (1 to 5)")] = 3,
    from_: From = None,
    to: To = None,
    tz: Zone = "UTC",
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Paths: the most common next steps after a page or event.

    Sessions are cut after 30 minutes without an event."""
    body = {"start": start, "by": by.value, "depth": depth, "from": from_, "to": to, "tz": tz}
    found = call(data_dir, as_json, "analytics.paths", appid=appid, body=body)
    render(as_json, found, lambda: _print(paths_lines(found)))
