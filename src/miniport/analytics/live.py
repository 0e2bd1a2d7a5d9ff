"""What accepted events add to an app's real-time view, as pushed to the console (pure: no I/O).

A :class:`LiveDigest` collects the accepted batches of one app between two pushes and turns
them into one ``realtime`` message (:meth:`LiveDigest.message`), whatever the number of
batches and events::

    {"type": "realtime", "appid": "wx…",
     "minutes": [{"minute_ms": 1764460800000, "events": 12, "users": ["alice", "bob"]}, …],
     "users_cut": false,
     "latest": [{"time", "ts_ms", "received_ms", "event", "user", "page",
                 "$path", "$platform", "$scene", "$session"}, …],
     "received_ms": [first, last],
     "batches": [[received_ms, minute_ms, events, user], …]}

``minutes``: per minute of event time (``ts_ms`` // 60 000, the real-time report's minutes),
how many events the batches added and which users sent them (sorted; at most
:data:`USERS_PER_MINUTE` per minute: ``users_cut`` says some were left out). ``latest``: the
newest :data:`LATEST_KEEP` events received, in the real-time report's order (``received_ms``
newest first, then ``ts_ms``, then the event id) and shape (user ids as the report shows
them). ``received_ms``: when the first and the last batch of the message were received (the
console drops a message its own fetch already counted). ``batches``: the same counts by
receipt — events per ``(received_ms, minute, user)`` (``null`` past :data:`BATCHES_KEEP`
entries). A fetch of the real-time report counts exactly the batches received before its
``received_before_ms``; a message whose receipts span that instant (a push that was waiting
while the page fetched, or several nodes' pushes merged) is split there by the console: it adds
only the ``batches`` (and ``latest``) received from then on, so nothing is counted twice and
nothing is missed (with ``batches`` null it fetches again). ``resync``: a batch was accepted
whose contribution is not known (some of its events had been stored before): the console
fetches the view again rather than add what it cannot tell.

Counts are what the batches *added*: the console adds them to what it fetched. Events per
minute add up exactly (the fetch waits for the batches its node received before its instant
to be stored; a batch received by another node within milliseconds of the fetch and stored
after it is the one case left: it would be missed, not counted twice); active users are
exact for a user the console has seen in that minute
(by fetch or push) and otherwise counted once more (see the console's script)."""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from .ingest_rules import CheckedEvent
from .overview import LATEST_PROPS, iso_utc
from .system_props import DIMENSIONS

__all__ = [
    "BATCHES_KEEP",
    "LATEST_KEEP",
    "MINUTE_MS",
    "USERS_PER_MINUTE",
    "LiveDigest",
    "merge_messages",
    "well_formed",
]

LATEST_KEEP: Final = 5
BATCHES_KEEP: Final = 4000
USERS_PER_MINUTE: Final = 200
MINUTE_MS: Final = 60_000
_PROP_COLUMNS: Final = tuple(DIMENSIONS[name].column for name in LATEST_PROPS)


def _order(ev: CheckedEvent) -> tuple[int, str]:
    return ev.ts_ms, ev.uid


def _latest_order(item: tuple[int, int, str, str, CheckedEvent]) -> tuple[int, int, str]:
    return item[0], item[1], item[2]


@dataclass(slots=True)
class LiveDigest:
    """The accepted batches of one app not yet pushed."""

    minutes: dict[int, tuple[int, set[str]]] = field(default_factory=dict)
    latest: list[tuple[int, int, str, str, CheckedEvent]] = field(default_factory=list)
    """The newest events so far as (received_ms, ts_ms, uid, user, event): made into the
    report's rows only when the message is (most batches' events never reach one)."""
    users_cut: bool = False
    resync: bool = False
    """Something was accepted whose contribution is unknown: the console fetches again."""
    first_received_ms: int | None = None
    last_received_ms: int = 0
    batches: dict[tuple[int, int, str], int] | None = field(default_factory=dict)
    """Events by (received_ms, minute, user); None once past BATCHES_KEEP entries."""

    def add(self, user_id: str, received_ms: int, events: Sequence[CheckedEvent]) -> None:
        """One accepted batch of ``user_id``, received at ``received_ms``."""
        if not events:
            return
        if self.first_received_ms is None or received_ms < self.first_received_ms:
            self.first_received_ms = received_ms
        self.last_received_ms = max(self.last_received_ms, received_ms)
        counts: dict[int, int] = {}
        for ev in events:
            minute = ev.ts_ms // MINUTE_MS
            counts[minute] = counts.get(minute, 0) + 1
        for minute, n in counts.items():
            if self.batches is not None:
                key = (received_ms, minute, user_id)
                if key in self.batches or len(self.batches) < BATCHES_KEEP:
                    self.batches[key] = self.batches.get(key, 0) + n
                else:
                    self.batches = None
            events_before, users = self.minutes.get(minute, (0, set()))
            if user_id not in users:
                if len(users) < USERS_PER_MINUTE:
                    users.add(user_id)
                else:
                    self.users_cut = True
            self.minutes[minute] = (events_before + n, users)
        newest = [
            (received_ms, ev.ts_ms, ev.uid, user_id, ev)
            for ev in heapq.nlargest(LATEST_KEEP, events, key=_order)
        ]
        self.latest = heapq.nlargest(LATEST_KEEP, [*newest, *self.latest], key=_latest_order)

    @property
    def empty(self) -> bool:
        return not self.minutes and not self.resync

    def message(self, appid: str) -> dict[str, Any]:
        return {
            "type": "realtime",
            "appid": appid,
            "minutes": [
                {"minute_ms": m * MINUTE_MS, "events": n, "users": sorted(users)}
                for m, (n, users) in sorted(self.minutes.items())
            ],
            "users_cut": self.users_cut,
            "latest": [_entry(ev, user, received) for received, _, _, user, ev in self.latest],
            "received_ms": [self.first_received_ms, self.last_received_ms],
            "batches": None
            if self.batches is None
            else [[r, m * MINUTE_MS, n, u] for (r, m, u), n in sorted(self.batches.items())],
            "resync": self.resync,
        }


def _entry(ev: CheckedEvent, user_id: str, received_ms: int) -> dict[str, Any]:
    """One of the latest events, as the real-time report lists it."""
    entry: dict[str, Any] = {
        "time": iso_utc(ev.ts_ms),
        "ts_ms": ev.ts_ms,
        "received_ms": received_ms,
        "event": ev.event_name,
        "user": user_id,
        "page": ev.page,
    }
    for name, column in zip(LATEST_PROPS, _PROP_COLUMNS, strict=True):
        entry[name] = ev.extra.get(column)
    return entry


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def well_formed(message: Mapping[str, Any]) -> bool:
    """Whether ``message`` has the shape :meth:`LiveDigest.message` gives (what
    :func:`merge_messages` reads of it)."""
    minutes, latest, received = (message.get(k) for k in ("minutes", "latest", "received_ms"))
    if not (isinstance(minutes, list) and isinstance(latest, list)):
        return False
    if not (isinstance(received, list) and len(received) == 2 and _is_int(received[1])):
        return False
    if not (received[0] is None or _is_int(received[0])):
        return False
    for entry in minutes:
        if not (isinstance(entry, dict) and _is_int(entry.get("minute_ms"))):
            return False
        if not (_is_int(entry.get("events")) and isinstance(entry.get("users"), list)):
            return False
    for entry in latest:
        if not (isinstance(entry, dict) and _is_int(entry.get("received_ms"))):
            return False
        if not _is_int(entry.get("ts_ms")):
            return False
    batches = message.get("batches")
    if batches is not None:
        if not isinstance(batches, list):
            return False
        for item in batches:
            if not (isinstance(item, list) and len(item) == 4 and isinstance(item[3], str)):
                return False
            if not all(_is_int(v) for v in item[:3]):
                return False
    return isinstance(message.get("users_cut"), bool) and isinstance(message.get("resync"), bool)


def _newest_first(entry: Mapping[str, Any]) -> tuple[int, int]:
    return int(entry["received_ms"]), int(entry["ts_ms"])


def merge_messages(appid: str, messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several ``realtime`` messages of one app (from several nodes, within one interval) as
    one that says what they said together: events per minute added up, users per minute
    joined (at most :data:`USERS_PER_MINUTE`), the newest :data:`LATEST_KEEP` events, the
    first and last receipt, the batches joined (null if any was, or past
    :data:`BATCHES_KEEP`), ``users_cut`` and ``resync`` if any said so. KeyError, TypeError
    or ValueError for a message not of that shape."""
    if len(messages) == 1:
        return dict(messages[0])
    minutes: dict[int, tuple[int, set[str]]] = {}
    batches: dict[tuple[int, int, str], int] | None = {}
    latest: list[Mapping[str, Any]] = []
    firsts: list[int] = []
    lasts: list[int] = []
    cut = resync = False
    for message in messages:
        for entry in message["minutes"]:
            minute = int(entry["minute_ms"])
            events, users = minutes.get(minute, (0, set()))
            for user in entry["users"]:
                if len(users) < USERS_PER_MINUTE:
                    users.add(str(user))
                elif user not in users:
                    cut = True
            minutes[minute] = (events + int(entry["events"]), users)
        latest.extend(message["latest"])
        detail = message.get("batches")
        if detail is None or batches is None:
            batches = None
        else:
            for received, minute_ms, n, user in detail:
                key = (int(received), int(minute_ms), str(user))
                batches[key] = batches.get(key, 0) + int(n)
            if len(batches) > BATCHES_KEEP:
                batches = None
        first, last = message["received_ms"]
        if first is not None:
            firsts.append(int(first))
            lasts.append(int(last))
        cut = cut or bool(message["users_cut"])
        resync = resync or bool(message["resync"])
    return {
        "type": "realtime",
        "appid": appid,
        "minutes": [
            {"minute_ms": m, "events": n, "users": sorted(users)}
            for m, (n, users) in sorted(minutes.items())
        ],
        "users_cut": cut,
        "latest": [dict(e) for e in heapq.nlargest(LATEST_KEEP, latest, key=_newest_first)],
        "received_ms": [min(firsts), max(lasts)] if firsts else [None, 0],
        "batches": None
        if batches is None
        else [[r, m, n, u] for (r, m, u), n in sorted(batches.items())],
        "resync": resync,
    }
