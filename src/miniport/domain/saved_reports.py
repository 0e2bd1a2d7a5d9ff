"""Saved reports and dashboards: the rules, without I/O.

A saved report is a name, a kind and the kind's parameters (a JSON object, checked against the
kind's parameter model when the kind has one here: :data:`PARAMS_MODELS`; a kind without one
is stored as a JSON object and runs once a report of that kind is registered with the
service). A dashboard is a named grid of saved reports in order, each one or two columns wide,
sharing one date range: the last N days (today included, in the dashboard's time zone) or
fixed from/to dates, which replace the ``from``/``to``/``tz`` of every dated report on it."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from ..analytics.limits import MAX_DEPTH, MAX_PERIODS
from ..errors import InvalidInput, Problem
from .shown import short_repr
from .zones import zone

KINDS: Final = ("report", "funnel", "retention", "paths", "overview")
DATED_KINDS: Final = frozenset({"report", "funnel", "retention", "paths", "overview"})
"""Kinds whose parameters take ``from``/``to``/``tz`` (a dashboard's range replaces them)."""
MAX_NAME: Final = 64
MAX_PARAMS_BYTES: Final = 16_000
MAX_ITEMS: Final = 24
MAX_LAST_DAYS: Final = 366
_DATE_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
WIDTHS: Final = (1, 2)


def _between(name: str, low: int, high: int) -> AfterValidator:
    """A range check worded as the report's own query words it (the CLI, the admin API and a
    saved report say the same thing about the same mistake)."""

    def check(value: int) -> int:
        if not low <= value <= high:
            raise PydanticCustomError("out_of_range", f"{name} is {low} to {high}, got {value}")
        return value

    return AfterValidator(check)


def _one_of(message: str, *allowed: str) -> AfterValidator:
    def check(value: str) -> str:
        if value not in allowed:
            raise PydanticCustomError("not_allowed", message.format(value=value))
        return value

    return AfterValidator(check)


class ReportParams(BaseModel):
    """Event analysis, as ``POST /analytics/report`` takes it (the admin API's body model)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    event: StrictStr = Field(min_length=1, max_length=64)
    metrics: list[StrictStr] = Field(default_factory=lambda: ["count"], max_length=5)
    group_by: list[StrictStr] = Field(default_factory=list, max_length=5)
    filters: list[StrictStr] = Field(default_factory=list, max_length=5)
    any: StrictBool = False
    granularity: Literal["hour", "day", "all"] = "day"
    from_: StrictStr | int | None = Field(default=None, alias="from")
    to: StrictStr | int | None = None
    tz: StrictStr = "UTC"


class FunnelParams(BaseModel):
    """A funnel, as ``POST /analytics/funnel`` takes it (the admin API's body model)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    steps: list[StrictStr] = Field(min_length=2, max_length=10)
    group_by: StrictStr | None = None
    window: StrictStr | None = Field(default=None, max_length=16)
    order: StrictStr | None = Field(default=None, max_length=16)
    from_: StrictStr | int | None = Field(default=None, alias="from")
    to: StrictStr | int | None = None
    tz: StrictStr = "UTC"


class RetentionParams(BaseModel):
    """Retention, as ``POST /analytics/retention`` takes it (the admin API's body model)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    start: StrictStr = Field(min_length=1, max_length=64)
    return_: StrictStr = Field(alias="return", min_length=1, max_length=64)
    unit: Annotated[StrictStr, _one_of("unit is day or week, not {value!r}", "day", "week")] = "day"
    periods: Annotated[StrictInt, _between("periods", 1, MAX_PERIODS)] = 7
    group_by: StrictStr | None = None
    from_: StrictStr | int | None = Field(default=None, alias="from")
    to: StrictStr | int | None = None
    tz: StrictStr = "UTC"


class PathsParams(BaseModel):
    """Paths, as ``POST /analytics/paths`` takes it (the admin API's body model)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    start: StrictStr = Field(min_length=1, max_length=256)
    by: Annotated[
        StrictStr, _one_of("paths go by page or event, not {value!r}", "page", "event")
    ] = "page"
    depth: Annotated[StrictInt, _between("depth", 1, MAX_DEPTH)] = 3
    from_: StrictStr | int | None = Field(default=None, alias="from")
    to: StrictStr | int | None = None
    tz: StrictStr = "UTC"


class OverviewParams(BaseModel):
    """The overview, as ``POST /analytics/overview`` takes it (the admin API's body model)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    granularity: Literal["hour", "day", "all"] = "day"
    group_by: StrictStr | None = None
    top_pages: int = Field(default=20, ge=1, le=100)
    from_: StrictStr | int | None = Field(default=None, alias="from")
    to: StrictStr | int | None = None
    tz: StrictStr = "UTC"


PARAMS_MODELS: dict[str, type[BaseModel]] = {
    "report": ReportParams,
    "funnel": FunnelParams,
    "retention": RetentionParams,
    "paths": PathsParams,
    "overview": OverviewParams,
}
"""Parameter models by kind (a kind added later registers its model here)."""


def check_name(name: object, what: str = "report") -> str:
    """A name: 1..64 characters, printable, no leading/trailing spaces, no slash or
    backslash, not only dots."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"a {what} needs a name", [Problem("name", "required")])
    if name != name.strip():
        raise InvalidInput(f"{what} name {name!r} starts or ends with spaces")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"a {what} name has at most {MAX_NAME} characters")
    if not name.isprintable():
        raise InvalidInput(f"{what} name {name!r} holds a control character")
    if "/" in name or "\\" in name or set(name) == {"."}:
        # the name is a path segment of the admin API: a slash or a dot segment would be
        # read as another path by clients and servers
        raise InvalidInput(f"{what} name {name!r}: no slash or backslash, not only dots")
    return name


def check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise InvalidInput(
            f"unknown report kind {short_repr(kind)} (one of: {', '.join(KINDS)})",
            [Problem("kind", f"one of {', '.join(KINDS)}")],
        )
    return str(kind)


def validate_params(
    kind: str, params: object, models: Mapping[str, type[BaseModel]] | None = None
) -> dict[str, Any]:
    """The parameters as stored: a JSON object, checked by the kind's model when it has one
    (in ``models``, by default :data:`PARAMS_MODELS`; defaults filled in, ``from`` under its
    own name)."""
    check_kind(kind)
    if not isinstance(params, dict):
        raise InvalidInput("report parameters must be a JSON object", [Problem("params", "")])
    try:
        size = len(json.dumps(params, ensure_ascii=False, allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"report parameters are not JSON: {exc}") from exc
    except RecursionError:  # nested past what json.dumps recurses into (the reader takes it)
        raise InvalidInput("report parameters are nested too deep") from None
    if size > MAX_PARAMS_BYTES:
        raise InvalidInput(f"report parameters are larger than {MAX_PARAMS_BYTES} bytes")
    model = (PARAMS_MODELS if models is None else models).get(kind)
    if model is None:
        return dict(params)
    try:
        checked = model.model_validate(params)
    except ValidationError as exc:
        problems = [
            Problem("params." + ".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()
        ]
        text = "; ".join(f"{p.path}: {p.message}" for p in problems)
        raise InvalidInput(
            f"parameters of a {kind} report do not validate: {text}", problems
        ) from None
    return checked.model_dump(mode="json", by_alias=True)


def check_range(last_days: int | None, date_from: str | None, date_to: str | None, tz: str) -> None:
    """A dashboard's range: last N days (1..366) or both dates (from <= to), not both."""
    if zone(tz) is None:
        raise InvalidInput(f"unknown time zone {short_repr(tz)}")
    if last_days is not None:
        if date_from is not None or date_to is not None:
            raise InvalidInput("a dashboard takes the last N days or from/to dates, not both")
        if isinstance(last_days, bool) or not 1 <= last_days <= MAX_LAST_DAYS:
            raise InvalidInput(f"last days must be 1 to {MAX_LAST_DAYS}")
        return
    if date_from is None or date_to is None:
        raise InvalidInput("a dashboard needs the last N days, or both a from and a to date")
    # exactly YYYY-MM-DD: fromisoformat takes 20261126 too, which the reports then read as
    # a time in milliseconds (1970), answering nothing
    for given in (date_from, date_to):
        if not isinstance(given, str) or not _DATE_RE.fullmatch(given):
            raise InvalidInput(f"dates are YYYY-MM-DD, not {short_repr(given)}")
    try:
        first, last = dt.date.fromisoformat(date_from), dt.date.fromisoformat(date_to)
    except ValueError as exc:
        raise InvalidInput(f"dates are YYYY-MM-DD: {exc}") from exc
    if first > last:
        raise InvalidInput(f"from {date_from} is after to {date_to}")


def range_dates(
    last_days: int | None, date_from: str | None, date_to: str | None, tz: str, now_s: float
) -> tuple[str, str]:
    """The dashboard's (from, to) dates, both included."""
    if last_days is None:
        assert date_from is not None and date_to is not None
        return date_from, date_to
    today = dt.datetime.fromtimestamp(now_s, ZoneInfo(tz)).date()
    return (today - dt.timedelta(days=last_days - 1)).isoformat(), today.isoformat()


def with_range(
    kind: str, params: dict[str, Any], dates: tuple[str, str], tz: str
) -> dict[str, Any]:
    """A saved report's parameters under a dashboard's range (undated kinds unchanged)."""
    if kind not in DATED_KINDS:
        return params
    return {**params, "from": dates[0], "to": dates[1], "tz": tz}


def check_width(width: object) -> int:
    if isinstance(width, bool) or not isinstance(width, int) or width not in WIDTHS:
        raise InvalidInput(f"width must be 1 or 2 (columns of the grid), not {width!r}")
    return width


def moved(order: list[str], name: str, to: int) -> list[str]:
    """``order`` with ``name`` at position ``to`` (0-based; past the end: last)."""
    if name not in order:
        raise ValueError(name)
    if isinstance(to, bool) or not isinstance(to, int) or to < 0:
        raise InvalidInput(f"position must be 0 or more, not {to!r}")
    rest = [n for n in order if n != name]
    rest.insert(min(to, len(rest)), name)
    return rest
