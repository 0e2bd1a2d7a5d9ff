"""Background-fetch state: per-user schedule and token, fetched bodies, and the fetch log.

A pair is in the due index (``next_due_at`` set) only when it can be fetched: its app has an
enabled periodic URL and the user launched it. The one exception is a pair's first launch, which
is due once without a token so that the missing token is logged where the developer looks;
after that a token-less pair waits for ``set_token``. Pairs of pre-fetch-only apps never enter
the index, and a claim takes out the due pairs that no longer qualify (the user stopped
launching, the URL was disabled meanwhile), so a claim batch and the idle poll read only rows
they can use and cost the same at 1M pairs as at 10k; no round scans the whole index.

Claiming due fetches is the one dialect-specific statement: PostgreSQL locks the due rows with
``FOR UPDATE SKIP LOCKED`` so concurrent workers never claim the same pair; SQLite has one writer
at a time, so a single UPDATE ... RETURNING is already exclusive. A claimed row is leased: its
``next_due_at`` moves to the lease end, so a worker that dies loses nothing and nothing is fetched
twice in a burst. An app's own active-days window (its fetch settings) is applied the same way:
a claim parks the pairs of users outside it.

Bodies are stored once (see ``store_bodies``): ``fetched_data`` names a body by its SHA-256 and
``bodies`` holds each distinct text once, compressed, with a reference count kept by the writer
(+n when it upserts) and by database triggers (-1 when a row's body is replaced or deleted; the
body is deleted at zero). A read is still one statement: two primary-key lookups joined. A batch
writes bodies before the rows naming them, both before the schedules move. A periodic result's
or pre-fetch body is written only while the pair's token is the one its fetch used
(``current_bodies``; a pre-fetch that sent a login code is not checked): read in the batch's
transaction, so a skipped body takes no reference at all.

On PostgreSQL every transaction that writes several pairs, data rows or bodies locks them first
in the one global order of storage/row_locks.py (pairs by key, then data rows by key, then
bodies by hash, the replaced ones included), so concurrent batches, wakes, refreshes and token
changes wait for one another at most, never deadlock."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Connection,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    or_,
    select,
    update,
)

from ..domain.grey import UrlSettings, grey_bucket, route_for, url_moves
from . import schema as t
from .db import Database, dialect_insert
from .row_locks import lock_data, lock_pairs


@dataclass(frozen=True)
class DueFetch:
    appid: str
    user_id: str
    token: str | None
    etag: str | None
    last_modified: str | None
    failures: int
    last_success_at: float | None
    url: str
    secret: str
    route: str = "main"  # main | grey: which of the kind's URLs ``url`` is
    # the app's fetch settings (None: the platform's); headers opened from their sealed form
    interval_s: float | None = None
    timeout_s: float | None = None
    headers: tuple[tuple[str, str], ...] = ()
    version: str = ""  # the mini-program's, from the user's last launch ("" when unknown)
    env_version: str = ""


@dataclass(frozen=True)
class FetchRecord:
    """One attempt: a fetch-log row, plus the body when it was accepted."""

    appid: str
    user_id: str
    kind: str
    trigger: str
    ts: float
    url: str | None
    verdict: str
    status: int | None = None
    bytes: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    body: str | None = None
    fetched_at_ms: int | None = None
    path: str | None = None
    query: str | None = None
    scene: int | None = None
    route: str | None = None  # main | grey (None: no URL served)
    # the token the fetch sent: its body is stored only while that is still the pair's token
    # (None: not checked, a pre-fetch that sent a login code: the code names the user)
    token: str | None = None


@dataclass(frozen=True)
class ScheduleUpdate:
    appid: str
    user_id: str
    next_due_at: float | None
    failures: int
    last_attempt_at: float
    last_error: str | None
    last_success_at: float | None = None  # None: keep the stored value
    etag: str | None = None
    last_modified: str | None = None
    new_validators: bool = False  # a full 200: store etag/last_modified (None clears them)
    token: str | None = None  # the token the fetch used (see the "failed"/"succeeded" SQL)
    route: str | None = None  # main | grey: the URL that gave the new validators
    # the URL fetched: if it is no longer one of the app's periodic URLs (changed while the fetch
    # was in flight), the pair is due again at once and no validators are stored (see
    # ``FetchStore._for_current_urls``). None: not checked
    url: str | None = None


@dataclass(frozen=True)
class StoredData:
    body: str
    fetched_at_ms: int
    path: str | None
    query: str | None
    scene: int | None


# Named parameters: now, active_since, lease, limit (:name for SQLite, %(name)s for psycopg).
# One table, one index: the due index in order, so the good plan is the only plan (a join with
# fetch_urls let PostgreSQL pick a BitmapAnd plan for a fresh connection's first claims at 1M
# pairs). A due pair whose user stopped launching is parked by the claim that meets it (its
# lease_until comes back NULL), so no round ever scans the whole index for them; the app's URL
# is checked after the claim (see ``claim_due``).
_CLAIM_SQLITE = """
    UPDATE app_users SET
        lease_until = CASE WHEN last_launch_at >= :active_since THEN :lease END,
        next_due_at = CASE WHEN last_launch_at >= :active_since THEN :lease END
    WHERE rowid IN (
        SELECT rowid FROM app_users WHERE next_due_at <= :now ORDER BY next_due_at LIMIT :limit)
    RETURNING appid, user_id, token, etag, last_modified, failures, last_success_at, lease_until,
        version, env_version, last_launch_at, validators_route
    """

# PostgreSQL: the rows locked in due order drive the update by their physical address (ctid),
# as SQLite's by rowid: a TID scan of the pages just locked, where joining back on the primary
# key walked its three-level text index once per pair (~15 % of the claim's server CPU at 1M
# pairs). The plan has no alternative to choose: an index scan in due order under the lock, a
# TID scan for the update. A locked row cannot be changed by anyone else until this transaction
# ends, so its address stays valid; a row changed by a transaction that committed after this
# statement's snapshot is locked in its new version, which the snapshot cannot see: it is left
# out of this claim (not leased, still due) and taken by the next one, never claimed twice.
_CLAIM_POSTGRES = """
    UPDATE app_users SET
        lease_until = CASE WHEN last_launch_at >= %(active_since)s
            THEN CAST(%(lease)s AS DOUBLE PRECISION) END,
        next_due_at = CASE WHEN last_launch_at >= %(active_since)s
            THEN CAST(%(lease)s AS DOUBLE PRECISION) END
    WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM app_users WHERE next_due_at <= %(now)s
        ORDER BY next_due_at LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED))
    RETURNING appid, user_id, token, etag, last_modified, failures, last_success_at, lease_until,
        version, env_version, last_launch_at, validators_route
    """

# The apps among a claim's that can be fetched periodically: URL, secret, grey release and fetch
# settings. Plain SQL through the DB-API cursor (built once): building the Core statement for
# every claim was half of the claim's Python time. {appids}: the dialect's "one of" test.
_TARGETS_SQL = (
    "SELECT fu.appid, fu.url, a.secret, fu.grey_url, fu.grey_ratio, st.interval_s,"
    " st.timeout_s, st.headers, st.active_days, fu.updated_at FROM fetch_urls fu"
    " JOIN apps a ON a.appid = fu.appid LEFT JOIN app_settings st ON st.appid = fu.appid"
    " WHERE fu.appid {appids} AND fu.kind = 'periodic' AND fu.enabled AND fu.url IS NOT NULL"
)

# The pair's app can be fetched periodically: the condition of the due index.
_FETCHABLE = (
    "EXISTS (SELECT 1 FROM fetch_urls fu WHERE fu.appid = {appid} AND fu.kind = 'periodic'"
    " AND fu.enabled AND fu.url IS NOT NULL)"
)

# A launch: a new pair of a fetchable app is due at once (token or not, see the docstring);
# a known pair re-enters the due index only when it has a token (its schedule was parked).
_LAUNCH_SQL = (
    "INSERT INTO app_users (appid, user_id, failures, last_launch_at, next_due_at)"
    " VALUES (?, ?, 0, ?, CASE WHEN " + _FETCHABLE.format(appid="?") + " THEN"
    " CAST(? AS DOUBLE PRECISION) END)"
    " ON CONFLICT (appid, user_id) DO UPDATE SET last_launch_at = excluded.last_launch_at,"
    " next_due_at = CASE WHEN app_users.next_due_at IS NULL AND app_users.token IS NOT NULL"
    " THEN excluded.next_due_at ELSE app_users.next_due_at END"
)

# A token: a changed token resets the failures and makes a launched pair of a fetchable app due
# at once; a token set before any launch waits for the launch (see _LAUNCH_SQL). It drops the
# validators too: they describe the previous token's data (another account's, perhaps), and a
# server answering 304 to them would leave that data in place for the new token.
_CHANGED = "COALESCE(app_users.token, '') <> excluded.token"
_SET_TOKEN_SQL = (
    "INSERT INTO app_users (appid, user_id, failures, token) VALUES (?, ?, 0, ?)"
    " ON CONFLICT (appid, user_id) DO UPDATE SET token = excluded.token,"
    f" failures = CASE WHEN {_CHANGED} THEN 0 ELSE app_users.failures END,"
    f" last_error = CASE WHEN {_CHANGED} THEN NULL ELSE app_users.last_error END,"
    f" etag = CASE WHEN {_CHANGED} THEN NULL ELSE app_users.etag END,"
    f" last_modified = CASE WHEN {_CHANGED} THEN NULL ELSE app_users.last_modified END,"
    f" next_due_at = CASE WHEN {_CHANGED} AND app_users.last_launch_at IS NOT NULL AND "
    + _FETCHABLE.format(appid="?")
    + " THEN CAST(? AS DOUBLE PRECISION) ELSE app_users.next_due_at END"
)

# A user the grey release moved to another URL (see ``FetchStore.wake_users``): due at once for
# a full fetch when not being fetched; when leased, only the validators go (its record makes it
# due again, see ``FetchStore._for_current_urls``).
_WAKE_FREE_SQL = (
    "UPDATE app_users SET next_due_at = ?, failures = 0, etag = NULL, last_modified = NULL,"
    " validators_route = NULL WHERE appid = ? AND user_id = ? AND token IS NOT NULL"
    " AND last_launch_at IS NOT NULL AND (lease_until IS NULL OR lease_until <= ?)"
)
_WAKE_LEASED_SQL = (
    "UPDATE app_users SET etag = NULL, last_modified = NULL, validators_route = NULL"
    " WHERE appid = ? AND user_id = ? AND lease_until > ?"
)

# The earliest due time among active pairs: the due index in order, stopping at the first pair
# that qualifies (not min() over a join, which reads every active pair). A pair whose app cannot
# be fetched (it should not be in the index) wakes the engine once: its claim parks it.
_NEXT_DUE_SQL = (
    "SELECT next_due_at FROM app_users WHERE next_due_at IS NOT NULL AND last_launch_at >= ?"
    " ORDER BY next_due_at LIMIT 1"
)

_RECORD_SQL = {
    "log": "INSERT INTO fetch_log (appid, user_id, kind, trigger, ts, url, verdict, status, bytes,"
    " latency_ms, error, route) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "body": "INSERT INTO bodies (hash, body, refs) VALUES (?, ?, ?) ON CONFLICT (hash) DO UPDATE"
    " SET refs = bodies.refs + excluded.refs",
    "data": "INSERT INTO fetched_data (appid, user_id, kind, body_hash, fetched_at_ms, path,"
    " query, scene) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (appid, user_id, kind) DO UPDATE"
    " SET body_hash = excluded.body_hash, fetched_at_ms = excluded.fetched_at_ms,"
    " path = excluded.path, query = excluded.query, scene = excluded.scene",
    # the schedule moves only if the token is still the one the fetch used: a token set while
    # the fetch was in flight made the pair due at once, and that must stand; nor does the
    # lease end then: it is the claim of the new token's fetch, if that was claimed already
    "failed": "UPDATE app_users SET next_due_at = CASE WHEN {same_token} THEN ? ELSE next_due_at"
    " END, failures = CASE WHEN {same_token} THEN ? ELSE failures END, last_attempt_at = ?,"
    " last_error = ?, lease_until = CASE WHEN {same_token} THEN NULL ELSE lease_until END"
    " WHERE appid = ? AND user_id = ?",
    # ...and so do the validators: a previous token's must not be sent for the new one
    "succeeded": "UPDATE app_users SET next_due_at = CASE WHEN {same_token} THEN ? ELSE"
    " next_due_at END, failures = CASE WHEN {same_token} THEN ? ELSE failures END,"
    " last_attempt_at = ?, last_error = ?,"
    " lease_until = CASE WHEN {same_token} THEN NULL ELSE lease_until END, last_success_at = ?,"
    " etag = CASE WHEN ? AND {same_token} THEN ? ELSE etag END,"
    " last_modified = CASE WHEN ? AND {same_token} THEN ? ELSE last_modified END,"
    " validators_route = CASE WHEN ? AND {same_token} THEN ? ELSE validators_route END"
    " WHERE appid = ? AND user_id = ?",
}


# PostgreSQL: each kind of result row is ONE statement over arrays (unnest), not one statement
# per row: a batch of 500 results is three statements and one round trip each. The arrays go in
# binary (%b): psycopg dumps a text array element by element in Python, 4x the CPU.
_RECORD_PG = {
    "log": "INSERT INTO fetch_log (appid, user_id, kind, trigger, ts, url, verdict, status, bytes,"
    " latency_ms, error, route) SELECT * FROM unnest(%b::text[], %b::text[], %b::text[],"
    " %b::text[], %b::float8[], %b::text[], %b::text[], %b::int[], %b::int[], %b::float8[],"
    " %b::text[], %b::text[])",
    "body": "INSERT INTO bodies (hash, body, refs) SELECT * FROM unnest(%b::text[], %b::bytea[],"
    " %b::int[]) ON CONFLICT (hash) DO UPDATE SET refs = bodies.refs + excluded.refs",
    "data": "INSERT INTO fetched_data (appid, user_id, kind, body_hash, fetched_at_ms, path,"
    " query, scene) SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[],"
    " %b::bigint[], %b::text[], %b::text[], %b::int[]) ON CONFLICT (appid, user_id, kind)"
    " DO UPDATE SET body_hash = excluded.body_hash, fetched_at_ms = excluded.fetched_at_ms,"
    " path = excluded.path, query = excluded.query, scene = excluded.scene",
    # as _RECORD_SQL's "failed" and "succeeded" in one (see _SCHEDULE), for pairs the batch
    # has locked already
    "schedule": "UPDATE app_users a SET {set} FROM unnest({moves}) AS v({names})"
    " WHERE a.appid = v.appid AND a.user_id = v.user_id",
    # ...and for pairs it has not: alone, the UPDATE would lock them in the order its plan meets
    # them; "locked" takes them first, in key order (see row_locks.py), and the UPDATE waits for
    # it (a one-time filter on its count, evaluated before any row is read): no statement more
    "schedule_locking": "WITH v AS MATERIALIZED (SELECT * FROM unnest({moves}) AS v({names})),"
    " locked AS MATERIALIZED (SELECT 1 FROM app_users l JOIN v"
    " ON l.appid = v.appid AND l.user_id = v.user_id"
    ' ORDER BY l.appid COLLATE "C", l.user_id COLLATE "C" FOR UPDATE OF l)'
    " UPDATE app_users a SET {set} FROM v WHERE a.appid = v.appid AND a.user_id = v.user_id"
    " AND (SELECT count(*) FROM locked) >= 0",
}
# A batch's schedule moves: the SET clause (a failure has no last_success_at and no new
# validators: both kept), and the arrays of _MOVE_ROW's columns.
_SCHEDULE = {
    "set": "next_due_at = CASE WHEN a.token IS NOT DISTINCT FROM v.token THEN v.next_due_at"
    " ELSE a.next_due_at END,"
    " failures = CASE WHEN a.token IS NOT DISTINCT FROM v.token THEN v.failures"
    " ELSE a.failures END,"
    " last_attempt_at = v.last_attempt_at, last_error = v.last_error,"
    " lease_until = CASE WHEN a.token IS NOT DISTINCT FROM v.token THEN NULL"
    " ELSE a.lease_until END,"
    " last_success_at = COALESCE(v.last_success_at, a.last_success_at),"
    " etag = CASE WHEN v.new_validators AND a.token IS NOT DISTINCT FROM v.token THEN v.etag"
    " ELSE a.etag END,"
    " last_modified = CASE WHEN v.new_validators AND a.token IS NOT DISTINCT FROM v.token"
    " THEN v.last_modified ELSE a.last_modified END,"
    " validators_route = CASE WHEN v.new_validators AND a.token IS NOT DISTINCT FROM v.token"
    " THEN v.route ELSE a.validators_route END",
    "moves": "%b::text[], %b::text[], %b::text[], %b::float8[], %b::int[], %b::float8[],"
    " %b::text[], %b::float8[], %b::bool[], %b::text[], %b::text[], %b::text[]",
    "names": "appid, user_id, token, next_due_at, failures, last_attempt_at, last_error,"
    " last_success_at, new_validators, etag, last_modified, route",
}
for _kind in ("schedule", "schedule_locking"):
    _RECORD_PG[_kind] = _RECORD_PG[_kind].format(**_SCHEDULE)


# The periodic URLs of a batch's apps now (see ``FetchStore._for_current_urls``). PostgreSQL
# holds them (FOR SHARE) until the batch commits: a URL change waits for the batch, and the
# change's wake_app then finds the batch's pairs no longer leased, so it makes them due itself.
_URLS_SQL = (
    "SELECT appid, url, grey_url, grey_ratio FROM fetch_urls WHERE appid {appids}"
    " AND kind = 'periodic'"
    " AND enabled AND url IS NOT NULL"
)


# A batch's pairs and their tokens now (see ``current_bodies``). PostgreSQL locks them in key
# order (byte order: Python's sorted order), the first of a batch's locks (see row_locks.py).
_TOKENS_SQLITE = (
    "SELECT a.appid, a.user_id, a.token FROM (VALUES {values}) AS v"
    " JOIN app_users a ON a.appid = v.column1 AND a.user_id = v.column2"
)
_TOKENS_PG = (
    "SELECT a.appid, a.user_id, a.token FROM app_users a"
    " JOIN unnest(%b::text[], %b::text[]) AS v(appid, user_id)"
    " ON a.appid = v.appid AND a.user_id = v.user_id"
    ' ORDER BY a.appid COLLATE "C", a.user_id COLLATE "C" FOR UPDATE OF a'
)

# PostgreSQL: a batch's data rows (key order), then the bodies they name now and those it will
# store (hash order), locked before it writes any: replacing a row unreferences its previous
# body (the trigger), which would otherwise be locked in row order after the new bodies.
_LOCK_DATA_PG = (
    "SELECT f.body_hash FROM fetched_data f"
    " JOIN unnest(%b::text[], %b::text[], %b::text[]) AS v(appid, user_id, kind)"
    " ON f.appid = v.appid AND f.user_id = v.user_id AND f.kind = v.kind"
    ' ORDER BY f.appid COLLATE "C", f.user_id COLLATE "C", f.kind COLLATE "C" FOR UPDATE OF f'
)
_LOCK_BODIES_PG = (
    "SELECT count(*) FROM (SELECT 1 FROM bodies WHERE hash = ANY(%b::text[])"
    ' ORDER BY hash COLLATE "C" FOR UPDATE) AS locked'
)


def _getter(names: str) -> Callable[[Any], tuple[Any, ...]]:
    """A fast row builder: the named attributes of a record, as a tuple."""
    return attrgetter(*names.split())


_LOG_ROW = _getter("appid user_id kind trigger ts url verdict status bytes latency_ms error route")
_DATA_ROW = _getter("appid user_id kind fetched_at_ms path query scene")
_MOVE_ROW = _getter(
    "appid user_id token next_due_at failures last_attempt_at last_error last_success_at"
    " new_validators etag last_modified route"
)


def _columns(
    rows: Sequence[tuple[Any, ...]], width: int, floats: tuple[int, ...] = ()
) -> list[list[Any]]:
    """Rows to columns (the arrays an unnest statement takes); the ``floats`` columns as floats
    (a binary array holds one type: 1 and 1.5 cannot share one)."""
    cols = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]
    for i in floats:
        cols[i] = [None if v is None else float(v) for v in cols[i]]
    return cols


def body_hash(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def body_text(stored: bytes) -> str:
    """A stored body back to its text."""
    return zlib.decompress(stored).decode()


def current_bodies(
    records: Sequence[FetchRecord], tokens: dict[tuple[str, str], str | None]
) -> list[FetchRecord]:
    """``records`` without the bodies fetched with a token that is no longer the pair's
    (``tokens``: the pairs' tokens now). Such a fetch was in flight when the token changed, and
    the new token's fetch may be stored already: its body must not be replaced by (nor pushed
    after) the previous token's, another account's perhaps. Its log row stays."""
    return [
        dataclasses.replace(r, body=None, fetched_at_ms=None)
        if r.body is not None
        and r.token is not None
        and tokens.get((r.appid, r.user_id)) != r.token
        else r
        for r in records
    ]


def token_checked(records: Sequence[FetchRecord]) -> list[tuple[str, str]]:
    """The pairs whose current token decides whether a body of ``records`` is stored."""
    return sorted(
        {(r.appid, r.user_id) for r in records if r.body is not None and r.token is not None}
    )


def store_bodies(cursor: Any, sql: dict[str, str], records: Sequence[FetchRecord]) -> None:
    """Upsert the accepted bodies of ``records`` and point each user's row at its body.

    Each distinct body is sent and compressed once per batch and its reference count raised by
    the number of rows that will name it, BEFORE those rows are written: the triggers then take
    one reference from a replaced or deleted body, so a body is never freed while named. (The
    SQLite path: one writer at a time, so the order of the rows takes no locks.)"""
    hashed = [(r, body_hash(r.body)) for r in records if r.body is not None]
    if not hashed:
        return
    counts = Counter(digest for _, digest in hashed)
    texts = {digest: r.body for r, digest in hashed}
    cursor.executemany(
        sql["body"],
        [(d, zlib.compress(str(texts[d]).encode(), 1), counts[d]) for d in sorted(counts)],
    )
    hashed.sort(key=lambda item: (item[0].appid, item[0].user_id, item[0].kind))
    cursor.executemany(
        sql["data"],
        [
            (r.appid, r.user_id, r.kind, d, r.fetched_at_ms, r.path, r.query, r.scene)
            for r, d in hashed
        ],
    )


def _latest_moves(
    schedule: Sequence[ScheduleUpdate], tokens: dict[tuple[str, str], str | None]
) -> dict[tuple[str, str], tuple[Any, ...]]:
    """One schedule row per pair for PostgreSQL: the last, unless an earlier one is for the
    pair's current token (in ``tokens``) and the last is not (a previous token's fetch that
    finished after the new token's, in one batch)."""
    latest: dict[tuple[str, str], ScheduleUpdate] = {}
    for u in schedule:
        key = (u.appid, u.user_id)
        prev = latest.get(key)
        current = tokens.get(key, u.token)
        if prev is None or u.token == current or prev.token != tokens.get(key, prev.token):
            latest[key] = u
    return {k: _MOVE_ROW(u) for k, u in latest.items()}


def _lock_bodies(cursor: Any, bodies: list[tuple[Any, ...]], data: list[tuple[Any, ...]]) -> None:
    """PostgreSQL: lock a batch's data rows (``data``, in key order), then the bodies they name
    and those of ``bodies`` (hash order), before writing any (see ``_LOCK_DATA_PG``). When
    every body named is one the batch stores (first results, unchanged bodies), the body upsert
    takes them all in hash order itself: the second statement is left out."""
    cursor.execute(
        _LOCK_DATA_PG, [[d[0] for d in data], [d[1] for d in data], [d[2] for d in data]]
    )
    named = {digest for (digest,) in cursor.fetchall()}
    stored = {b[0] for b in bodies}
    if not named <= stored:
        cursor.execute(_LOCK_BODIES_PG, [sorted(named | stored)])


def _main_target(target: tuple[str, str, str], _user: str) -> tuple[str, str, str]:
    return target


def _body_rows(
    records: Sequence[FetchRecord],
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """PostgreSQL's body and row arrays: one row per key (last wins: one statement cannot
    change a row twice), each distinct body once with as many references as rows naming it;
    bodies in hash order, rows in key order (the order their locks were taken in)."""
    latest = {(r.appid, r.user_id, r.kind): r for r in records if r.body is not None}
    rows = [(latest[k], body_hash(str(latest[k].body))) for k in sorted(latest)]
    counts = Counter(digest for _, digest in rows)
    texts = {digest: str(r.body) for r, digest in rows}
    bodies = [(d, zlib.compress(texts[d].encode(), 1), counts[d]) for d in sorted(counts)]
    data = [(*_DATA_ROW(r)[:3], d, *_DATA_ROW(r)[3:]) for r, d in rows]
    return bodies, data


class _TargetRow(NamedTuple):
    appid: str
    url: str
    secret: str
    grey_url: str | None
    grey_ratio: int | None
    interval_s: float | None
    timeout_s: float | None
    headers: str | None
    active_days: float | None
    updated_at: float


@dataclass(frozen=True)
class _Target:
    """An app's periodic target for a claim: user id -> (url, secret, route), and its settings;
    ``updated_at``: when its URLs last changed."""

    pick: Callable[[str], tuple[str, str, str]]
    interval_s: float | None
    timeout_s: float | None
    headers: tuple[tuple[str, str], ...]
    active_days: float | None
    updated_at: float = 0.0


def _active(target: _Target, last_launch_at: float | None, now: float) -> bool:
    """The user launched within the app's own active-days window (when it has one)."""
    if target.active_days is None:
        return True
    return last_launch_at is not None and last_launch_at >= now - target.active_days * 86400.0


def _cursor(conn: Any) -> Any:
    """The DB-API cursor under an SQLAlchemy connection (for the batched hot paths)."""
    driver = conn.connection.driver_connection
    assert driver is not None
    return driver.cursor()


class FetchStore:
    def __init__(
        self,
        db: Database,
        openid: Callable[[str, str], str] | None = None,
        open_headers: Callable[[str], dict[str, str]] | None = None,
    ) -> None:
        self.db = db
        self.openid = openid  # for grey-release buckets (None: every user on the main URL)
        self.open_headers = open_headers  # an app's sealed headers -> the headers
        self._insert = dialect_insert(db.is_sqlite)
        same_token = "token IS ?" if db.is_sqlite else "token IS NOT DISTINCT FROM CAST(? AS TEXT)"
        self._sql = {
            k: db.sql(v.replace("{same_token}", same_token)) for k, v in _RECORD_SQL.items()
        }
        self._sql["launch"] = db.sql(_LAUNCH_SQL)
        self._sql["set_token"] = db.sql(_SET_TOKEN_SQL)
        # the pair's token before a change (PostgreSQL: locked, so a result being stored for the
        # previous token commits first and its body is dropped below, not left behind)
        self._sql["token_before"] = db.sql(
            "SELECT token FROM app_users WHERE appid = ? AND user_id = ?"
            + ("" if db.is_sqlite else " FOR UPDATE")
        )
        self._sql["drop_data"] = db.sql("DELETE FROM fetched_data WHERE appid = ? AND user_id = ?")
        self._sql["next_due"] = db.sql(_NEXT_DUE_SQL)
        self._sql["wake_free"] = db.sql(_WAKE_FREE_SQL)
        self._sql["wake_leased"] = db.sql(_WAKE_LEASED_SQL)
        self._sql["park_pair"] = db.sql(
            "UPDATE app_users SET next_due_at = NULL, lease_until = NULL"
            " WHERE appid = ? AND user_id = ?"
        )
        self._sql["fetchable"] = db.sql("SELECT " + _FETCHABLE.format(appid="?"))
        self._sql["claim"] = _CLAIM_SQLITE if db.is_sqlite else _CLAIM_POSTGRES
        self._sql["targets"] = _TARGETS_SQL.format(appids="= ANY(%s)")
        self._sql["urls"] = _URLS_SQL.format(appids="= ANY(%s)") + " FOR SHARE"
        self._sql["get_token"] = db.sql(
            "SELECT token FROM app_users WHERE appid = ? AND user_id = ?"
        )
        self._sql["get_data"] = db.sql(
            "SELECT b.body, f.fetched_at_ms, f.path, f.query, f.scene FROM fetched_data f"
            " JOIN bodies b ON b.hash = f.body_hash"
            " WHERE f.appid = ? AND f.user_id = ? AND f.kind = ?"
        )

    # --- users: launch and token ---
    def _upsert_user(self, conn: Any, appid: str, user_id: str, values: dict[str, Any]) -> None:
        stmt = self._insert(t.app_users).values(
            **{"failures": 0, **values, "appid": appid, "user_id": user_id}
        )
        conn.execute(stmt.on_conflict_do_update(index_elements=["appid", "user_id"], set_=values))

    def record_launch(self, appid: str, user_id: str, now: float) -> None:
        """A launch makes the user active; a user with no pending schedule is due at once."""
        with self.db.writing() as conn:
            self._launch(conn, appid, user_id, now)

    def write_batch(
        self, launches: Sequence[tuple[str, str, float]], records: Sequence[FetchRecord]
    ) -> None:
        """Launches and fetch results queued by the write-behind, in one transaction."""
        with self.db.writing() as conn:
            if not self.db.is_sqlite:  # the launches after the batch's pairs are locked
                self._record_pg(conn, records, (), launches)
                return
            if launches:
                self._launches(conn, launches)
            self._record(conn, records, ())

    def _launch(self, conn: Any, appid: str, user_id: str, now: float) -> None:
        self._launches(conn, [(appid, user_id, now)])

    def _launches(self, conn: Any, launches: Sequence[tuple[str, str, float]]) -> None:
        cursor = _cursor(conn)
        try:
            # in key order: alone, they lock the pairs in the global order (row_locks.py)
            rows = [(a, u, t, a, t) for a, u, t in sorted(launches)]
            cursor.executemany(self._sql["launch"], rows)
        finally:
            cursor.close()

    def set_version(self, appid: str, user_id: str, version: str, env_version: str) -> None:
        """The mini-program version a launch reported (periodic requests carry it)."""
        with self.db.writing() as conn:
            self._upsert_user(
                conn, appid, user_id, {"version": version, "env_version": env_version}
            )

    def set_token(self, appid: str, user_id: str, token: str, now: float) -> bool:
        """A new or changed token makes the pair due at once (it may have been waiting for it),
        if the user launched the app and it can be fetched periodically. One upsert, so a
        launch stored at the same moment (write-behind, another transaction on PostgreSQL)
        cannot be missed: whichever commits second sees the other's row.

        A changed token drops the pair's bodies, fetched with the previous one (another
        account's data, perhaps): until the new token's fetches land, a read finds no data
        rather than someone else's. A first token keeps them (the same user signing in after a
        launch: what the login code fetched is theirs). Returns whether the token changed so."""
        with self.db.writing() as conn:
            cursor = _cursor(conn)
            try:
                cursor.execute(self._sql["token_before"], (appid, user_id))
                before = cursor.fetchone()
                changed = before is not None and before[0] is not None and before[0] != token
                if changed:  # the rows and their bodies locked first (see row_locks.py)
                    f = t.fetched_data.c
                    lock_data(conn, f.appid == appid, f.user_id == user_id)
                    cursor.execute(self._sql["drop_data"], (appid, user_id))
                cursor.execute(self._sql["set_token"], (appid, user_id, token, appid, now))
                return changed
            finally:
                cursor.close()

    def _fetchable(self, conn: Any, appid: str) -> bool:
        cursor = _cursor(conn)
        try:
            cursor.execute(self._sql["fetchable"], (appid,))
            return bool(cursor.fetchone()[0])
        finally:
            cursor.close()

    def get_token(self, appid: str, user_id: str) -> str | None:
        row = self.db.fetch_one(self._sql["get_token"], (appid, user_id))
        return row[0] if row is not None else None

    def get_user(self, appid: str, user_id: str) -> dict[str, Any] | None:
        with self.db.reading() as conn:
            row = conn.execute(
                select(t.app_users).where(
                    and_(t.app_users.c.appid == appid, t.app_users.c.user_id == user_id)
                )
            ).first()
        return dict(row._mapping) if row is not None else None

    def wake_app(
        self, appid: str, now: float, also: Callable[[Connection], None] | None = None
    ) -> int:
        """After a change of the app's periodic URL: when it can be fetched, make the users who
        launched it and have a token due at once, for a full fetch (the old URL's validators
        would let the new URL answer 304 and keep the old URL's body); otherwise take all its
        pairs out of the due index. Pairs being fetched right now (leased) are not made due, so
        they are not fetched twice at once: their validators are dropped, and the record of a
        fetch from a URL that is no longer the app's makes the pair due then (see
        ``_for_current_urls``). A leased pair of a disabled app leaves the index at its next
        claim. Returns how many pairs were made due (or taken out). On PostgreSQL the app's pairs
        are locked first, in key order (see row_locks.py). ``also`` runs in the same
        transaction (the change recording its wake done)."""
        c = t.app_users.c
        leased = and_(c.lease_until.is_not(None), c.lease_until > now)
        with self.db.writing() as conn:
            lock_pairs(conn, c.appid == appid)
            if not self._fetchable(conn, appid):
                woken = conn.execute(
                    update(t.app_users)
                    .where(and_(c.appid == appid, c.next_due_at.is_not(None)))
                    .values(next_due_at=None)
                ).rowcount
            else:
                waking = and_(
                    c.appid == appid, c.token.is_not(None), c.last_launch_at.is_not(None)
                )
                conn.execute(
                    update(t.app_users)
                    .where(and_(waking, leased))
                    .values(etag=None, last_modified=None, validators_route=None)
                )
                woken = conn.execute(
                    update(t.app_users)
                    .where(and_(waking, or_(c.lease_until.is_(None), c.lease_until <= now)))
                    .values(next_due_at=now, failures=0, etag=None, last_modified=None)
                ).rowcount
            if also is not None:
                also(conn)
            return woken

    def moved_users(
        self,
        appid: str,
        before: UrlSettings,
        after: UrlSettings,
        after_user: str = "",
        limit: int = 5000,
    ) -> tuple[list[str], str | None]:
        """One chunk of a grey change's users: of the pairs a wake concerns (token set, app
        launched) whose user id sorts after ``after_user``, at most ``limit`` in user order (the
        primary key: keyset paging, the same cost at any depth), those the change moves to
        another URL (``url_moves``), and the last user id read (None: the last chunk). Read
        outside any write transaction: the wake's UPDATEs check the lease themselves."""
        c = t.app_users.c
        query = (
            select(c.user_id)
            .where(
                and_(
                    c.appid == appid,
                    c.user_id > after_user,
                    c.token.is_not(None),
                    c.last_launch_at.is_not(None),
                )
            )
            .order_by(c.user_id)
            .limit(limit)
        )
        with self.db.reading() as conn:
            users = [str(u) for (u,) in conn.execute(query)]
            testers = self._testers(conn, {appid}) if users else set()
        moves = functools.partial(self._moves, appid, before, after, testers)
        moved = [u for u in users if moves(u)]
        return moved, (users[-1] if len(users) == limit else None)

    def _moves(
        self,
        appid: str,
        before: UrlSettings,
        after: UrlSettings,
        testers: set[tuple[str, str]],
        user: str,
        tester_after: bool | None = None,
    ) -> bool:
        """Whether the change moves this user to another URL (the claim's bucket and testers;
        without openids every user is on the main URL, as in ``_serving``)."""
        if self.openid is None:
            return before.url != after.url or before.fetchable != after.fetchable
        bucket = grey_bucket(appid, self.openid(appid, user))
        tester = (appid, user) in testers
        return url_moves(before, after, bucket, tester=tester, tester_after=tester_after)

    def wake_users(
        self,
        appid: str,
        users: Sequence[str],
        now: float,
        also: Callable[[Connection], None] | None = None,
    ) -> int:
        """Users a grey change moved to another URL: due at once for a full fetch, as
        ``wake_app`` does for a whole app (leased pairs lose their validators only). A grey
        user kept by a promote (the same URL, now the main one) is not among them: its stored
        ``validators_route`` (grey) no longer matches the route its claims compute (main), and
        the promote moved ``updated_at``, so its next regular fetch sends no validators either
        way: never another URL's, and none mislabelled. Returns how many were made due.
        ``also`` runs in the same transaction (the change recording how far its wake got)."""
        if not users and also is None:
            return 0
        ordered = sorted(users)
        with self.db.writing() as conn:
            woken = 0
            if ordered:
                # two passes (leased, then free) would go back to lower keys: the users' pairs
                # are locked first, in key order (see row_locks.py)
                c = t.app_users.c
                lock_pairs(conn, c.appid == appid, c.user_id.in_(ordered))
                cursor = _cursor(conn)
                try:
                    leased = [(appid, u, now) for u in ordered]
                    cursor.executemany(self._sql["wake_leased"], leased)
                    free = [(now, appid, u, now) for u in ordered]
                    cursor.executemany(self._sql["wake_free"], free)
                    woken = int(cursor.rowcount)
                finally:
                    cursor.close()
            if also is not None:
                also(conn)
            return woken

    def wake_tester(
        self, appid: str, user_id: str, settings: UrlSettings, added: bool, now: float
    ) -> int:
        """A tester added or removed: the user is woken when that moves them to another URL
        (a grey URL that the share did not already serve them from, or back)."""
        was = set() if added else {(appid, user_id)}
        if not self._moves(appid, settings, settings, was, user_id, tester_after=added):
            return 0
        return self.wake_users(appid, [user_id], now)

    # --- periodic claiming ---
    def claim_due(
        self, now: float, active_since: float, lease_until: float, limit: int
    ) -> list[DueFetch]:
        """Lease up to ``limit`` due pairs. Pairs met on the way that can no longer be
        fetched (inactive user, app without an enabled periodic URL) leave the due index; an
        empty answer means nothing is due."""
        while True:
            met, claimed = self._claim_once(now, active_since, lease_until, limit)
            if claimed or met < limit:
                return claimed

    def _claim_once(
        self, now: float, active_since: float, lease_until: float, limit: int
    ) -> tuple[int, list[DueFetch]]:
        params = {"now": now, "active_since": active_since, "lease": lease_until, "limit": limit}
        with self.db.writing() as conn:
            cursor = _cursor(conn)
            try:
                cursor.execute(self._sql["claim"], params)
                met = cursor.fetchall()
            finally:
                cursor.close()
            rows = [r for r in met if r[7] is not None]  # the rest were parked: inactive
            if not rows:
                return len(met), []
            targets = self._targets(conn, {r[0] for r in rows})
            kept = [r for r in rows if r[0] in targets and _active(targets[r[0]], r[10], now)]
            stray = sorted({(r[0], r[1]) for r in rows} - {(r[0], r[1]) for r in kept})
            if stray:  # claimed, but no longer to be fetched: out of the due index
                self._park_pairs(conn, stray)
        claimed = []
        for r in kept:
            target = targets[r[0]]
            url, secret, route = target.pick(r[1])
            # validators only for the URL that gave them: the other URL's ETag could be a data
            # version it shares, and its 304 would keep this URL's data. So not when a route's URL
            # changed after the success that left them (``updated_at``; a ratio alone does not
            # move it: it changes routes, compared here too): a change confirmed between this claim
            # and the read of the targets (wake_app then finds the pair leased and cannot drop
            # them from this fetch) would send the old URL's ETag to the new one
            same = r[11] == route and r[6] is not None and r[6] >= target.updated_at
            claimed.append(
                DueFetch(
                    r[0],
                    r[1],
                    r[2],
                    r[3] if same else None,
                    r[4] if same else None,
                    r[5],
                    r[6],
                    url,
                    secret,
                    route,
                    target.interval_s,
                    target.timeout_s,
                    target.headers,
                    r[8] or "",
                    r[9] or "",
                )
            )
        return len(met), claimed

    def _targets(self, conn: Any, appids: set[str]) -> dict[str, _Target]:
        """Each of these apps that can be fetched periodically: its URL and secret with the grey
        release applied, and its fetch settings (headers opened from their sealed form)."""
        cursor = _cursor(conn)
        try:
            if self.db.is_sqlite:
                marks = ", ".join("?" * len(appids))
                cursor.execute(_TARGETS_SQL.format(appids=f"IN ({marks})"), sorted(appids))
            else:
                cursor.execute(self._sql["targets"], (sorted(appids),))
            rows = [_TargetRow(*r) for r in cursor.fetchall()]
        finally:
            cursor.close()
        grey_apps = {r.appid for r in rows if r.grey_url and self.openid is not None}
        testers = self._testers(conn, grey_apps)
        out: dict[str, _Target] = {}
        for r in rows:
            headers = self.open_headers(r.headers) if r.headers and self.open_headers else {}
            pick: Callable[[str], tuple[str, str, str]] = functools.partial(
                _main_target, (r.url, r.secret, "main")
            )
            if r.appid in grey_apps:
                pick = functools.partial(self._grey_target, r, testers)
            out[r.appid] = _Target(
                pick, r.interval_s, r.timeout_s, tuple(headers.items()), r.active_days,
                r.updated_at,
            )
        return out

    def _grey_target(
        self, r: Any, testers: set[tuple[str, str]], user: str
    ) -> tuple[str, str, str]:
        url, route = self._serving(r.appid, user, r.url, r.grey_url, r.grey_ratio, testers)
        return url, r.secret, route

    def _serving(
        self,
        appid: str,
        user: str,
        url: str,
        grey_url: str | None,
        grey_ratio: int | None,
        testers: set[tuple[str, str]],
    ) -> tuple[str, str]:
        """(url, route): which of the app's periodic URLs serves this user now."""
        if not grey_url or self.openid is None:
            return url, "main"
        bucket = grey_bucket(appid, self.openid(appid, user))
        tester = (appid, user) in testers
        return route_for(url, grey_url, grey_ratio or 0, bucket, tester=tester)

    @staticmethod
    def _testers(conn: Any, appids: set[str]) -> set[tuple[str, str]]:
        """(appid, user id) of the testers of these apps."""
        if not appids:
            return set()
        tc = t.app_testers.c
        query = select(tc.appid, tc.user_id).where(tc.appid.in_(sorted(appids)))
        return {(a, u) for a, u in conn.execute(query)}

    def _park_pairs(self, conn: Any, pairs: Sequence[tuple[str, str]]) -> None:
        cursor = _cursor(conn)
        try:
            cursor.executemany(self._sql["park_pair"], pairs)
        finally:
            cursor.close()

    def renew_leases(self, held: Sequence[tuple[str, str, float]], lease_until: float) -> int:
        """Extend the leases a worker still holds: (appid, user_id, the lease it set) for pairs
        claimed but not yet recorded. A pair whose lease is no longer that value (recorded, or
        claimed by another worker after it ran out) is left alone."""
        if not held:
            return 0
        c = t.app_users.c
        stmt = (
            update(t.app_users)
            .where(
                and_(
                    c.appid == bindparam("a"),
                    c.user_id == bindparam("u"),
                    c.lease_until == bindparam("old"),
                )
            )
            .values(
                lease_until=lease_until,
                # a pair made due meanwhile (a new token, a changed URL) stays due
                next_due_at=case(
                    (c.next_due_at == bindparam("old"), lease_until), else_=c.next_due_at
                ),
            )
        )
        with self.db.writing() as conn:
            # in key order, as a result batch locks its pairs: on PostgreSQL the two take the
            # same rows' locks one after the other, never each waiting for the other
            params = [{"a": a, "u": u, "old": old} for a, u, old in sorted(held)]
            return int(conn.execute(stmt, params).rowcount)

    def next_due_at(self, active_since: float) -> float | None:
        row = self.db.fetch_one(self._sql["next_due"], (active_since,))
        return float(row[0]) if row is not None else None

    def reschedule_app(self, appid: str, interval_s: float, now: float, spread_s: float) -> int:
        """After an app's interval changed: each pair scheduled for later is due its last
        success plus the new interval; pairs that are then overdue are spread over the next
        ``spread_s`` (by their last success time), so the change causes no burst. Pairs due
        already stay due (a URL change, a new token or a refresh made them due now: pushed to
        their regular time, they kept the old URL's body or no data for hours), and leased
        pairs are left alone."""
        c = t.app_users.c
        scheduled = and_(
            c.appid == appid,
            c.next_due_at > now,
            c.last_success_at.is_not(None),
            or_(c.lease_until.is_(None), c.lease_until <= now),
        )
        regular = c.last_success_at + interval_s
        spread = now + func.mod(cast(c.last_success_at, BigInteger), max(1, int(spread_s)))
        with self.db.writing() as conn:
            lock_pairs(conn, c.appid == appid)  # locked first (see row_locks.py)
            return int(
                conn.execute(
                    update(t.app_users)
                    .where(scheduled)
                    .values(next_due_at=case((regular < now, spread), else_=regular))
                ).rowcount
            )

    # --- results ---
    def record(
        self, records: Sequence[FetchRecord], schedule: Sequence[ScheduleUpdate] = ()
    ) -> list[FetchRecord]:
        """Store a batch of attempts in one transaction: log rows, accepted bodies, schedules.
        Returns the records as stored: a body fetched with a token that is no longer the pair's
        is not stored (see ``current_bodies``), and comes back as None (not to be pushed)."""
        with self.db.writing() as conn:
            return self._record(conn, records, schedule)

    def _tokens(
        self, cursor: Any, pairs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], str | None]:
        """The current token of each of these pairs (in the writing transaction: SQLite's is
        exclusive; PostgreSQL's locks the rows, in key order, so no token changes before the
        batch commits)."""
        if not pairs:
            return {}
        if not self.db.is_sqlite:
            cursor.execute(_TOKENS_PG, [[a for a, _ in pairs], [u for _, u in pairs]])
            return {(a, u): token for a, u, token in cursor.fetchall()}
        out: dict[tuple[str, str], str | None] = {}
        for start in range(0, len(pairs), 400):
            chunk = pairs[start : start + 400]
            values = ", ".join(["(?, ?)"] * len(chunk))
            cursor.execute(
                _TOKENS_SQLITE.format(values=values), [x for pair in chunk for x in pair]
            )
            out.update(((a, u), token) for a, u, token in cursor.fetchall())
        return out

    def _for_current_urls(
        self, conn: Any, cursor: Any, schedule: Sequence[ScheduleUpdate]
    ) -> list[ScheduleUpdate]:
        """``schedule`` with the fetches of a URL that no longer serves the user made due
        again at once, storing no validators: the URL changed while they were in flight
        (wake_app and wake_users leave pairs in flight alone), or the grey release did (a ratio
        lowered to roll it back, a tester removed) and moved the user to the other URL, so the
        pair must be fetched from its URL now, in full, not in an interval with the other URL's
        data and validators."""
        appids = sorted({u.appid for u in schedule if u.url is not None})
        if not appids:
            return list(schedule)
        if self.db.is_sqlite:
            marks = ", ".join("?" * len(appids))
            cursor.execute(_URLS_SQL.format(appids=f"IN ({marks})"), appids)
        else:
            cursor.execute(self._sql["urls"], (appids,))
        current = {row[0]: row[1:] for row in cursor.fetchall()}  # url, grey_url, grey_ratio
        testers = self._testers(conn, {a for a, (_, grey, _) in current.items() if grey})

        def serves(u: ScheduleUpdate) -> bool:
            if (urls := current.get(u.appid)) is None:
                return False
            url, grey_url, grey_ratio = urls
            return self._serving(u.appid, u.user_id, url, grey_url, grey_ratio, testers)[0] == u.url

        return [
            u
            if u.url is None or serves(u)
            else dataclasses.replace(
                u, next_due_at=u.last_attempt_at, failures=0, new_validators=False
            )
            for u in schedule
        ]

    def _record(
        self, conn: Any, records: Sequence[FetchRecord], schedule: Sequence[ScheduleUpdate]
    ) -> list[FetchRecord]:
        if not self.db.is_sqlite:
            return self._record_pg(conn, records, schedule)
        # The hot path of the engine: plain DB-API executemany with tuples, several times
        # cheaper per row than compiled Core statements (SQLite runs in-process: no round trips
        # to save).
        cursor = _cursor(conn)
        try:
            if records:
                cursor.executemany(self._sql["log"], [_LOG_ROW(r) for r in records])
            records = current_bodies(records, self._tokens(cursor, token_checked(records)))
            store_bodies(cursor, self._sql, records)
            schedule = self._for_current_urls(conn, cursor, schedule)
            failed = [
                (
                    s.token,
                    s.next_due_at,
                    s.token,
                    s.failures,
                    s.last_attempt_at,
                    s.last_error,
                    s.token,
                    s.appid,
                    s.user_id,
                )
                for s in schedule
                if s.last_success_at is None
            ]
            if failed:
                cursor.executemany(self._sql["failed"], failed)
            succeeded = [
                (
                    s.token,
                    s.next_due_at,
                    s.token,
                    s.failures,
                    s.last_attempt_at,
                    s.last_error,
                    s.token,
                    s.last_success_at,
                    s.new_validators,
                    s.token,
                    s.etag,
                    s.new_validators,
                    s.token,
                    s.last_modified,
                    s.new_validators,
                    s.token,
                    s.route,
                    s.appid,
                    s.user_id,
                )
                for s in schedule
                if s.last_success_at is not None
            ]
            if succeeded:
                cursor.executemany(self._sql["succeeded"], succeeded)
        finally:
            cursor.close()
        return records

    def _record_pg(
        self,
        conn: Any,
        records: Sequence[FetchRecord],
        schedule: Sequence[ScheduleUpdate],
        launches: Sequence[tuple[str, str, float]] = (),
    ) -> list[FetchRecord]:
        """The same writes as the SQLite path (and the write-behind's launches), one statement
        per kind, taking their locks in the global order (row_locks.py): the pairs first, in
        key order, then the data rows to be written and their bodies, those replaced included.
        The pairs are locked by the token read when a body's token is checked (with the
        launches' and the schedules' pairs); otherwise by the launches alone (written in key
        order) or by the schedule statement (it locks its pairs first). Bodies and schedules
        are taken last-wins per key (one statement cannot change a row twice; a schedule for
        the pair's current token wins over a previous token's)."""
        cursor = _cursor(conn)
        try:
            schedule = self._for_current_urls(conn, cursor, schedule)  # first: see _URLS_SQL
            checked = token_checked(records)
            moved = {(u.appid, u.user_id) for u in schedule}
            launched = {(a, u) for a, u, _ in launches}
            # one pass over the pairs: all at once when more than one statement writes them
            once = checked or (moved and launched)
            tokens = self._tokens(cursor, sorted({*checked, *moved, *launched} if once else ()))
            if launches:
                self._launches(conn, launches)
            records = current_bodies(records, tokens)
            bodies, data = _body_rows(records)
            moves = _latest_moves(schedule, tokens)
            if records:
                log = [_LOG_ROW(r) for r in records]
                cursor.execute(_RECORD_PG["log"], _columns(log, 12, floats=(4, 9)))
            if bodies:  # the bodies first: the triggers then never free a body still named
                _lock_bodies(cursor, bodies, data)
                cursor.execute(_RECORD_PG["body"], _columns(bodies, 3))
                cursor.execute(_RECORD_PG["data"], _columns(data, 8))
            if moves:
                rows = [moves[k] for k in sorted(moves)]
                kind = "schedule" if once else "schedule_locking"
                cursor.execute(_RECORD_PG[kind], _columns(rows, 12, floats=(3, 5, 7)))
        finally:
            cursor.close()
        return records

    # --- data ---
    def get_data(self, appid: str, user_id: str, kind: str) -> StoredData | None:
        row = self.db.fetch_one(self._sql["get_data"], (appid, user_id, kind))
        if row is None:
            return None
        return StoredData(body_text(row[0]), *row[1:])

    def clear_data(self, appid: str, user_id: str | None) -> int:
        """Drop cached bodies and validators (the next periodic fetch is a full one). On
        PostgreSQL the pairs, the rows and their bodies are locked first (see row_locks.py)."""
        with self.db.writing() as conn:
            cond = t.fetched_data.c.appid == appid
            ucond = t.app_users.c.appid == appid
            if user_id is not None:
                cond = and_(cond, t.fetched_data.c.user_id == user_id)
                ucond = and_(ucond, t.app_users.c.user_id == user_id)
            lock_pairs(conn, ucond)
            lock_data(conn, cond)
            count = conn.execute(delete(t.fetched_data).where(cond)).rowcount
            conn.execute(update(t.app_users).where(ucond).values(etag=None, last_modified=None))
            return count

    # --- log and health ---
    def list_log(
        self, appid: str, limit: int = 100, user_id: str | None = None
    ) -> list[dict[str, Any]]:
        query = select(t.fetch_log).where(t.fetch_log.c.appid == appid)
        if user_id is not None:
            query = query.where(t.fetch_log.c.user_id == user_id)
        with self.db.reading() as conn:
            rows = conn.execute(query.order_by(t.fetch_log.c.id.desc()).limit(limit)).all()
        return [dict(r._mapping) for r in rows]

    def health(self, appid: str, since: float) -> dict[str, Any]:
        c = t.fetch_log.c
        with self.db.reading() as conn:
            rows = conn.execute(
                select(c.kind, c.verdict, func.count(), func.avg(c.latency_ms), func.avg(c.bytes))
                .where(and_(c.appid == appid, c.ts >= since))
                .group_by(c.kind, c.verdict)
            ).all()
            by_route = conn.execute(
                select(c.kind, c.route, c.verdict, func.count())
                .where(and_(c.appid == appid, c.ts >= since, c.route.is_not(None)))
                .group_by(c.kind, c.route, c.verdict)
            ).all()
        out: dict[str, Any] = {}
        for kind, verdict, count, latency, size in rows:
            entry = out.setdefault(kind, {"total": 0, "ok": 0, "verdicts": {}, "routes": {}})
            entry["total"] += count
            if verdict in ("cached", "not_modified"):
                entry["ok"] += count
            entry["verdicts"][verdict] = {
                "count": count,
                "avg_latency_ms": latency,
                "avg_bytes": size,
            }
        for kind, route, verdict, count in by_route:  # which URL served: main or grey
            served = out[kind]["routes"].setdefault(route, {"total": 0, "ok": 0})
            served["total"] += count
            served["ok"] += count if verdict in ("cached", "not_modified") else 0
        for entry in out.values():
            for part in (entry, *entry["routes"].values()):
                part["success_rate"] = part["ok"] / part["total"] if part["total"] else None
        return out

    def prune_log(self, before: float) -> int:
        with self.db.writing() as conn:
            return conn.execute(delete(t.fetch_log).where(t.fetch_log.c.ts < before)).rowcount
