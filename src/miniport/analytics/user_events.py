"""One user's events, for support and for a user who asks what is kept (pure: no I/O).

:func:`compile_user_events` builds the query both event stores run (DuckDB SQL, or ClickHouse
SQL through the deduplicated source of :mod:`.sql_dialects`): the user's events of one app,
test events included (a test's events are still the user's), never before the retention
cut-off, newest first in SQL so that a page is the ``limit`` newest events before a cursor;
the shaped result is in time order (newest last), with every field value decoded by the app's
field definitions (``data``: field name -> value, only the fields the event carries).

A page's cursor (``before``) is ``"<ts_ms>:<event id>"`` of the oldest event shown: the next
page holds the events strictly older in ``(ts_ms, id)`` order, so paging never repeats or
skips an event, even among events of the same millisecond."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from miniport.domain.shown import short_repr
from miniport.errors import ReportQueryError

from .reports import TABLE, FieldSlots, slot_column
from .sql_dialects import DUCKDB, Dialect

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "CompiledUserEvents",
    "UserEventsPage",
    "compile_user_events",
    "parse_cursor",
]

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
MAX_USER_ID: Final = 128
_CURSOR_RE: Final = re.compile(r"(-?[0-9]{1,19}):(.+)", re.DOTALL)
_EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=UTC)
_CORE: Final = ("ts_ms", "uid", "event", "page", "trigger", "action", "test_id", "visible")

Row = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class UserEventsPage:
    """A page of events, oldest first; ``before`` the cursor of the next (older) page, or
    ``None`` when there is none."""

    events: list[dict[str, object]]
    before: str | None

    def as_dict(self) -> dict[str, object]:
        return {"events": self.events, "before": self.before, "more": self.before is not None}


@dataclass(frozen=True, slots=True)
class CompiledUserEvents:
    sql: str
    params: tuple[object, ...]
    shape: Callable[[Sequence[Row]], UserEventsPage] = field(repr=False)


def parse_cursor(text: str | None) -> tuple[int, str] | None:
    """``"<ts_ms>:<event id>"`` -> (ts_ms, id); ``ReportQueryError`` when malformed."""
    if text is None or text == "":
        return None
    found = _CURSOR_RE.fullmatch(text)
    # 19 digits go past the stores' 64 bits
    if found is None or not -(2**63) <= int(found.group(1)) < 2**63:
        raise ReportQueryError(
            f"cursor {short_repr(text)} is not <ms>:<event id> (take it from a page's 'before')"
        )
    return int(found.group(1)), found.group(2)


def _iso_utc(ts_ms: int) -> str:
    moment = _EPOCH_UTC + timedelta(milliseconds=ts_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def _check(user_id: str, limit: int) -> None:
    if not isinstance(user_id, str) or not user_id.strip():
        raise ReportQueryError("a user id is needed")
    if len(user_id) > MAX_USER_ID:
        raise ReportQueryError(f"a user id has at most {MAX_USER_ID} characters")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ReportQueryError(f"limit must be an integer from 1 to {MAX_LIMIT}")


def compile_user_events(
    appid: str,
    user_id: str,
    slots: FieldSlots,
    *,
    limit: int = DEFAULT_LIMIT,
    before: str | None = None,
    not_before_ms: int,
    existing_columns: Collection[str] | None = None,
    dialect: Dialect = DUCKDB,
) -> CompiledUserEvents:
    """The query of one page of a user's events. ``existing_columns``: the slot columns the
    table has (a field whose column does not exist yet has no value anywhere)."""
    _check(user_id, limit)
    cursor = parse_cursor(before)
    fields = []  # (name, column) of the fields that may hold a value
    history = getattr(slots, "history", {})
    for name, (ftype, slot) in slots.items():
        own = [slot_column(ftype, slot)]
        if name in history:  # a retyped field: its value is in the column of its type then
            own += [p.column for p in history[name].parts if p.column not in own]
        for column in own:
            if existing_columns is None or column in existing_columns:
                fields.append((name, column))
    values: list[object] = []

    def add(value: object, sql_type: str) -> str:
        values.append(value)
        return dialect.placeholder(len(values), sql_type)

    app, user = add(appid, "VARCHAR"), add(user_id, "VARCHAR")
    where = f"appid = {app} AND user_id = {user} AND ts_ms >= {add(not_before_ms, 'BIGINT')}"
    if cursor is not None:
        ts, uid = add(cursor[0], "BIGINT"), add(cursor[1], "VARCHAR")
        where += f" AND (ts_ms < {ts} OR (ts_ms = {ts} AND uid < {uid}))"
    columns = sorted({c for _, c in fields})
    source = dialect.source(TABLE, app, None, columns)
    select = ", ".join([*_CORE, *columns])
    sql = (
        f"SELECT {select} FROM {source} WHERE {where}"
        f" ORDER BY ts_ms DESC, uid DESC LIMIT {limit + 1}"
    )
    index = {c: len(_CORE) + i for i, c in enumerate(columns)}
    # bool slots (b0..b31) are BOOLEAN on DuckDB but UInt8 on ClickHouse: true/false on both
    decode = [(name, index[column], column.startswith("b")) for name, column in fields]

    def shape(rows: Sequence[Row]) -> UserEventsPage:
        page = list(rows[:limit])
        more = len(rows) > limit
        events = [_event(row, decode) for row in reversed(page)]
        cursor_out = f"{page[-1][0]}:{page[-1][1]}" if more and page else None
        return UserEventsPage(events, cursor_out)

    return CompiledUserEvents(sql, tuple(values), shape)


def _event(row: Row, decode: list[tuple[str, int, bool]]) -> dict[str, object]:
    ts_ms = row[0]
    assert isinstance(ts_ms, int)
    data = {
        name: bool(row[i]) if is_bool else row[i]
        for name, i, is_bool in decode
        if row[i] is not None
    }
    return {
        "id": row[1],
        "time": _iso_utc(ts_ms),
        "ts_ms": ts_ms,
        "event": row[2],
        "page": row[3],
        "trigger": row[4],
        "action": row[5],
        "test_id": row[6],
        "visible": bool(row[7]),
        "data": data,
    }
