"""Analytics event store on ClickHouse: the same :class:`~miniport.analytics.event_store.
EventStore` as the DuckDB store, for several API nodes sharing one ClickHouse.

Layout: table ``events`` with DuckDB's columns (``visible`` and ``time_estimated`` as UInt8,
slot columns ``iN Nullable(Int32)`` / ``sN Nullable(String)``), engine ``MergeTree`` (which
never drops a copy: earlier versions' ``ReplacingMergeTree`` kept the last inserted copy on a
merge, not the one reports read, see :mod:`.clickhouse_migrate`) ordered by ``(appid, uid)``,
partitioned by the month of ``received_ms`` (one insert touches one or two partitions
whatever the clients' clocks say).

Slot columns are added on first use (``ALTER TABLE ADD COLUMN``, metadata only), as on
DuckDB: every insert writes a file set per column whether its values are NULL or not, and
with all 64 slot columns an insert of 30 rows took ~300 ms on 18.16 against ~7 ms with
the used ones. Columns are never dropped, so a node's cached "this column exists" is always
right; before a report, a column of the app's fields that the cache lacks is looked up
again (another node may have added it) and created if still missing, so reports never
read a live column as NULL.

Exact deduplication (not eventual): ClickHouse merges are asynchronous, two nodes may
insert the same event id at the same moment, and a point lookup of random ids reads nearly
every granule (with uuid4 ids each lookup in ClickHouse read all of the app's ids: its CPU
per 1,000 events went from 22 ms at 200k stored events to 64 ms at 1M). So the ids are
claimed in an index made for point lookups, the ``event_keys`` table of the state database
(:class:`~miniport.storage.event_keys.EventKeyIndex`, PostgreSQL when several nodes share
it), BEFORE they are inserted:

* an id claimed by this call (the index had no such key) was never inserted by anyone, and
  anyone inserting it later must first fail to claim it: it is inserted with no lookup in
  ClickHouse (the common case: one statement on the index and one insert per group);
* an id already claimed (a client's retry after its first send was stored, or a node that
  claimed it and died or lost ClickHouse before inserting it, or a racing node) is looked up
  in ClickHouse: found, it is left out (a duplicate); not found, it is listed in
  ``event_dups`` (appid, uid) FIRST and then inserted, so that whether the claimer's copy
  lands later or never, from this insert on every read counts it once;
* an insert (or lookup) that certainly never reached ClickHouse (every attempt refused or
  timed out connecting: :class:`~.clickhouse_transport.NotSent`, the usual outage of a
  server that is down or restarting) releases the ids this call claimed, so the client's
  retry stores them as new: an outage's backlog is not looked up and listed for good. An
  insert whose connection broke after sending keeps its claims (ClickHouse may hold it);
* every read goes through :func:`miniport.analytics.sql_dialects.dedup_source`: the rows
  of ids NOT listed are read as they are, and only listed ids go through a ``GROUP BY uid``
  that keeps ONE copy (a visible copy before an invisible one, then the copy received first;
  ties: the smallest content), which is what a single store keeping the first copy holds.

So a report read after an acknowledgement counts each event id once, and merges change
nothing (they never drop a copy), without the
cost of grouping every event by its id (measured with ``bench/clickhouse_report.py``:
grouping all ids cost ~35x the plain query; the listed-ids source costs the plain scan plus
one ``NOT IN`` on a small set). Syncing a live test lists the test's ids before inserting
their visible copies. ``AppendResult`` counts an id as a duplicate when it was found stored;
of two racing inserts of one id, both count it as inserted.

The index is filled from the ``events`` table when a store first meets it (a database from
before the index, or an index that is new or was lost): ``miniport_meta`` records which
indexes (by :meth:`~miniport.storage.event_keys.EventKeyIndex.token`) hold every event of
the database. Nodes of a version without the index must not write meanwhile: what they
insert after the fill is not claimed, and a retry of it would be stored twice.

Batching and durability: ``append`` calls are combined (group commit: while one insert
runs, the calls that arrive queue up and go out together in the next one, up to
``max_block_rows``), and each call returns only when ClickHouse has answered 200 to the
insert holding its rows. A ClickHouse outage makes ``append`` raise
:class:`~miniport.errors.AnalyticsUnavailable` (HTTP 503): the client keeps its batch and
retries, nothing acknowledged is lost, and a retry that did reach ClickHouse is
deduplicated at read time.

Retention: partitions whose every event is older than the cut-off are dropped (cheap);
the rest is deleted with ``ALTER TABLE DELETE`` (a mutation, done in the background on a
server), which the round waits for (up to ten minutes: it is a background job), and
reports never read before ``not_before_ms`` anyway. Listed ids whose every copy goes leave
``event_dups`` first, so the list that reports filter with does not grow for good; so do
listed ids with no copy left at all (deleted after an insert that met a forget, or listed for
an insert that failed), at a round half an hour or more after one found them so (an id
listed for an insert on its way has no copy for a moment).
``forget_user`` deletes a user's events, waits for the mutation to finish, then takes the
user's listed ids out of ``event_dups``.

Forgetting holds for what is on its way. A delete reaches only the parts that exist when it
is made, and the user's events may be queued on a node (group commit), in an insert in
flight on any node, or sent again later by a device (a batch whose answer was lost, a queue
kept offline). So ``forget_user`` first writes ``(appid, user_id, forgotten_ms)`` to table
``forgotten``, which every node reads, then deletes:

* each node keeps the forgotten users in memory and leaves out of an insert the rows that a
  forget erased (:func:`~.event_store.forgotten_before`: event time or receipt at or before
  it; a row after both is the user's new activity, stored). They are not stored, and counted
  as duplicates;
* after each insert that stored rows, the node reads ``system.parts`` of ``forgotten`` (one
  query of a few rows of metadata, whatever the table's size): a new block there means a
  forget was written since its last read, and it reads the table again and deletes what
  its insert stored of those users (a mutation it does not wait for), counting those rows
  as duplicates too. An insert that raced a forget either landed before the forget's delete
  was made (and went with it) or sees the forget here, as the forget was written before its
  delete. The same happens to the first insert of a node that had not read a forget yet
  (idle since): the rows show in reports for the moment the delete takes;
* the forgetting node waits for its own insert in flight (its write lock) before deleting,
  so on that node the user is gone when ``forget_user`` returns; another node's racing
  insert is gone once its own delete is done (moments later);
* a node stopped between an insert and its check leaves such rows: each retention round
  (any node) looks for them among the events of the users forgotten since its last round,
  received from an hour before those forgets on (``_sweep_forgotten``), and deletes them;
* a forgotten user is remembered until the retention cut-off is a day past the forget
  (an event received before it may carry a time up to a day later), then dropped.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TextIO, cast

from ..errors import AnalyticsUnavailable
from ..storage.event_keys import EventKeyIndex, key_hash
from .clickhouse_migrate import keep_every_copy
from .clickhouse_rows import EXTRA_TYPES, event_columns, rowbinary_rows
from .clickhouse_transport import (
    ChdbTransport,
    ClickHouseError,
    ExternalTable,
    HttpTransport,
    NotSent,
    Transport,
    parse_clickhouse_url,
)
from .event_store import (
    FORGOTTEN_KEPT_MS,
    Forgotten,
    RowColumns,
    StoredEvent,
    _checked_rows,
    _slot_name,
    _submit_checked,
    forgotten_before,
    now_ms,
    storable_first_days,
)
from .group_commit import AppendResult, Group, GroupCommit
from .overview import (
    CompiledMulti,
    OverviewQuery,
    RealtimeQuery,
    compile_overview,
    compile_realtime,
)
from .paths import PathsQuery, compile_paths
from .reports import (
    CORE_COLUMNS,
    TABLE,
    EventQuery,
    FieldSlots,
    FunnelQuery,
    compile_event_analysis,
    compile_export,
    compile_funnel,
    slot_column,
)
from .retention import RetentionQuery, compile_retention
from .sql_dialects import (
    CLICKHOUSE,
    DUPS_TABLE,
    clickhouse_literal,
    dedup_source,
    grouping_every_id,
    listed_apps,
    reads_listed,
    render_clickhouse,
)
from .system_props import EXTRA_COLUMNS, utc_day
from .user_events import UserEventsPage, compile_user_events

__all__ = ["ClickHouseError", "ClickHouseEventStore"]

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = "1"
_DAY_MS: Final = 86_400_000
_EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=UTC)
_TSV_ESCAPES: Final = str.maketrans(
    {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"}
)
_CREATE_EVENTS: Final = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    "appid String, uid String, event String, user_id String, ts_ms Int64, received_ms Int64,"
    " time_estimated UInt8, page Nullable(String), trigger Nullable(String),"
    " action Nullable(String), test_id Nullable(String), visible UInt8,"
    " uid_hash UInt64 MATERIALIZED cityHash64(uid)"
    ") ENGINE = MergeTree"  # never drops a copy: see clickhouse_migrate
    " PARTITION BY toYYYYMM(toDateTime(intDiv(received_ms, 1000)))"
    " ORDER BY (appid, uid)"
)
_KEYS_TABLE: Final = "_keys"  # the dedup checks' external table of (appid, uid)
_RETENTION_WAIT_S: Final = 600.0  # a background job: the delete rewrites old parts
_READ_ATTEMPTS: Final = 3  # runs of a read while ids are being listed, before grouping all
_NOT_SLOTS: Final = frozenset({*CORE_COLUMNS, "uid_hash"})
_CREATE_DUPS: Final = (
    f"CREATE TABLE IF NOT EXISTS {DUPS_TABLE} (appid String, uid String,"
    " uid_hash UInt64 MATERIALIZED cityHash64(uid))"
    " ENGINE = ReplacingMergeTree ORDER BY (appid, uid)"
)
_CREATE_META: Final = (
    "CREATE TABLE IF NOT EXISTS miniport_meta (key String, value String)"
    " ENGINE = ReplacingMergeTree ORDER BY key"
)


_CH_SLOT_TYPES: Final = {
    "i": "Nullable(Int32)",
    "s": "Nullable(String)",
    "f": "Nullable(Float64)",
    "b": "Nullable(UInt8)",
}
_CREATE_FIRST_SEEN: Final = (
    "CREATE TABLE IF NOT EXISTS first_seen (appid String, user_id String, first_day Int32)"
    " ENGINE = ReplacingMergeTree ORDER BY (appid, user_id)"
)
SWEEP_MARGIN_MS: Final = 3_600_000
"""How far before its last sweep a node looks again for rows a forget erased (nodes' clocks
differ a little; an insert lasts minutes at most)."""
ORPHAN_MARGIN_MS: Final = 1_800_000
"""How long a listed id with no copy in ``events`` stays listed after a retention round found
it so (an insert that listed it just before may be on its way: an insert lasts minutes at
most); half the hourly rounds' interval, so the next round of that node takes it out."""
_CREATE_FORGOTTEN: Final = (
    "CREATE TABLE IF NOT EXISTS forgotten (appid String, user_id String, forgotten_ms Int64)"
    " ENGINE = MergeTree ORDER BY (appid, user_id)"
)


def _column_type(column: str) -> str:
    kind = EXTRA_COLUMNS.get(column)
    if kind is not None:
        return EXTRA_TYPES[kind]
    return _CH_SLOT_TYPES[column[0]]


def _int_type(ch_type: str) -> bool:
    base = ch_type.removeprefix("Nullable(").rstrip(")")
    return base.startswith(("Int", "UInt"))


def _value_kind(ch_type: str) -> type[int] | type[float] | None:
    """How to read a JSON value of a column type: 64-bit ints come quoted, and a Float64
    with no fraction comes as ``12`` (read back as the float it is)."""
    if _int_type(ch_type):
        return int
    if ch_type.removeprefix("Nullable(").startswith("Float"):
        return float
    return None


def _tsv(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same double
    assert isinstance(value, str)
    return value.translate(_TSV_ESCAPES)


_NULL: Final = "\\N"
_TSV_SPECIAL: Final = ("\\", "\t", "\n", "\r", "\0")


def _text_column(values: list[str | None]) -> list[str]:
    """TSV fields of a text column (``_tsv`` of each value): a column with no character to
    escape (nearly all) is checked with five substring searches, not translated value by
    value."""
    present = [v for v in values if v is not None]
    if not present:
        return [_NULL] * len(values)
    blob = "".join(present)
    clean = not any(c in blob for c in _TSV_SPECIAL)
    if len(present) == len(values):
        return cast(list[str], values) if clean else [v.translate(_TSV_ESCAPES) for v in present]
    if clean:
        return [_NULL if v is None else v for v in values]
    return [_NULL if v is None else v.translate(_TSV_ESCAPES) for v in values]


def _int_column(values: list[int | None]) -> list[str]:
    return [_NULL if v is None else str(v) for v in values]


def _float_column(values: list[float | None]) -> list[str]:
    return [_NULL if v is None else repr(v) for v in values]


def _bool_column(values: list[object]) -> list[str]:
    return [("1" if v else "0") if type(v) is bool else _tsv(v) for v in values]


# each ClickHouse type's text encoder (``clickhouse_rows.event_columns`` gives the types)
_TSV_ENCODERS: Final[dict[str, Callable[[list[Any]], list[str]]]] = {
    "String": _text_column,
    "Nullable(String)": _text_column,
    "Int64": _int_column,
    "Nullable(Int32)": _int_column,
    "Nullable(Int64)": _int_column,
    "Nullable(Float64)": _float_column,
    "UInt8": _bool_column,
    "Nullable(UInt8)": _bool_column,
}


def tsv_rows(
    rows: Sequence[StoredEvent], used: RowColumns, visible: Sequence[bool] | None = None
) -> bytes:
    """The TabSeparated payload of ``rows`` for the columns ``(*CORE_COLUMNS, *used.names)``:
    the same text as ``_tsv`` of each value, built column by column with one encoder per
    column's type (a value at a time cost ~4 us per row, ~9 us with a runtime context)."""
    typed = event_columns(rows, used, visible, EXTRA_COLUMNS)
    columns = [_TSV_ENCODERS[kind](values) for kind, values in typed]
    return ("\n".join(map("\t".join, zip(*columns, strict=True))) + "\n").encode()


def _keys_table(name: str, keys: Iterable[tuple[str, str]]) -> ExternalTable:
    """``(appid, uid)`` keys as an external table (TabSeparated, escaped)."""
    appids: list[str | None] = []
    uids: list[str | None] = []
    for appid, uid in keys:
        appids.append(appid)
        uids.append(uid)
    pairs = zip(_text_column(appids), _text_column(uids), strict=True)
    data = "\n".join(map("\t".join, pairs)) + "\n"
    return ExternalTable(name, "appid String, uid String", data.encode())


def _decode(raw: bytes) -> list[tuple[object, ...]]:
    """The rows of a ``FORMAT JSONCompact`` answer."""
    if not raw.strip():
        return []
    doc = json.loads(raw)
    kinds = [_value_kind(m["type"]) for m in doc["meta"]]
    return [
        tuple(
            v if kind is None or v is None else kind(v) for v, kind in zip(row, kinds, strict=True)
        )
        for row in doc["data"]
    ]


def _iso_utc(ts_ms: int) -> str:
    moment = _EPOCH_UTC + timedelta(milliseconds=ts_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def wholly_older(partition: str, cutoff_ms: int) -> bool:
    """Whether every event of ``partition`` (``YYYYMM``: a month of ``received_ms`` in the
    SERVER's time zone, so it may end up to 12 h after the UTC month does) has ``ts_ms`` before
    ``cutoff_ms``, ``ts_ms`` being at most ``received_ms`` + 1 day: its UTC end + 2 days."""
    if len(partition) != 6 or not partition.isdigit():
        return False
    year, month = int(partition[:4]), int(partition[4:])
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return int(end.timestamp() * 1000) + 2 * _DAY_MS <= cutoff_ms


class ClickHouseEventStore:
    """:class:`EventStore` on ClickHouse (see the module docstring). Thread-safe; one per
    process, shared by its threads; several processes (nodes) may share one database."""

    def __init__(
        self, transport: Transport, keys: EventKeyIndex, *, max_block_rows: int = 200_000
    ) -> None:
        self._t = transport
        self._keys = keys
        self._closed = False
        self._write_lock = threading.Lock()
        self._interrupts = 0  # each ``interrupt`` ends the waits under way then (not later ones)
        self._group_commit = GroupCommit(
            self._write,
            max_rows=max_block_rows,
            write_lock=self._write_lock,
            closed=lambda: self._closed,
            shared_failures=(AnalyticsUnavailable,),  # the same for everyone: no retry each
        )
        self._columns_lock = threading.Lock()
        self._columns_seen: frozenset[str] | None = None  # None: not set up yet
        # the forgotten users as this node last read them (replaced whole, never changed in
        # place), and the table's newest block number and rows then (None: not read yet)
        self._forgotten: Forgotten = {}
        self._forgotten_seen: tuple[int, int] | None = None
        self._swept_at: int | None = None  # when this node's last sweep of forgets began
        # listed ids with no copy left, as this node's retention rounds found them: when first
        self._orphans: dict[tuple[str, str], int] = {}

    @classmethod
    def from_url(cls, url: str, keys: EventKeyIndex) -> ClickHouseEventStore:
        """``clickhouse[s]://USER:PASSWORD@HOST:PORT/DATABASE`` (see clickhouse_transport)."""
        return cls(HttpTransport(parse_clickhouse_url(url)), keys)

    @classmethod
    def in_process(
        cls, path: str, database: str = "miniport", keys: EventKeyIndex | None = None
    ) -> ClickHouseEventStore:
        """On chDB (the current ClickHouse engine in-process) in directory ``path``; the id
        index in SQLite file ``<path>.event-keys.db`` unless ``keys`` is given."""
        if keys is None:
            keys = EventKeyIndex.open(f"sqlite:///{path}.event-keys.db")
        return cls(ChdbTransport(path, database), keys)

    def _ready(self) -> None:
        """Create the database and tables on first use (in the caller's thread: the
        service opens stores on its event loop, which must not wait for the network)."""
        if self._columns_seen is not None:
            return
        with self._columns_lock:
            if self._columns_seen is None:
                self._setup()
                self._columns_seen = self._read_columns()

    @property
    def _columns(self) -> frozenset[str]:
        self._ready()
        assert self._columns_seen is not None
        return self._columns_seen

    def _exec(self, sql: str, data: bytes | None = None) -> bytes:
        self._ready()
        return self._t.execute(sql, data)

    def _setup(self) -> None:
        db = self._t.database
        self._t.execute(f"CREATE DATABASE IF NOT EXISTS {db}", in_database=False)
        self._t.execute(_CREATE_EVENTS)
        self._t.execute(_CREATE_DUPS)
        self._t.execute(_CREATE_META)
        self._t.execute(_CREATE_FIRST_SEEN)
        self._t.execute(_CREATE_FORGOTTEN)
        moved = keep_every_copy(self._t, self._keys.exclusive(), self._wait_for_mutations)
        if moved:
            log.info("events moved to MergeTree (%d monthly partitions), keeping every copy", moved)
        for table in (TABLE, DUPS_TABLE):  # a database made before the hash column
            if not self._query(
                "SELECT 1 FROM system.columns WHERE database = {p1:String}"
                " AND table = {p2:String} AND name = 'uid_hash'",
                [db, table],
            ):
                self._t.execute(
                    f"ALTER TABLE {table} ADD COLUMN uid_hash UInt64 MATERIALIZED cityHash64(uid)"
                )
        rows = self._query("SELECT value FROM miniport_meta WHERE key = 'schema_version'")
        if not rows:
            self._t.execute(
                "INSERT INTO miniport_meta (key, value) FORMAT TabSeparated",
                f"schema_version\t{SCHEMA_VERSION}\n".encode(),
            )
        elif rows[0][0] != SCHEMA_VERSION:
            raise RuntimeError(
                f"ClickHouse database {db} has analytics schema version {rows[0][0]}, "
                f"this code expects {SCHEMA_VERSION}"
            )
        marker = f"event_keys:{self._keys.token()}"
        if not self._query("SELECT 1 FROM miniport_meta WHERE key = {p1:String}", [marker]):
            self._fill_key_index()
            self._t.execute(
                "INSERT INTO miniport_meta (key, value) FORMAT TabSeparated",
                f"{marker}\tfilled\n".encode(),
            )
        self._read_forgotten()

    def _fill_key_index(
        self,
        rows_per_read: int = 500_000,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Claim every stored id in the index (a database from before it, or an index new to
        this database), a slice of the ids at a time (by their hash: each slice reads the
        ``uid_hash`` column whole, once per 500k events, a one-time cost); returns how many
        rows were read. ``progress(done, total)`` after each slice."""
        total = int(str(self._query(f"SELECT count() FROM {TABLE}")[0][0]))
        slices = max(1, -(-total // rows_per_read))
        if total:
            log.info("claiming the %d stored event ids in the index (once)", total)
        done = 0
        for part in range(slices):
            rows = self._query(
                f"SELECT appid, uid, ts_ms FROM {TABLE} WHERE uid_hash % {slices} = {part}"
            )
            self._keys.add((key_hash(str(a), str(u)), int(str(ts))) for a, u, ts in rows)
            done += len(rows)
            if progress is not None:
                progress(done, total)
        return done

    def indexed_ids(self) -> int:
        """How many ids the index holds (of every ClickHouse database it serves)."""
        return self._keys.count()

    def refill_ids(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Claim every stored id in the index again (after the state database was restored
        from a backup, or failed over to a standby that lost recent claims: an index behind
        ClickHouse would let a retry of a newer event in unlooked-up). Safe while nodes run;
        returns how many stored rows were read."""
        self._ready()
        with self._write_lock:  # this node's claims wait; other nodes' are idempotent with it
            return self._fill_key_index(progress=progress)

    # ------------------------------------------------------------------ slot columns

    def _read_columns(self) -> frozenset[str]:
        rows = self._query(
            "SELECT name FROM system.columns WHERE database = {p1:String} AND table = {p2:String}",
            [self._t.database, TABLE],
        )
        return frozenset(str(r[0]) for r in rows)

    def _ensure_columns(self, needed: Iterable[str]) -> None:
        """Make sure the slot columns exist (added by this node or another one)."""
        missing = [c for c in needed if c not in self._columns]
        if not missing:
            return
        with self._columns_lock:
            self._columns_seen = self._read_columns()
            for column in missing:
                if column in self._columns_seen:
                    continue
                # ``column`` comes from slot_column (i<0..31>/s<0..31>) or EXTRA_COLUMNS,
                # never from input
                sql_type = _column_type(column)
                try:
                    self._t.execute(f"ALTER TABLE {TABLE} ADD COLUMN {column} {sql_type}")
                except ClickHouseError:
                    if column not in self._read_columns():  # lost a race: fine
                        raise
            self._columns_seen = self._read_columns()

    def _ensure_fields(self, slots: FieldSlots) -> None:
        """The columns of the app's fields: each field's slot and, for a retyped field, the
        slots of its earlier parts (read too, by the user lookup and the export: one that no
        event ever wrote was never made)."""
        history = getattr(slots, "history", {})
        needed = []
        for name, (ftype, slot) in slots.items():
            needed.append(slot_column(ftype, slot))
            if name in history:
                needed.extend(part.column for part in history[name].parts)
        self._ensure_columns(needed)

    @property
    def columns(self) -> frozenset[str]:
        """The table's columns as this node last saw them."""
        return self._columns

    def _slot_columns(self) -> tuple[str, ...]:
        return tuple(sorted(c for c in self._columns if c not in _NOT_SLOTS))

    # ------------------------------------------------------------------ queries

    def _select(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        self._ready()
        if not reads_listed(sql):
            return self._query(sql, params)
        return self._one_list(sql, params)

    def _one_list(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        """A read through ``dedup_source`` with ``event_dups`` as it was for the whole query.
        The source reads the list twice (``NOT IN`` for single ids, ``IN`` for the grouped
        ones), and ClickHouse builds the two sets one after the other, after it has chosen
        the parts of ``events`` it reads: an id listed in between (a second copy on its way)
        would be counted twice, or not at all. So the app's listed hashes (the very sets the
        query builds: their count and a hash of them sorted) are read before and after, and
        the query runs again when they changed; other apps' listings do not matter. While ids
        keep being listed (clients retrying a backlog), the last run groups every id instead,
        which no listing can upset."""
        before = self._listed(sql, params)
        for _ in range(_READ_ATTEMPTS):
            rows = self._query(sql, params)
            after = self._listed(sql, params)
            if after == before:
                return rows
            before = after
        return self._query(grouping_every_id(sql), params)

    def _listed(self, sql: str, params: Sequence[object]) -> tuple[object, ...]:
        """What the ``dedup_source`` in ``sql`` reads of ``event_dups``, in a few bytes."""
        apps = ", ".join(listed_apps(sql))
        rows = self._query(
            "SELECT uniqExact(uid_hash), cityHash64(arraySort(groupUniqArray(uid_hash)))"
            f" FROM {DUPS_TABLE} WHERE appid IN ({apps})",
            params,
        )
        return tuple(rows[0]) if rows else ()

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        text = render_clickhouse(sql, params) if params else sql
        return _decode(self._t.execute(text + " FORMAT JSONCompact"))

    def _scalar(self, sql: str, params: Sequence[object] = ()) -> int:
        rows = self._select(sql, params)
        value = rows[0][0] if rows else 0
        assert isinstance(value, int)
        return value

    # ------------------------------------------------------------------ append

    def append(self, rows: Sequence[StoredEvent]) -> AppendResult:
        rows = _checked_rows(rows)
        if not rows:
            return AppendResult(0, 0)
        return self._group_commit.append(rows)

    def submit(self, rows: Sequence[StoredEvent]) -> Future[AppendResult]:
        return _submit_checked(self._group_commit, rows)

    def _write(self, group: Group) -> None:
        group.finish(self._store(cast(list[StoredEvent], group.rows)))

    def _store(
        self, rows: Sequence[StoredEvent], visible: Sequence[bool] | None = None
    ) -> set[tuple[str, str]]:
        """Insert the rows whose ids are not stored yet (each ``(appid, uid)`` once in
        ``rows``) and whose user was not forgotten after them; returns their keys. Claims
        the ids in the index first, and looks up in ClickHouse only the ids claimed before
        (see the module docstring). Then checks the insert against the forgotten users."""
        self._ready()  # set up (the index filled) before claiming
        rows, visible = self._not_forgotten(rows, visible)
        if not rows:
            return set()
        inserted = self._claim_and_store(rows, visible)
        if inserted:  # what a forget read only now erased is deleted: not counted as stored
            inserted -= self._check_forgotten([r for r in rows if (r.appid, r.uid) in inserted])
        return inserted

    def _claim_and_store(
        self, rows: Sequence[StoredEvent], visible: Sequence[bool] | None
    ) -> set[tuple[str, str]]:
        hashes = [key_hash(r.appid, r.uid) for r in rows]
        claimed = self._keys.claim(zip(hashes, (r.ts_ms for r in rows), strict=True))
        try:
            return self._store_claimed(rows, hashes, claimed, visible)
        except NotSent:
            # ClickHouse was never reached: nothing of this call's insert is stored, so its
            # claims are released and the client's retry stores the ids as new (without
            # this, every id of an outage's backlog was looked up on the retry and listed
            # for good, and every report paid for it). Claims made by others stay.
            with contextlib.suppress(AnalyticsUnavailable):  # then the claims stay, as before
                self._keys.release(claimed)
            raise

    def _store_claimed(
        self,
        rows: Sequence[StoredEvent],
        hashes: Sequence[int],
        claimed: set[int],
        visible: Sequence[bool] | None,
    ) -> set[tuple[str, str]]:
        keep = [h in claimed for h in hashes]
        contested = {(r.appid, r.uid) for r, k in zip(rows, keep, strict=True) if not k}
        if contested:
            unstored = contested - self._existing(contested)
            if unstored:  # claimed by a node that has not inserted them (yet, or ever)
                self._mark_repeated(sorted(unstored))
                keep = [k or (r.appid, r.uid) in unstored for r, k in zip(rows, keep, strict=True)]
        new = [r for r, k in zip(rows, keep, strict=True) if k]
        if new:
            kept = None if visible is None else [v for v, k in zip(visible, keep, strict=True) if k]
            self._insert(new, kept)
        return {(r.appid, r.uid) for r in new}

    # ------------------------------------------------------------------ forgotten users

    def _not_forgotten(
        self, rows: Sequence[StoredEvent], visible: Sequence[bool] | None
    ) -> tuple[Sequence[StoredEvent], Sequence[bool] | None]:
        """The rows (and their ``visible`` flags) less those that forgetting their user
        erased, by the forgotten users as this node last read them."""
        forgotten = self._forgotten
        if not forgotten:
            return rows, visible
        keep = [not forgotten_before(forgotten, r) for r in rows]
        if all(keep):
            return rows, visible
        kept = [r for r, k in zip(rows, keep, strict=True) if k]
        if visible is None:
            return kept, None
        return kept, [v for v, k in zip(visible, keep, strict=True) if k]

    def _read_forgotten(self) -> bool:
        """Read the forgotten users again if table ``forgotten`` changed since this node
        last read it; whether it had. Its parts in ``system.parts`` tell, whatever the
        table's size: every insert takes a block number above all before (so the newest
        block moves), and a delete (retention's) changes the rows of the parts it rewrites."""
        ((block, rows),) = self._query(
            "SELECT max(max_block_number), sum(rows) FROM system.parts"
            " WHERE database = {p1:String} AND table = 'forgotten' AND active",
            [self._t.database],
        )
        seen = (int(str(block)), int(str(rows)))
        if seen == self._forgotten_seen:
            return False
        found = self._query(
            "SELECT appid, user_id, max(forgotten_ms) FROM forgotten GROUP BY appid, user_id"
        )
        self._forgotten = {(str(a), str(u)): int(str(t)) for a, u, t in found}
        self._forgotten_seen = seen
        return True

    def _check_forgotten(self, inserted: Sequence[StoredEvent]) -> set[tuple[str, str]]:
        """After an insert: read the forgotten users again if another forget was written
        (one query on ``system.parts`` per insert) and delete what the insert stored that
        such a forget erased; returns those rows' keys. A forget writes its user before it
        deletes, so an insert that raced it either landed before its delete (and went with
        it) or sees the user here. A failure is logged, not raised: the rows are stored,
        and the next retention round deletes any that a forget erased (:meth:`_sweep_forgotten`)."""
        try:
            if not self._read_forgotten():
                return set()
            forgotten = self._forgotten
            erased = [r for r in inserted if forgotten_before(forgotten, r)]
            for appid, user_id in sorted({(r.appid, r.user) for r in erased}):
                self._delete_forgotten(appid, user_id, forgotten[(appid, user_id)])
        except (AnalyticsUnavailable, ClickHouseError) as exc:
            log.warning("events stored without their check against forgotten users (%s): "
                        "the next retention round deletes any that a forget erased", exc)
            return set()
        return {(r.appid, r.uid) for r in erased}

    def _delete_forgotten(self, appid: str, user_id: str, at_ms: int) -> None:
        """Delete the events of a user forgotten at ``at_ms`` that the forget erased, and a
        first day they gave (one before the forget's day: those it keeps are after it)
        (mutations, not waited for: the user's newer events and first day stay)."""
        self._t.execute(
            render_clickhouse(
                f"ALTER TABLE {TABLE} DELETE WHERE appid = {{p1:String}}"
                " AND user_id = {p2:String} AND (ts_ms <= {p3:Int64} OR received_ms <= {p3:Int64})",
                [appid, user_id, at_ms],
            )
        )
        self._t.execute(
            render_clickhouse(
                "ALTER TABLE first_seen DELETE WHERE appid = {p1:String}"
                " AND user_id = {p2:String} AND first_day < {p3:Int32}",
                [appid, user_id, utc_day(at_ms)],
            )
        )

    def _sweep_forgotten(self) -> bool:
        """Delete what a forget erased that was stored anyway: by a node stopped (or cut
        from ClickHouse) between an insert and its check. Such rows were on their way when
        the forget was made (an insert lasts minutes at most): the forgets made since this
        node's last sweep (less ``SWEEP_MARGIN_MS``; all of them at its first) are looked
        for, among the events received from an hour before the first of them on (monthly
        partitions by receipt: the older ones are not read); the users found deleted one by
        one. Whether it deleted anything (mutations: the caller waits for them)."""
        deleted = False
        with self._write_lock:
            self._read_forgotten()
        started = now_ms()
        since = None if self._swept_at is None else self._swept_at - SWEEP_MARGIN_MS
        forgotten = {k: at for k, at in self._forgotten.items() if since is None or at >= since}
        if forgotten:
            received_from = min(forgotten.values()) - SWEEP_MARGIN_MS
            found = self._query(
                f"SELECT appid, user_id, min(ts_ms), min(received_ms) FROM {TABLE}"
                " WHERE received_ms >= {p1:Int64} AND (appid, user_id) IN"
                " (SELECT appid, user_id FROM forgotten WHERE forgotten_ms >= {p2:Int64})"
                " GROUP BY appid, user_id",
                [received_from, min(forgotten.values())],
            )
            for appid, user_id, ts_ms, received_ms in found:
                at = forgotten.get((str(appid), str(user_id)))
                if at is not None and min(int(str(ts_ms)), int(str(received_ms))) <= at:
                    self._delete_forgotten(str(appid), str(user_id), at)
                    deleted = True
        self._swept_at = started
        return deleted

    def _expire_forgotten(self, cutoff_ms: int) -> bool:
        """Forget the forgotten users once every event a forget erased is older than the
        retention cut-off (a day after the forget: see FORGOTTEN_KEPT_MS). Whether any
        went (a mutation: the caller waits for it)."""
        params = [cutoff_ms - FORGOTTEN_KEPT_MS]
        where = "forgotten_ms < {p1:Int64}"
        if not self._scalar(f"SELECT count() FROM forgotten WHERE {where}", params):
            return False
        delete = f"ALTER TABLE forgotten DELETE WHERE {where}"
        self._t.execute(render_clickhouse(delete, params))
        return True

    def _existing(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        """The keys stored at least once: the exact lookup of the ids that the index says
        were claimed before (it reads every granule that may hold one of them, nearly all of
        the app's for random ids: the index keeps it rare).

        The keys go as external data (a table ``_keys``), not as SQL literals, and the
        lookup runs on one thread: measured on 18.16 with 783 keys against 100k events in
        ~130 parts, the server's CPU for it went from ~2.6 to ~1.0 us per key (most of it was
        the default ``max_threads`` starting threads for a lookup that reads ~4 marks), and
        the node's from rendering and escaping each id as a literal to one TabSeparated join."""
        if not keys:
            return set()
        sql = (
            f"SELECT DISTINCT appid, uid FROM {TABLE} WHERE (appid, uid) IN {_KEYS_TABLE}"
            " SETTINGS max_threads = 1 FORMAT JSONCompact"
        )
        self._ready()
        raw = self._t.execute(sql, tables=[_keys_table(_KEYS_TABLE, keys)])
        if not raw.strip():
            return set()
        return {(appid, uid) for appid, uid in json.loads(raw)["data"]}

    def _mark_repeated(self, keys: Sequence[tuple[str, str]]) -> None:
        payload = "".join(f"{_tsv(a)}\t{_tsv(u)}\n" for a, u in keys).encode()
        self._t.execute(f"INSERT INTO {DUPS_TABLE} (appid, uid) FORMAT TabSeparated", payload)

    def _insert(self, rows: Sequence[StoredEvent], visible: Sequence[bool] | None = None) -> None:
        used = RowColumns.of(rows)
        columns = [*CORE_COLUMNS, *used.names]
        self._ensure_columns(columns[len(CORE_COLUMNS) :])
        names = ", ".join(columns)
        # a float's eight bytes: 18.16 reads some floats' text 1 ulp off (a block without
        # floats goes as text, which is cheaper to build here: 1.4 us a row against 2.0)
        if used.floats and self._t.binary_inserts:
            payload = rowbinary_rows(rows, used, visible, extra_kinds=EXTRA_COLUMNS)
            self._t.execute(f"INSERT INTO {TABLE} ({names}) FORMAT RowBinary", payload)
        else:
            payload = tsv_rows(rows, used, visible)
            self._t.execute(f"INSERT INTO {TABLE} ({names}) FORMAT TabSeparated", payload)

    def copy_in(self, rows: Sequence[tuple[StoredEvent, bool]]) -> AppendResult:
        """Store rows copied from another store with their ``visible`` flag (move-store):
        keys already here are skipped (so an interrupted copy can run again). Every key is
        looked up in ClickHouse first, whatever the index says (the copy may run with another
        state database than the servers'): the blocks come in ``(appid, uid)`` order, so the
        lookup reads the few granules of the block's key range."""
        with self._write_lock:
            found = self._existing({(r.appid, r.uid) for r, _ in rows})
            fresh = [(r, v) for r, v in rows if (r.appid, r.uid) not in found]
            inserted = self._store([r for r, _ in fresh], [v for _, v in fresh])
        return AppendResult(len(inserted), len(rows) - len(inserted))

    def counts_by_day(self, appid: str | None = None) -> dict[tuple[str, int], int]:
        """Stored events (each event id once, test events included) per app and UTC day
        number (days since 1970-01-01)."""
        where = "WHERE appid = {p1:String}" if appid is not None else ""
        sql = (
            "SELECT appid, intDiv(tupleElement(w, 3), 86400000) AS d, count() FROM ("
            "SELECT appid, uid, min(tuple(toUInt8(1 - visible), received_ms, ts_ms)) AS w"
            f" FROM {TABLE} {where} GROUP BY appid, uid) GROUP BY appid, d"
        )
        rows = self._select(sql, [appid] if appid is not None else [])
        return {(str(a), int(str(d))): int(str(n)) for a, d, n in rows}

    # ------------------------------------------------------------------ other writes

    def clear_slot(self, appid: str, column: str, received_before_ms: int) -> int:
        """Every stored copy of the app's events (a synced test event has two); a mutation,
        waited for."""
        _slot_name(column)
        if column not in self._columns:  # maybe added by another node since this one looked
            with self._columns_lock:
                self._columns_seen = self._read_columns()
            if column not in self._columns_seen:
                return 0
        params: list[object] = [appid, received_before_ms]
        where = f"appid = {{p1:String}} AND {column} IS NOT NULL AND received_ms < {{p2:Int64}}"
        count = self._scalar(f"SELECT count() FROM {TABLE} WHERE {where}", params)
        if count:
            update = f"ALTER TABLE {TABLE} UPDATE {column} = NULL WHERE {where}"
            self._t.execute(render_clickhouse(update, params))
            self._wait_for_mutations()
        return count

    def sync_test(self, appid: str, test_id: str) -> int:
        """Insert a visible copy of each invisible event of the test (visible copies win)."""
        self._ready()
        self._columns_seen = self._read_columns()  # copy every column, whoever added it
        slots = self._slot_columns()
        carried = ("received_ms", "time_estimated", *slots)
        source = dedup_source(TABLE, "{p1:String}", None, carried)
        cols = ", ".join(c if c != "visible" else "toUInt8(1)" for c in (*CORE_COLUMNS, *slots))
        select = f"SELECT {cols} FROM {source} WHERE test_id = {{p2:String}} AND visible = 0"
        count = self._scalar(f"SELECT count() FROM ({select})", [appid, test_id])
        if count:
            # listed first: from the insert on, the test's ids have two copies
            self._t.execute(
                render_clickhouse(
                    f"INSERT INTO {DUPS_TABLE} (appid, uid) SELECT appid, uid FROM ({select})",
                    [appid, test_id],
                )
            )
            # only the ids just listed: the SELECT runs again, and a test event that another
            # node stored meanwhile (claimed as new, not listed) must keep its single copy
            listed = f" AND uid IN (SELECT uid FROM {DUPS_TABLE} WHERE appid = {{p1:String}})"
            names = ", ".join([*CORE_COLUMNS, *slots])
            self._t.execute(
                render_clickhouse(
                    f"INSERT INTO {TABLE} ({names}) {select}{listed}", [appid, test_id]
                )
            )
        return count

    def delete_older_than(self, cutoff_ms: int) -> int:
        if isinstance(cutoff_ms, bool) or not isinstance(cutoff_ms, int):
            raise TypeError("cutoff_ms must be an int")
        expired = self._expire_forgotten(cutoff_ms)
        swept = self._sweep_forgotten()
        count = self._scalar(f"SELECT count() FROM {TABLE} WHERE ts_ms < {{p1:Int64}}", [cutoff_ms])
        # the keys of claims whose insert never happened (an outage) go too: nothing in
        # ClickHouse keeps them; a retry of a dropped key is stored again unlooked-up, as
        # DuckDB would store it, and a copy that ClickHouse's (asynchronous) delete has not
        # reached yet is older than every report's not_before_ms, so no report reads both
        self._keys.delete_older_than(cutoff_ms)
        if count:
            self._unlist_older_than(cutoff_ms)
            for (partition,) in self._select(
                "SELECT DISTINCT partition FROM system.parts WHERE database = {p1:String}"
                " AND table = {p2:String} AND active",
                [self._t.database, TABLE],
            ):
                if wholly_older(str(partition), cutoff_ms):
                    self._t.execute(f"ALTER TABLE {TABLE} DROP PARTITION {partition}")
            delete = f"ALTER TABLE {TABLE} DELETE WHERE ts_ms < {{p1:Int64}}"
            self._t.execute(render_clickhouse(delete, [cutoff_ms]))
        # its deletes are waited for: reads without a window (``count``, the unlisted ids'
        # copies, a forgotten user's) would see the rows until they are done, and the next
        # round would count them again and queue a second delete behind the first
        if count or expired or swept:
            self._wait_for_mutations(_RETENTION_WAIT_S)
        self._unlist_orphans()
        return count

    def _unlist_older_than(self, cutoff_ms: int) -> None:
        """Take out of ``event_dups`` the ids whose every stored copy is older than
        ``cutoff_ms`` (retention is about to delete them), so that the list every report
        filters with does not grow for the life of the data. An id with a copy at or after the
        cut-off stays listed. Done and waited for before the events go: the mutation's subquery
        reads them. (A copy of an unlisted id that lands later has the same old time, below
        every report's ``not_before_ms``.) The caller then waits for the events' own delete:
        reads without a window (``count``) would see both copies of an unlisted id until it is
        done."""
        where = (
            "(appid, uid) IN (SELECT appid, uid FROM events WHERE (appid, uid) IN"
            f" (SELECT appid, uid FROM {DUPS_TABLE}) GROUP BY appid, uid"
            " HAVING max(ts_ms) < {p1:Int64})"
        )
        if self._scalar(f"SELECT count() FROM {DUPS_TABLE} WHERE {where}", [cutoff_ms]):
            self._t.execute(
                render_clickhouse(f"ALTER TABLE {DUPS_TABLE} DELETE WHERE {where}", [cutoff_ms])
            )
            self._wait_for_mutations()

    def _unlist_orphans(self) -> None:
        """Take out of ``event_dups`` the listed ids with no copy left in ``events``, which
        ``_unlist_older_than`` never meets: copies deleted after an insert met a forget
        (``_delete_forgotten``), or an id listed for an insert that then failed and whose
        claimer never inserted it. An id is taken out at a round ``ORPHAN_MARGIN_MS`` or more
        after a round of this node found it so (an id found so at a single moment may be
        listed for an insert still on its way, and a second copy may follow it): a copy that
        lands later is alone, and a retry of the id found claimed is looked up and listed
        again where not found. (Only an id listed anew and still being inserted when the
        second round finds it, and a second copy of it, in flight meanwhile, would escape.)
        The lookup reads the granules of the listed ids, as ``_unlist_older_than`` does."""
        found = self._query(
            f"SELECT DISTINCT appid, uid FROM {DUPS_TABLE} WHERE (appid, uid) NOT IN"
            f" (SELECT appid, uid FROM {TABLE} WHERE (appid, uid) IN"
            f" (SELECT appid, uid FROM {DUPS_TABLE}))"
        )
        now = now_ms()
        orphans: dict[tuple[str, str], int] = {}
        gone: dict[str, list[str]] = {}
        for appid, uid in found:
            key = (str(appid), str(uid))
            since = self._orphans.get(key, now)
            if now - since >= ORPHAN_MARGIN_MS:
                gone.setdefault(key[0], []).append(key[1])
            else:
                orphans[key] = since
        self._orphans = orphans
        for appid, uids in sorted(gone.items()):
            self._unlist(appid, sorted(uids))

    def forget_user(self, appid: str, user_id: str, at_ms: int | None = None) -> int:
        """Delete every event of one user of one app; returns how many rows went. The user
        is written to ``forgotten`` first, for every node's inserts to check (see the module
        docstring), and this node's insert in flight, if any, ends before the delete."""
        self.remember_forgotten([(appid, user_id, now_ms() if at_ms is None else at_ms)])
        params = [appid, user_id]
        where = "appid = {p1:String} AND user_id = {p2:String}"
        # events, not stored copies (a synced test event is stored twice): as DuckDB counts
        source = dedup_source(TABLE, "{p1:String}", None, ())
        count = self._scalar(f"SELECT count() FROM {source} WHERE user_id = {{p2:String}}", params)
        # the user's listed ids, read before their events go (nothing else would take them
        # out of the list every report filters with), unlisted once the events are gone (an
        # id unlisted while two copies remain would be counted twice meanwhile)
        listed = self._select(
            f"SELECT DISTINCT uid FROM {DUPS_TABLE} WHERE appid = {{p1:String}} AND uid IN"
            f" (SELECT uid FROM {TABLE} WHERE {where})",
            params,
        )
        if count:
            self._t.execute(render_clickhouse(f"ALTER TABLE {TABLE} DELETE WHERE {where}", params))
        if self._scalar(f"SELECT count() FROM first_seen WHERE {where}", params):
            self._t.execute(
                render_clickhouse(f"ALTER TABLE first_seen DELETE WHERE {where}", params)
            )
        self._wait_for_mutations()
        self._unlist(appid, [str(uid) for (uid,) in listed])
        return count

    def remember_forgotten(self, forgotten: Iterable[tuple[str, str, int]]) -> None:
        """Write ``(appid, user_id, forgotten_ms)`` to ``forgotten`` (nothing is deleted:
        ``forget_user`` does that next; move-store carries the DuckDB store's forgets over),
        then wait for this node's insert in flight: its later inserts leave those users'
        earlier rows out."""
        self._ready()
        lines = "".join(f"{_tsv(a)}\t{_tsv(u)}\t{int(t)}\n" for a, u, t in forgotten)
        if lines:
            self._exec(
                "INSERT INTO forgotten (appid, user_id, forgotten_ms) FORMAT TabSeparated",
                lines.encode(),
            )
        with self._write_lock:
            self._read_forgotten()

    def _unlist(self, appid: str, uids: Sequence[str]) -> None:
        """Take these ids of ``appid`` out of ``event_dups`` (in chunks: literal lists)."""
        for start in range(0, len(uids), 1000):
            chunk = ", ".join(clickhouse_literal(u, "String") for u in uids[start : start + 1000])
            app = clickhouse_literal(appid, "String")
            self._t.execute(
                f"ALTER TABLE {DUPS_TABLE} DELETE WHERE appid = {app} AND uid IN ({chunk})"
            )
        if uids:
            self._wait_for_mutations()

    def forgotten_at(self, appid: str, user_id: str) -> int | None:
        """As this node last read ``forgotten`` (when it set up, and at each insert that
        stored rows). Never waits for the network (the service asks on its event loop):
        None before the store is set up (by its first write or read)."""
        return self._forgotten.get((appid, user_id))

    def first_days(self, appid: str, candidates: Mapping[str, int]) -> dict[str, int]:
        """Several nodes may record different days for a new user at once: the smallest
        stored day wins at read time (a node may have flagged a few events with its own)."""
        if not candidates:
            return {}
        found = self._stored_first_days(appid, list(candidates))
        missing = {u: d for u, d in candidates.items() if u not in found}
        if missing:  # not a day a forget erased, by the forgets as they are now
            missing = storable_first_days(self._forgotten_of(appid, missing), appid, missing)
        if missing:
            lines = "".join(f"{_tsv(appid)}\t{_tsv(u)}\t{int(d)}\n" for u, d in missing.items())
            self._exec(
                "INSERT INTO first_seen (appid, user_id, first_day) FORMAT TabSeparated",
                lines.encode(),
            )
            found = self._stored_first_days(appid, list(candidates))
        return found

    def _forgotten_of(self, appid: str, users: Collection[str]) -> Forgotten:
        """When these users were forgotten, read now (not as this node last read it)."""
        found: Forgotten = {}
        listed = list(users)
        for start in range(0, len(listed), 500):
            chunk = ", ".join(clickhouse_literal(u, "String") for u in listed[start : start + 500])
            sql = (
                "SELECT user_id, max(forgotten_ms) FROM forgotten WHERE appid = "
                + clickhouse_literal(appid, "String")
                + f" AND user_id IN ({chunk}) GROUP BY user_id"
            )
            found.update(((appid, str(u)), int(str(t))) for u, t in self._select(sql))
        return found

    def _stored_first_days(self, appid: str, users: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(users), 500):
            chunk = users[start : start + 500]
            sql = (
                "SELECT user_id, min(first_day) FROM first_seen WHERE appid = "
                + clickhouse_literal(appid, "String")
                + " AND user_id IN ("
                + ", ".join(clickhouse_literal(u, "String") for u in chunk)
                + ") GROUP BY user_id"
            )
            found.update((str(u), int(str(d))) for u, d in self._select(sql))
        return found

    def _wait_for_mutations(self, timeout_s: float = 60.0) -> None:
        """(Through ``_query``: also called while the store is being set up.)"""
        deadline, interrupts = time.monotonic() + timeout_s, self._interrupts
        while time.monotonic() < deadline and self._interrupts == interrupts:
            (pending,) = self._query(
                "SELECT count() FROM system.mutations WHERE database = {p1:String}"
                f" AND table IN ({{p2:String}}, 'first_seen', '{DUPS_TABLE}', 'forgotten')"
                " AND NOT is_done",
                [self._t.database, TABLE],
            )[0]
            if not pending:
                return
            time.sleep(0.05)
        if self._interrupts != interrupts:
            raise AnalyticsUnavailable("the server is stopping; ClickHouse goes on deleting")
        raise AnalyticsUnavailable("ClickHouse did not finish deleting in time; try again")

    # ------------------------------------------------------------------ reads

    def count(self, appid: str, event: str | None = None, *, include_tests: bool = False) -> int:
        source = dedup_source(TABLE, "{p1:String}", None, ())
        sql = f"SELECT count() FROM {source} WHERE 1"
        params: list[object] = [appid]
        if event is not None:
            sql += " AND event = {p2:String}"
            params.append(event)
        if not include_tests:
            sql += " AND visible"
        return self._scalar(sql, params)

    def event_analysis(
        self, appid: str, query: EventQuery, slots: FieldSlots
    ) -> list[dict[str, object]]:
        self._ensure_fields(slots)
        compiled = compile_event_analysis(appid, query, slots, dialect=CLICKHOUSE)
        self._ensure_columns(compiled.columns)
        return compiled.shape(self._select(compiled.sql, compiled.params))

    def funnel(self, appid: str, query: FunnelQuery, slots: FieldSlots) -> list[dict[str, object]]:
        self._ensure_fields(slots)
        compiled = compile_funnel(appid, query, slots, dialect=CLICKHOUSE)
        self._ensure_columns(compiled.columns)
        return compiled.shape(self._select(compiled.sql, compiled.params))

    def overview(self, appid: str, query: OverviewQuery) -> dict[str, object]:
        return self._run(compile_overview(appid, query, dialect=CLICKHOUSE))

    def realtime(self, appid: str, query: RealtimeQuery) -> dict[str, object]:
        # inserts are acknowledged once written: an accepted event is in the next answer
        return self._run(compile_realtime(appid, query, dialect=CLICKHOUSE))

    def _run(self, compiled: CompiledMulti) -> dict[str, object]:
        self._ensure_columns(compiled.columns)
        return compiled.shape(
            [self._select(s.sql, s.params) if s.sql else [] for s in compiled.statements]
        )

    def retention(
        self, appid: str, query: RetentionQuery, slots: FieldSlots
    ) -> list[dict[str, object]]:
        self._ensure_fields(slots)
        compiled = compile_retention(appid, query, slots, dialect=CLICKHOUSE)
        self._ensure_columns(compiled.columns)
        return compiled.shape(self._select(compiled.sql, compiled.params))

    def paths(self, appid: str, query: PathsQuery, slots: FieldSlots) -> dict[str, object]:
        compiled = compile_paths(appid, query, slots, dialect=CLICKHOUSE)
        return compiled.shape(self._select(compiled.sql, compiled.params))

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
        self._ensure_fields(slots)
        compiled = compile_user_events(
            appid,
            user_id,
            slots,
            limit=limit,
            before=before,
            not_before_ms=not_before_ms,
            dialect=CLICKHOUSE,
        )
        return compiled.shape(self._select(compiled.sql, compiled.params))

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
        self._ensure_fields(slots)
        compiled = compile_export(
            appid, event, from_ms, to_ms, not_before_ms, slots, dialect=CLICKHOUSE
        )
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(compiled.header)
        rows = self._select(compiled.sql, compiled.params)
        for row in rows:
            ts = row[0]
            assert isinstance(ts, int)
            writer.writerow((_iso_utc(ts), *compiled.values(row)))
        return len(rows)

    # ------------------------------------------------------------------ lifecycle

    def interrupt(self) -> None:
        self._interrupts += 1

    def close(self) -> None:
        if self._closed:
            return
        self._group_commit.drain()  # what was accepted into the queue is stored first
        self._closed = True
        with self._write_lock:  # not under a running write (it fails the calls it holds)
            self._t.close()
            self._keys.close()
        self._group_commit.stop()

    def __enter__(self) -> ClickHouseEventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
