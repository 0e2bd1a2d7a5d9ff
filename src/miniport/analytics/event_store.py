"""Analytics event store: the :class:`EventStore` interface and its DuckDB implementation.

Layout (one table ``events``; a ClickHouse implementation can follow it column for column)::

    appid VARCHAR, uid VARCHAR            -- PRIMARY KEY: the client-made event id per app
    event VARCHAR, user_id VARCHAR        -- event name, user id (unique-user metrics)
    ts_ms BIGINT                          -- event time (client time, skew corrected), ms UTC
    received_ms BIGINT, time_estimated BOOLEAN
    page VARCHAR, trigger VARCHAR, action VARCHAR
    test_id VARCHAR                       -- not NULL for events reported under a live test
    visible BOOLEAN                       -- what reports see: false for a test's events
                                          -- until sync_test(appid, test_id)
    i0..i31 INTEGER, s0..s31 VARCHAR      -- field values by slot (see reports.FieldSlots)
    f0..f31 DOUBLE, b0..b31 BOOLEAN       -- float and bool fields (a double keeps 15-17
                                          -- significant digits: sums of prices are exact
                                          -- to the cent up to ~10^12)
    -- system properties (report names $platform...; see analytics.system_props), NULL when
    -- not sent: every event may carry them, custom or built-in
    sys_platform, sys_os_version, sys_brand, sys_model, sys_host_version, sys_mp_version,
    sys_env, sys_sdk_version, sys_network, sys_language, sys_screen, sys_session VARCHAR
    sys_scene INTEGER                     -- launch scene ($scene)
    sys_new_user BOOLEAN                  -- derived at ingest: the event is on the user's
                                          -- first UTC day for the app (table first_seen)
    -- data of the built-in events ($launch, $show, $hide, $pageview, $pageleave)
    ev_path VARCHAR, ev_query VARCHAR     -- $launch, $pageview ($pageleave: path only)
    ev_referrer VARCHAR                   -- $pageview: the page shown before ('' = none)
    ev_duration_ms BIGINT                 -- $pageleave: time on the page
    ev_cold BOOLEAN                       -- $launch: cold (true) or warm start

    first_seen (appid, user_id PRIMARY KEY, first_day INTEGER)
                                          -- UTC day number of each user's first event,
                                          -- set once (EventStore.first_days)

Built-in events are stored like custom ones, with ``event`` = their ``$`` name. The column
names are the contract for reports written against this table; the ``$`` names that reports
accept map to them in :data:`miniport.analytics.system_props.DIMENSIONS`.

The slot columns (and the ``sys_``/``ev_`` columns, likewise) are created on first use
(``ALTER TABLE ADD COLUMN``, a few ms) instead of all 64 up front: DuckDB pays per column
on every append whether the value is NULL or not, so an app that uses 3 slots appends about
twice as fast as with 64 empty columns, and a report on a column that no event has used yet
reads it as NULL. This is also the schema upgrade of a file made before the system
properties: opening it adds the ``first_seen`` table, the first event carrying a property
adds its column, the rows already stored read NULL there. So a report must not assume a
``sys_``/``ev_``/slot column exists: build its SQL with the report compiler's column
resolution (``existing_columns``: a missing column becomes a typed NULL; ClickHouse creates
the columns a compiled report lists in ``CompiledReport.columns`` before running it).

Retention and reports use ``ts_ms``: ``delete_older_than(cutoff)`` deletes ``ts_ms < cutoff``
and every report takes ``not_before_ms`` and never reads before it, so an event older than the
window is not counted even before the retention job has run.

Forgetting a user (``forget_user``) deletes their events and remembers them in table
``forgotten`` (``appid, user_id, forgotten_ms``, kept in memory too): a row of theirs
written later whose event time or receipt is at or before the forget is left out (counted as
a duplicate, not stored), whether it was queued for the group commit when the forget ran or
sent again by a device later, after a restart too. Writes and the forget take the same lock,
so on DuckDB nothing is in flight across a forget. A forgotten user is remembered until the
retention cut-off is a day past the forget.

Concurrency: one writer connection behind a lock (``append``, ``sync_test``,
``delete_older_than``); every read runs on its own cursor (a separate DuckDB connection on the
same database) and does not wait for writes. All methods are synchronous and thread-safe; the
async HTTP layer calls them in worker threads (``asyncio.to_thread``). DuckDB releases the GIL
while it executes, so a flush overlaps with Python work on the other core.

``append`` — durability, dedup and group commit:

* When ``append`` returns, its rows are committed: written to DuckDB's WAL and
  ``fdatasync``-ed (checked with strace); a crash after that loses nothing.
  ``(appid, uid)`` is stored once, whether it repeats within one call, in a later call or
  after a reopen: the primary key (an ART index, persistent, loaded lazily on
  open) is the arbiter.
* Fast path: the rows go through a DuckDB ``Appender`` (values converted in C++, ONE
  statement, checked against the key; far cheaper than the alternatives, see below). Duplicates
  are rare (client retries), so when that statement hits the key the batch is redone through
  a temp table with ``INSERT OR IGNORE ... RETURNING appid, uid`` (which tells which rows
  were new); ``INSERT OR IGNORE`` on every batch would cost about 2x on the index.
* Group commit: concurrent ``append`` calls are combined. A caller enqueues its rows; if no
  write is in progress it becomes the leader and writes everything queued so far (up to
  ``max_group_rows``) in one statement and one commit, else it sleeps until a leader has
  written its rows (or hands over). Each caller gets its own :class:`AppendResult`. A
  failure of a combined write is retried per caller, so one bad batch never fails another
  caller's batch.

Measured throughput of ``append`` (2-core VM shared with other jobs, DuckDB 2.0.0, file on
local disk, rows with 1 int + 1 string field, ``StoredEvent`` objects built beforehand):

* calls of 100 rows, one thread: ~2.5 ms per call (median), i.e. 30-40k rows/s. The floor
  is DuckDB's fixed cost of one committed write statement (~0.6 ms in memory, ~2 ms with the
  WAL), not the rows;
* calls of 1,000 rows, one thread: ~6.5 ms per call, i.e. ~130k rows/s (~5 us per row);
* calls of 100 rows from 6 threads at once: 60-80k rows/s (group commit merges up to 6);
* for comparison, 100-row calls with ``executemany``: ~100 rows/s; multi-row ``VALUES``:
  ~4k rows/s; ``INSERT ... SELECT unnest(list parameters)``: ~8k rows/s; ``INSERT OR
  IGNORE`` instead of the appender's key check: ~2x the per-row cost; 64 empty slot columns
  instead of the used ones: ~2x too. A table of 10M events appends at the same rate.
* system properties cost per value like any column: rows carrying a full runtime context
  (13 properties + ``$new_user``, 14 more columns) take ~2.2x the CPU per row of rows with
  just 1 int + 1 string field (calls of 1,000 rows: ~59k vs ~125k rows/s, load average ~4 on
  the 2-core VM; ``bench/system_columns.py``); a built-in ``$pageview`` with its data ~1.9x.
  An app whose runtime sends no context pays nothing (the columns are used only when present
  in a call's rows).
* a WAL checkpoint (each 16 MB of WAL, ~100k rows) stalls one commit for ~0.1-0.3 s; the
  appends queued meanwhile go out together in the next commit.

So reaching 50k events/s in batches of 100 takes more than one append in flight: call
``append`` from several worker threads at once (or merge HTTP batches before calling); each
in-flight call adds its rows to the next commit. Building a ``StoredEvent`` (a dataclass
with validation) costs the caller ~1 us per row, the store's own Python work
~1.5 us per row. The primary-key index takes ~100 bytes of memory per stored event once
loaded (10M events: ~1.3 GB resident); it is loaded lazily after a reopen.
"""

from __future__ import annotations

import csv
import math
import re
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol, TextIO, cast, runtime_checkable

from miniport.analytics.funnel_scan import duckdb_fetch, run_scan
from miniport.analytics.group_commit import AppendResult, Group, GroupCommit, StoreClosed
from miniport.analytics.overview import (
    CompiledMulti,
    OverviewQuery,
    RealtimeQuery,
    compile_overview,
    compile_realtime,
)
from miniport.analytics.paths import PathsQuery, compile_paths
from miniport.analytics.reports import (
    CORE_COLUMNS,
    MAX_SLOTS,
    TABLE,
    EventQuery,
    FieldSlots,
    FunnelQuery,
    compile_event_analysis,
    compile_export,
    compile_funnel_scan,
)
from miniport.analytics.retention import RetentionQuery, compile_retention
from miniport.analytics.system_props import EXTRA_COLUMNS, utc_day
from miniport.analytics.user_events import UserEventsPage, compile_user_events

if TYPE_CHECKING:
    import duckdb

# duckdb is imported when a store opens, not with this module: the platform (and so every
# local CLI command) imports it, and most commands never open the events file.

__all__ = [
    "DEFAULT_FILE_NAME",
    "AppendResult",
    "DuckDBEventStore",
    "EventStore",
    "Forgotten",
    "RowColumns",
    "StoredEvent",
    "forgotten_before",
    "now_ms",
    "storable_first_days",
]

DEFAULT_FILE_NAME: Final = "analytics.duckdb"
SCHEMA_VERSION: Final = "1"
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
_EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=UTC)
_FETCH_ROWS: Final = 10_000
_SLOT_COLUMN_RE: Final = re.compile(r"[isfb](?:[0-9]|[12][0-9]|3[01])")
_SLOT_TYPES: Final = {"i": "INTEGER", "s": "VARCHAR", "f": "DOUBLE", "b": "BOOLEAN"}
_SIZE_RE: Final = re.compile(r"[0-9]+(\.[0-9]+)? ?[KMGT]i?B")

_CREATE_EVENTS: Final = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    appid VARCHAR NOT NULL,
    uid VARCHAR NOT NULL,
    event VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    ts_ms BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    time_estimated BOOLEAN NOT NULL,
    page VARCHAR,
    trigger VARCHAR,
    action VARCHAR,
    test_id VARCHAR,
    visible BOOLEAN NOT NULL,
    PRIMARY KEY (appid, uid)
)"""
_CREATE_META: Final = (
    "CREATE TABLE IF NOT EXISTS miniport_meta (key VARCHAR PRIMARY KEY, value VARCHAR)"
)
_CREATE_FIRST_SEEN: Final = (
    "CREATE TABLE IF NOT EXISTS first_seen (appid VARCHAR NOT NULL, user_id VARCHAR NOT NULL,"
    " first_day INTEGER NOT NULL, PRIMARY KEY (appid, user_id))"
)
_CREATE_FORGOTTEN: Final = (
    "CREATE TABLE IF NOT EXISTS forgotten (appid VARCHAR NOT NULL, user_id VARCHAR NOT NULL,"
    " forgotten_ms BIGINT NOT NULL, PRIMARY KEY (appid, user_id))"
)
FORGOTTEN_KEPT_MS: Final = 86_400_000
"""How long past the retention cut-off a forgotten user is remembered: an event received
before the forget may carry an event time up to a day later (ingest_rules), and until the
cut-off passes that time it is inside the window."""

Forgotten = dict[tuple[str, str], int]
"""``(appid, user_id)`` -> the time (ms) the user was last forgotten at."""


def forgotten_before(forgotten: Forgotten, row: StoredEvent) -> bool:
    """Whether ``row`` belongs to what forgetting its user erased: its user was forgotten
    at or after the event's time or its receipt (a batch received before the forget and
    written after it, or a device's queued event sent again later). An event whose time and
    receipt are both after the forget is new (the device kept using the app) and is kept."""
    at = forgotten.get((row.appid, row.user))
    return at is not None and (row.ts_ms <= at or row.received_ms <= at)


def storable_first_days(
    forgotten: Forgotten, appid: str, candidates: Mapping[str, int]
) -> dict[str, int]:
    """The candidate first days a store may record: not a day before the day its user was
    forgotten, which only events the forget erased can give (those it keeps are after it:
    a device sending old events again, to a node that had not heard of the forget yet)."""
    out: dict[str, int] = {}
    for user, day in candidates.items():
        at = forgotten.get((appid, user))
        if at is None or day >= utc_day(at):
            out[user] = day
    return out


def now_ms() -> int:
    return int(time.time() * 1000)


_SQL_TYPES: Final = {"string": "VARCHAR", "int": "INTEGER", "bigint": "BIGINT", "bool": "BOOLEAN"}
_EXTRA_CHECKS: Final = {
    "string": lambda v: isinstance(v, str),
    "int": lambda v: type(v) is int and _INT32_MIN <= v <= _INT32_MAX,
    "bigint": lambda v: type(v) is int and -(2**63) <= v < 2**63,
    "bool": lambda v: type(v) is bool,
}
_STRING_EXTRAS: Final = frozenset(c for c, kind in EXTRA_COLUMNS.items() if kind == "string")
_CORE_TYPES: Final = {
    "appid": "VARCHAR",
    "uid": "VARCHAR",
    "event": "VARCHAR",
    "user_id": "VARCHAR",
    "ts_ms": "BIGINT",
    "received_ms": "BIGINT",
    "time_estimated": "BOOLEAN",
    "page": "VARCHAR",
    "trigger": "VARCHAR",
    "action": "VARCHAR",
    "test_id": "VARCHAR",
    "visible": "BOOLEAN",
}


@dataclass(slots=True)
class StoredEvent:
    """One event row to append. ``uid``: client-made event id (dedup key with ``appid``);
    ``user``: the user id; ``ints``/``strs``: slot -> value (slots 0..31, ints 32-bit);
    ``test_id``: set for events reported under a live test (invisible in reports until
    :meth:`EventStore.sync_test`). Raises ``ValueError``/``TypeError`` when malformed.

    Not frozen: ingestion builds one per event, and a frozen dataclass's ``__init__`` (one
    ``object.__setattr__`` per field) cost ~2.3 us of the ~3.4 us of a row; treat it as
    read-only (the checks below run once, at construction)."""

    appid: str
    uid: str
    event: str
    user: str
    ts_ms: int
    received_ms: int
    time_estimated: bool
    page: str | None
    trigger: str | None
    action: str | None
    ints: dict[int, int]
    strs: dict[int, str]
    test_id: str | None = None
    extra: dict[str, object] = field(default_factory=dict)
    """System properties and built-in event data by column (``sys_platform``, ``ev_path``…)."""
    floats: dict[int, float] = field(default_factory=dict)
    """float field values by slot (finite numbers)."""
    bools: dict[int, bool] = field(default_factory=dict)
    """bool field values by slot."""

    def __post_init__(self) -> None:
        # One cheap pass on the hot path (ingestion builds ~50k of these a second); the
        # detailed message is worked out only when something is wrong.
        if not (
            isinstance(self.appid, str)
            and isinstance(self.uid, str)
            and isinstance(self.event, str)
            and isinstance(self.user, str)
            and self.appid
            and self.uid
            and self.event
            and self.user
            and type(self.ts_ms) is int
            and type(self.received_ms) is int
            and (self.page is None or isinstance(self.page, str))
            and (self.trigger is None or isinstance(self.trigger, str))
            and (self.action is None or isinstance(self.action, str))
            and (self.test_id is None or isinstance(self.test_id, str))
        ):
            self._explain_core()
        for slot, number in self.ints.items():
            if not (
                type(slot) is int
                and 0 <= slot < MAX_SLOTS
                and type(number) is int
                and _INT32_MIN <= number <= _INT32_MAX
            ):
                _explain_slot("int", slot, number)
        for slot, text in self.strs.items():
            if not (type(slot) is int and 0 <= slot < MAX_SLOTS and isinstance(text, str)):
                _explain_slot("string", slot, text)
        for slot, real in self.floats.items():
            if not (
                type(slot) is int
                and 0 <= slot < MAX_SLOTS
                and type(real) is float
                and math.isfinite(real)
            ):
                raise TypeError(f"float slot {slot!r} must hold a finite float, not {real!r}")
        for slot, flag in self.bools.items():
            if not (type(slot) is int and 0 <= slot < MAX_SLOTS and type(flag) is bool):
                raise TypeError(f"bool slot {slot!r} must hold a bool, not {flag!r}")
        for column, value in self.extra.items():
            if type(value) is str and column in _STRING_EXTRAS:  # most system properties
                continue
            kind = EXTRA_COLUMNS.get(column)
            if kind is None:
                raise ValueError(f"{column!r} is not a system-property or built-in data column")
            if not _EXTRA_CHECKS[kind](value):
                raise TypeError(f"column {column} ({kind}) cannot hold {value!r}")

    def _explain_core(self) -> None:
        for name in ("appid", "uid", "event", "user"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"StoredEvent.{name} must be a non-empty string")
        for name in ("ts_ms", "received_ms"):
            if type(getattr(self, name)) is not int:
                raise TypeError(f"StoredEvent.{name} must be an int (ms since the epoch)")
        raise TypeError("StoredEvent.page/trigger/action/test_id must be strings or None")


def _column_type(column: str) -> str:
    """DuckDB type of a slot or extra column (``column`` is never input text)."""
    kind = EXTRA_COLUMNS.get(column)
    if kind is not None:
        return _SQL_TYPES[kind]
    return _CORE_TYPES.get(column) or _SLOT_TYPES[column[0]]


def _explain_slot(kind: str, slot: object, value: object) -> None:
    if type(slot) is not int or not 0 <= slot < MAX_SLOTS:
        raise ValueError(f"{kind} slot {slot!r} is outside 0..{MAX_SLOTS - 1}")
    if kind == "string":
        raise TypeError(f"string slot {slot} holds {type(value).__name__}, not str")
    if type(value) is not int:
        raise TypeError(f"int slot {slot} holds {type(value).__name__}, not int")
    raise ValueError(f"int slot {slot} value {value} is not a 32-bit integer")


@dataclass(frozen=True, slots=True)
class RowColumns:
    """The slot and system-property columns a group of rows uses (most rows leave most of them
    empty, and every store writes only the columns used), found in one pass over the rows."""

    ints: tuple[int, ...]
    strs: tuple[int, ...]
    floats: tuple[int, ...]
    bools: tuple[int, ...]
    extras: tuple[str, ...]

    @classmethod
    def of(cls, rows: Sequence[StoredEvent]) -> RowColumns:
        ints: set[int] = set()
        strs: set[int] = set()
        floats: set[int] = set()
        bools: set[int] = set()
        used: set[str] = set()
        for row in rows:
            if row.ints:
                ints.update(row.ints)
            if row.strs:
                strs.update(row.strs)
            if row.floats:
                floats.update(row.floats)
            if row.bools:
                bools.update(row.bools)
            if row.extra:
                used.update(row.extra)
        extras = tuple(c for c in EXTRA_COLUMNS if c in used)
        return cls(tuple(sorted(ints)), tuple(sorted(strs)), tuple(sorted(floats)),
                   tuple(sorted(bools)), extras)  # fmt: skip

    @property
    def names(self) -> tuple[str, ...]:
        """The columns, in the order :meth:`values` gives their values."""
        return (
            *(f"i{s}" for s in self.ints),
            *(f"s{s}" for s in self.strs),
            *(f"f{s}" for s in self.floats),
            *(f"b{s}" for s in self.bools),
            *self.extras,
        )

    def columns(self, rows: Sequence[StoredEvent]) -> list[list[object]]:
        """The values of each of these columns over ``rows`` (``None`` where a row has none),
        in the order of :attr:`names`: :meth:`values` column by column."""
        out: list[list[object]] = []
        out.extend([r.ints.get(s) for r in rows] for s in self.ints)
        out.extend([r.strs.get(s) for r in rows] for s in self.strs)
        out.extend([r.floats.get(s) for r in rows] for s in self.floats)
        out.extend([r.bools.get(s) for r in rows] for s in self.bools)
        out.extend([r.extra.get(c) for r in rows] for c in self.extras)
        return out

    def values(self, r: StoredEvent) -> list[object]:
        """One row's values of these columns (``None`` where it has none)."""
        return [
            *[r.ints.get(s) for s in self.ints],
            *[r.strs.get(s) for s in self.strs],
            *[r.floats.get(s) for s in self.floats],
            *[r.bools.get(s) for s in self.bools],
            *[r.extra.get(c) for c in self.extras],
        ]


def _checked_rows(rows: Sequence[StoredEvent]) -> list[StoredEvent]:
    rows = list(rows)
    for row in rows:
        if not isinstance(row, StoredEvent):
            raise TypeError(f"append takes StoredEvent rows, not {type(row).__name__}")
    return rows


def _submit_checked(
    group_commit: GroupCommit, rows: Sequence[StoredEvent]
) -> Future[AppendResult]:
    """A store's ``submit``: ``rows`` checked, then queued for its group commit (nothing to
    queue for no rows)."""
    rows = _checked_rows(rows)
    if not rows:
        done: Future[AppendResult] = Future()
        done.set_result(AppendResult(0, 0))
        return done
    return group_commit.submit(rows)


_SLOT_NAME = re.compile(r"[isfb](?:[0-9]|[12][0-9]|3[01])")


def _slot_name(column: str) -> str:
    """``column`` if it is a slot column's name (it goes into SQL text), else ValueError."""
    if not _SLOT_NAME.fullmatch(column):
        raise ValueError(f"not a slot column: {column!r}")
    return column


@runtime_checkable
class EventStore(Protocol):
    """Where analytics events live. Synchronous; implementations are thread-safe."""

    def append(self, rows: Sequence[StoredEvent]) -> AppendResult:
        """Store the rows (durable when this returns); an ``(appid, uid)`` already stored,
        or repeated in ``rows``, is counted as a duplicate and not stored again."""
        ...

    def submit(self, rows: Sequence[StoredEvent]) -> Future[AppendResult]:
        """:meth:`append` without waiting: the future gets its result (or error) once the
        rows are durable (the store's own thread writes them)."""
        ...

    def sync_test(self, appid: str, test_id: str) -> int:
        """Make a test's events visible in reports; returns how many became visible."""
        ...

    def clear_slot(self, appid: str, column: str, received_before_ms: int) -> int:
        """Empty one slot column (``s2``...) in every event of an app received before
        ``received_before_ms``, test events included (a slot just given to a field: what was
        left there is nobody's); returns how many events had a value there."""
        ...

    def delete_older_than(self, cutoff_ms: int) -> int:
        """Retention: delete events with ``ts_ms < cutoff_ms``; returns how many. Forgotten
        users are remembered until the cut-off passes their forget by a day."""
        ...

    def forget_user(self, appid: str, user_id: str, at_ms: int | None = None) -> int:
        """Delete every event of one user of one app (gone from reports when this returns),
        and when the user was first seen; returns how many rows went. The user is remembered
        as forgotten at ``at_ms`` (default: now, on the clock that stamps ``received_ms``):
        an event of theirs written later whose time or receipt is at or before it (queued or
        in flight when the forget ran, or sent again by a device) is not stored
        (:func:`forgotten_before`); one whose time and receipt are after it is."""
        ...

    def forgotten_at(self, appid: str, user_id: str) -> int | None:
        """When the user was last forgotten (ms), as this node knows it; None: not forgotten
        (or no longer remembered)."""
        ...

    def first_days(self, appid: str, candidates: Mapping[str, int]) -> dict[str, int]:
        """Each user's first UTC day for the app (``$new_user``): the day stored for a known
        user, else the candidate day given, which is stored (set once, never moved) unless
        it is before the user's forget (:func:`storable_first_days`: left out of the
        answer)."""
        ...

    def user_events(
        self,
        appid: str,
        user_id: str,
        slots: FieldSlots,
        *,
        limit: int,
        before: str | None,
        not_before_ms: int,
    ) -> UserEventsPage:
        """One page of a user's events (test events included), oldest first: the ``limit``
        newest before the cursor ``before`` (see :mod:`miniport.analytics.user_events`)."""
        ...

    def count(self, appid: str, event: str | None = None, *, include_tests: bool = False) -> int:
        """Stored events of an app (of one event): those reports see (not-test events and
        synced tests' events), or all of them with ``include_tests``."""
        ...

    def event_analysis(
        self, appid: str, query: EventQuery, slots: FieldSlots
    ) -> list[dict[str, object]]: ...

    def funnel(
        self, appid: str, query: FunnelQuery, slots: FieldSlots
    ) -> list[dict[str, object]]: ...

    def overview(self, appid: str, query: OverviewQuery) -> dict[str, object]:
        """The overview report (``rows``, ``top_pages``, ``scenes``; see
        :mod:`miniport.analytics.overview`)."""
        ...

    def realtime(self, appid: str, query: RealtimeQuery) -> dict[str, object]:
        """Users and events per minute, and the latest events received."""
    def retention(
        self, appid: str, query: RetentionQuery, slots: FieldSlots
    ) -> list[dict[str, object]]:
        """Cohort rows, see :mod:`miniport.analytics.retention`."""
        ...

    def paths(self, appid: str, query: PathsQuery, slots: FieldSlots) -> dict[str, object]:
        """Nodes and links, see :mod:`miniport.analytics.paths`."""
        ...

    def export_csv(
        self,
        appid: str,
        event: str,
        from_ms: int,
        to_ms: int,
        slots: FieldSlots,
        out: TextIO,
        *,
        not_before_ms: int,
    ) -> int:
        """Write a CSV (header ``time,user,page,trigger,action,<field names>``; time ISO 8601
        UTC with milliseconds) of the event's visible rows in ``[max(from, not_before), to)``,
        oldest first; returns the number of data rows."""
        ...

    def interrupt(self) -> None:
        """Make a long wait in progress (ClickHouse: a retention round waiting for its
        deletes) give up with ``AnalyticsUnavailable``, so the server can stop; the work it
        waited for goes on (the server's) and the next round checks it."""
        ...

    def close(self) -> None: ...


def _iso_utc(ts_ms: int) -> str:
    moment = _EPOCH_UTC + timedelta(milliseconds=ts_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


class DuckDBEventStore:
    """:class:`EventStore` in one DuckDB file (``<data dir>/analytics.duckdb`` by default).

    Open once per process (DuckDB allows one read-write process per file) and share the
    object between threads; call :meth:`close` on shutdown. ``memory_limit`` / ``threads``
    are DuckDB settings (defaults: 80% of RAM, all cores); ``checkpoint_threshold`` the WAL
    size that triggers a checkpoint (DuckDB default 16 MB)."""

    def __init__(
        self,
        path: str | Path,
        *,
        memory_limit: str | None = None,
        threads: int | None = None,
        checkpoint_threshold: str | None = None,
        max_group_rows: int = 50_000,
    ) -> None:
        config: dict[str, str | bool | int | float | list[str]] = {}
        if memory_limit is not None:
            config["memory_limit"] = memory_limit
        if threads is not None:
            config["threads"] = threads
        import duckdb

        self.path = Path(path)
        self._con = duckdb.connect(str(self.path), config=config)
        try:
            if checkpoint_threshold is not None:
                if not _SIZE_RE.fullmatch(checkpoint_threshold):
                    raise ValueError(f"checkpoint_threshold {checkpoint_threshold!r}: e.g. '64MB'")
                self._con.execute(f"SET checkpoint_threshold = '{checkpoint_threshold}'")
            self._con.execute(_CREATE_META)
            self._con.execute(_CREATE_EVENTS)
            self._con.execute(_CREATE_FIRST_SEEN)
            self._con.execute(_CREATE_FORGOTTEN)
            self._check_schema_version()
            self._columns: frozenset[str] = self._read_columns()
            self._forgotten: Forgotten = self._read_forgotten()
            self._reader_root = self._con.cursor()
        except BaseException:
            self._con.close()
            raise
        self._write_lock = threading.Lock()
        self._group_commit = GroupCommit(
            self._write,
            max_rows=max_group_rows,
            write_lock=self._write_lock,
            closed=lambda: self._closed,
        )
        self._cursor_lock = threading.Lock()
        self._appenders: dict[tuple[str, ...], duckdb.Appender] = {}
        self._closed = False

    # ------------------------------------------------------------------ setup

    def _check_schema_version(self) -> None:
        row = self._con.execute(
            "SELECT value FROM miniport_meta WHERE key = 'schema_version'"
        ).fetchone()
        if row is None:
            self._con.execute(
                "INSERT INTO miniport_meta VALUES ('schema_version', ?)", [SCHEMA_VERSION]
            )
        elif row[0] != SCHEMA_VERSION:  # made by a newer version: one line, not a traceback
            from miniport.errors import SchemaTooNew

            found = str(row[0])
            newer = found.isdigit() and int(found) > int(SCHEMA_VERSION)
            than = "newer than this version's" if newer else "unknown to this version, at"
            raise SchemaTooNew(
                f"the events database {self.path} is at schema version {found}, "
                f"{than} {SCHEMA_VERSION}: run the version that made it"
            )

    def _read_columns(self) -> frozenset[str]:
        rows = self._con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND table_name = ?",
            [TABLE],
        ).fetchall()
        return frozenset(str(r[0]) for r in rows)

    def _read_forgotten(self) -> Forgotten:
        rows = self._con.execute("SELECT appid, user_id, forgotten_ms FROM forgotten").fetchall()
        return {(str(a), str(u)): int(t) for a, u, t in rows}

    def _ensure_columns(self, columns: Collection[str]) -> None:
        """Create missing slot columns (writer lock held)."""
        missing = [c for c in columns if c not in self._columns]
        if not missing:
            return
        for column in missing:
            # ``column`` is a slot column (i<0..31>/s<0..31>) or one of EXTRA_COLUMNS (checked
            # by StoredEvent / insert_from_query), never input text.
            sql_type = _column_type(column)
            self._con.execute(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS {column} {sql_type}")
        self._columns = self._read_columns()
        self._appenders.clear()

    @property
    def columns(self) -> frozenset[str]:
        """The table's columns now (the slot columns that have been used so far)."""
        return self._columns

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed()

    # ------------------------------------------------------------------ append

    def append(self, rows: Sequence[StoredEvent]) -> AppendResult:
        rows = _checked_rows(rows)
        if not rows:
            return AppendResult(0, 0)
        return self._group_commit.append(rows)

    def submit(self, rows: Sequence[StoredEvent]) -> Future[AppendResult]:
        return _submit_checked(self._group_commit, rows)

    def _write(self, group: Group) -> None:
        """(Under the write lock, as ``forget_user``: a row written after a forget is checked
        against it, whenever it was queued.)"""
        rows = cast(list[StoredEvent], group.rows)
        if self._forgotten:
            forgotten = self._forgotten
            kept = [r for r in rows if not forgotten_before(forgotten, r)]
            if len(kept) < len(rows):  # the dropped rows count as duplicates: not stored
                inserted = self._insert(kept) if kept else set()
                group.finish({(r.appid, r.uid) for r in kept} if inserted is None else inserted)
                return
        group.finish(self._insert(rows))

    def _insert(self, rows: list[StoredEvent]) -> set[tuple[str, str]] | None:
        """Insert distinct-key rows; ``None`` when all were new, else the keys inserted."""
        import duckdb  # loaded when the store opened: a lookup in sys.modules

        used = RowColumns.of(rows)
        slot_columns = used.names
        self._ensure_columns(slot_columns)
        columns = (*CORE_COLUMNS, *slot_columns)
        # built column by column and zipped into rows (the row tuples come from C): about half
        # the cost of one tuple per row with its used values spliced in
        values: list[list[object]] = [
            [r.appid for r in rows],
            [r.uid for r in rows],
            [r.event for r in rows],
            [r.user for r in rows],
            [r.ts_ms for r in rows],
            [r.received_ms for r in rows],
            [r.time_estimated for r in rows],
            [r.page for r in rows],
            [r.trigger for r in rows],
            [r.action for r in rows],
            [r.test_id for r in rows],
            [r.test_id is None for r in rows],
            *used.columns(rows),
        ]
        data = list(zip(*values, strict=True))
        appender = self._appenders.get(columns)
        if appender is None:
            appender = self._con.appender(TABLE, columns=list(columns))
            self._appenders[columns] = appender
        try:
            appender.append_rows(data)
            appender.flush()
            return None
        except duckdb.ConstraintException:
            appender.clear()
            return self._insert_ignoring(columns, data)
        except BaseException:
            appender.clear()
            raise

    def _insert_ignoring(
        self, columns: tuple[str, ...], data: Sequence[tuple[object, ...]]
    ) -> set[tuple[str, str]]:
        """Slow path when some keys exist: stage the rows, ``INSERT OR IGNORE`` them."""
        defs = ", ".join(f"{c} {_column_type(c)}" for c in columns)
        names = ", ".join(columns)
        self._con.execute(f"CREATE OR REPLACE TEMP TABLE events_stage ({defs})")
        try:
            stage = self._con.appender("events_stage")
            stage.append_rows(data)
            stage.flush()
            inserted = self._con.execute(
                f"INSERT OR IGNORE INTO {TABLE} ({names}) SELECT {names} FROM events_stage "
                "RETURNING appid, uid"
            ).fetchall()
        finally:
            self._con.execute("DROP TABLE IF EXISTS events_stage")
        return {(str(a), str(u)) for a, u in inserted}

    # ------------------------------------------------------------------ other writes

    def insert_from_query(self, columns: Sequence[str], select_sql: str) -> int:
        """Bulk-load the rows of a TRUSTED ``SELECT`` (benchmarks, imports): ``columns`` are
        core columns and slot columns (``i3``, ``s0``...) in the select's order. Never build
        ``select_sql`` from user input. Duplicate keys raise ``duckdb.ConstraintException``
        and nothing is stored. Returns the number of rows inserted."""
        for column in columns:
            if (
                column not in _CORE_TYPES
                and column not in EXTRA_COLUMNS
                and not _SLOT_COLUMN_RE.fullmatch(column)
            ):
                raise ValueError(f"{column!r} is not a column of the events table")
        with self._write_lock:
            self._check_open()
            self._ensure_columns([c for c in columns if c not in _CORE_TYPES])
            row = self._con.execute(
                f"INSERT INTO {TABLE} ({', '.join(columns)}) {select_sql}"
            ).fetchone()
        return int(row[0]) if row is not None else 0

    def _write_statement(self, sql: str, params: Sequence[object]) -> int:
        with self._write_lock:
            self._check_open()
            row = self._con.execute(sql, list(params)).fetchone()
        return int(row[0]) if row is not None else 0

    def clear_slot(self, appid: str, column: str, received_before_ms: int) -> int:
        _slot_name(column)
        with self._write_lock:
            self._check_open()
            if column not in self._columns:
                return 0
            row = self._con.execute(
                f"UPDATE {TABLE} SET {column} = NULL"
                f" WHERE appid = ? AND {column} IS NOT NULL AND received_ms < ?",
                [appid, received_before_ms],
            ).fetchone()
        return int(row[0]) if row is not None else 0

    def sync_test(self, appid: str, test_id: str) -> int:
        return self._write_statement(
            f"UPDATE {TABLE} SET visible = true WHERE appid = ? AND test_id = ? AND NOT visible",
            [appid, test_id],
        )

    def delete_older_than(self, cutoff_ms: int) -> int:
        if isinstance(cutoff_ms, bool) or not isinstance(cutoff_ms, int):
            raise TypeError("cutoff_ms must be an int")
        count = self._write_statement(f"DELETE FROM {TABLE} WHERE ts_ms < ?", [cutoff_ms])
        with self._write_lock:
            self._check_open()
            self._con.execute(
                "DELETE FROM forgotten WHERE forgotten_ms < ?", [cutoff_ms - FORGOTTEN_KEPT_MS]
            )
            self._forgotten = self._read_forgotten()
        return count

    def forget_user(self, appid: str, user_id: str, at_ms: int | None = None) -> int:
        at = now_ms() if at_ms is None else at_ms
        with self._write_lock:
            self._check_open()
            self._con.execute("BEGIN")
            try:
                row = self._con.execute(
                    f"DELETE FROM {TABLE} WHERE appid = ? AND user_id = ?", [appid, user_id]
                ).fetchone()
                self._con.execute(
                    "DELETE FROM first_seen WHERE appid = ? AND user_id = ?", [appid, user_id]
                )
                self._con.execute(
                    "INSERT INTO forgotten VALUES (?, ?, ?) ON CONFLICT (appid, user_id)"
                    " DO UPDATE SET forgotten_ms = greatest(forgotten_ms, excluded.forgotten_ms)",
                    [appid, user_id, at],
                )
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            key = (appid, user_id)
            self._forgotten = {**self._forgotten, key: max(at, self._forgotten.get(key, at))}
        return int(row[0]) if row is not None else 0

    def forgotten_at(self, appid: str, user_id: str) -> int | None:
        return self._forgotten.get((appid, user_id))

    def first_days(self, appid: str, candidates: Mapping[str, int]) -> dict[str, int]:
        if not candidates:
            return {}
        users = list(candidates)
        with self._write_lock:
            self._check_open()
            storable = storable_first_days(self._forgotten, appid, candidates)
            self._con.execute(
                "INSERT OR IGNORE INTO first_seen SELECT ?, unnest(?), unnest(?)",
                [appid, list(storable), list(storable.values())],
            )
            rows = self._con.execute(
                "SELECT user_id, first_day FROM first_seen WHERE appid = ?"
                " AND user_id IN (SELECT unnest(?))",
                [appid, users],
            ).fetchall()
        return {str(u): int(d) for u, d in rows}

    def checkpoint(self) -> None:
        """Fold the WAL into the database file now (e.g. from a quiet-hours job)."""
        with self._write_lock:
            self._check_open()
            self._con.execute("CHECKPOINT")

    def backup_to(self, target: Path) -> None:
        """A consistent copy of the store in the new DuckDB file ``target``, while it is in use:
        taken under the write lock (every acknowledged event is in it; writes wait meanwhile,
        reads go on), by DuckDB itself (``COPY FROM DATABASE``: tables, constraints, data)."""
        with self._write_lock:
            self._check_open()
            row = self._con.execute("SELECT current_database()").fetchone()
            assert row is not None
            source = '"' + str(row[0]).replace('"', '""') + '"'
            self._con.execute("ATTACH '" + str(target).replace("'", "''") + "' AS miniport_backup")
            try:
                self._con.execute(f"COPY FROM DATABASE {source} TO miniport_backup")
            finally:
                self._con.execute("DETACH miniport_backup")

    # ------------------------------------------------------------------ reads

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._cursor_lock:
            self._check_open()
            return self._reader_root.cursor()

    def _query(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        cursor = self._cursor()
        try:
            return [tuple(r) for r in cursor.execute(sql, list(params)).fetchall()]
        finally:
            cursor.close()

    def count(self, appid: str, event: str | None = None, *, include_tests: bool = False) -> int:
        sql = f"SELECT count(*) FROM {TABLE} WHERE appid = ?"
        params: list[object] = [appid]
        if event is not None:
            sql += " AND event = ?"
            params.append(event)
        if not include_tests:
            sql += " AND visible"
        rows = self._query(sql, params)
        value = rows[0][0] if rows else 0
        assert isinstance(value, int)
        return value

    def event_analysis(
        self, appid: str, query: EventQuery, slots: FieldSlots
    ) -> list[dict[str, object]]:
        compiled = compile_event_analysis(appid, query, slots, existing_columns=self._columns)
        return compiled.shape(self._query(compiled.sql, compiled.params))

    def funnel(self, appid: str, query: FunnelQuery, slots: FieldSlots) -> list[dict[str, object]]:
        """SQL filters and fetches, :mod:`miniport.analytics.funnel_scan` computes (its
        statements in one transaction: one snapshot of the table)."""
        scan = compile_funnel_scan(appid, query, slots, existing_columns=self._columns)
        cursor = self._cursor()
        try:
            cursor.execute("BEGIN TRANSACTION")
            try:
                return run_scan(scan, duckdb_fetch(cursor))
            finally:
                cursor.execute("ROLLBACK")  # read only: nothing to keep
        finally:
            cursor.close()

    def overview(self, appid: str, query: OverviewQuery) -> dict[str, object]:
        return self._run(compile_overview(appid, query, existing_columns=self._columns))

    def realtime(self, appid: str, query: RealtimeQuery) -> dict[str, object]:
        # an append is committed when it returns, and every read opens a new cursor on the
        # same database: an accepted event is in the next real-time answer
        return self._run(compile_realtime(appid, query, existing_columns=self._columns))

    def _run(self, compiled: CompiledMulti) -> dict[str, object]:
        return compiled.shape(
            [self._query(s.sql, s.params) if s.sql else [] for s in compiled.statements]
        )

    def retention(
        self, appid: str, query: RetentionQuery, slots: FieldSlots
    ) -> list[dict[str, object]]:
        compiled = compile_retention(appid, query, slots, existing_columns=self._columns)
        return compiled.shape(self._query(compiled.sql, compiled.params))

    def paths(self, appid: str, query: PathsQuery, slots: FieldSlots) -> dict[str, object]:
        compiled = compile_paths(appid, query, slots, existing_columns=self._columns)
        return compiled.shape(self._query(compiled.sql, compiled.params))

    def user_events(
        self,
        appid: str,
        user_id: str,
        slots: FieldSlots,
        *,
        limit: int,
        before: str | None,
        not_before_ms: int,
    ) -> UserEventsPage:
        compiled = compile_user_events(
            appid,
            user_id,
            slots,
            limit=limit,
            before=before,
            not_before_ms=not_before_ms,
            existing_columns=self._columns,
        )
        return compiled.shape(self._query(compiled.sql, compiled.params))

    def export_csv(
        self,
        appid: str,
        event: str,
        from_ms: int,
        to_ms: int,
        slots: FieldSlots,
        out: TextIO,
        *,
        not_before_ms: int,
    ) -> int:
        compiled = compile_export(
            appid, event, from_ms, to_ms, not_before_ms, slots, existing_columns=self._columns
        )
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(compiled.header)
        written = 0
        cursor = self._cursor()
        try:
            result = cursor.execute(compiled.sql, list(compiled.params))
            while True:
                chunk = result.fetchmany(_FETCH_ROWS)
                if not chunk:
                    break
                for row in chunk:
                    ts = row[0]
                    assert isinstance(ts, int)
                    writer.writerow((_iso_utc(ts), *compiled.values(row)))
                written += len(chunk)
        finally:
            cursor.close()
        return written

    # ------------------------------------------------------------------ lifecycle

    def interrupt(self) -> None:
        """Nothing to give up: DuckDB's deletes are done when they return."""

    def close(self) -> None:
        if not self._closed:  # what was accepted into the group commit's queue is stored
            self._group_commit.drain()
        with self._write_lock:
            if self._closed:
                return
            with self._cursor_lock:
                self._closed = True
            self._appenders.clear()
            try:
                self._reader_root.close()
            finally:
                self._con.close()
        self._group_commit.stop()

    def __enter__(self) -> DuckDBEventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
