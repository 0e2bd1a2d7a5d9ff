"""The Python runtime's side of custom analytics: ``reportAnalytics`` / ``reportEvent``, the
codeless evaluator driven by the host container's page-lifecycle and click calls, batching,
an offline queue on disk and retries.

:class:`RuntimeAnalytics` belongs to a :class:`~miniport.runtime.client.RuntimeClient` (its
``analytics`` attribute; the client also exposes every method below under the same name). It
reaches the server only through the :class:`~miniport.runtime.transport.AnalyticsTransport`
the client gives it::

    client = RuntimeClient(url, appid, token, analytics_queue_path="analytics.jsonl")
    await client.launch()                      # fetches the analytics config, runs `launch`
    await client.connect()                     # test / published configs arrive live
    client.page_load("pages/list/list", {"goods": [{"price": 5}, {"price": 9}]})
    client.page_show("pages/list/list")
    client.click("pages/list/list", {"classes": ["buy"], "dataset": {"color": "red"},
                                      "indexes": [1]})
    client.report_analytics("purchase", {"price": 120, "color": "red"})
    await client.close()                       # a last flush; what is left stays queued

Reports are queued with an id made here (uuid4 hex) and the client time ``ts`` (ms), and
sent in batches (``{"sent_at", "events": [...]}``) when ``batch_size`` are waiting, every
``flush_interval_s``, at ``launch`` and on ``close``. The server's answer decides a batch's
fate (:func:`outcome_of`; the same table as the JavaScript runtime's, in docs/analytics.md and
``vectors/report_status.json``):

- answered (2xx with a JSON object): done; its events were stored, were duplicates of stored
  ones, or were refused one by one (``rejected`` keeps the reasons, ``on_rejected`` listeners
  get them);
- not delivered, or not allowed with this token yet (no network, a timeout, an answer that is
  not JSON, 401, 403, 408, 409, 429, 5xx): it stays queued and is retried with exponential
  backoff and jitter (:func:`backoff`: ``retry_base_s`` doubling up to ``retry_max_s``, each
  wait drawn between half and all of it; after a 429 or 503 at least the answer's
  ``Retry-After``, capped at ``retry_max_s``), with the same ids, so the server stores each
  event once even when an answer was lost, and with the client's ``token`` in force then (a 401
  or 403 needs a new token: set ``client.token``);
- too large (413): sent again at once in halves (one event alone is refused);
- any other 4xx (404 no such app, 422 a batch that cannot be read): refused as a whole, which
  sending it again cannot change; its events go to ``rejected`` and the queue goes on.

A custom event names the published version it was recorded under (``"v"``; none under a
test): the platform checks it against that version when the version in force by the time it
arrives refuses it (a field or an event dropped meanwhile), so events queued offline, or
recorded before a publish reached the device, are not lost to it.

With ``queue_path`` the queue is also a file (JSON lines: each queued event, each
acknowledgement, and the last configuration received), so reports survive a restart of the
host and are sent by the next client that opens the same file. The file is compacted when
acknowledgements outnumber what is still queued. Several processes may share one file: writes
hold a lock (``<path>.lock``, POSIX ``flock``) and a compaction starts from what the file
holds, so none erases another's queued events (see :class:`OfflineQueue`).

System properties and built-in events: the host's ``system`` (``{"$platform": "ios",
"$model": ...}``, keys named with a ``$``; ``$sdk_version`` defaults to Miniport's version) goes
with every batch as its ``"context"``, together with the current ``$session`` and ``$scene``;
each event also carries the ``$session`` / ``$scene`` it happened in as its own ``context``
(the platform lets an event's keys override the batch's). The page-lifecycle calls report the
built-in events ``$launch``, ``$show``, ``$hide``, ``$pageview`` and ``$pageleave`` (rules in
:mod:`miniport.runtime.lifecycle`) unless ``builtin_events=False`` or the app's configuration
says ``"builtin_events": false``; the session is kept either way.

Element descriptions for :meth:`RuntimeAnalytics.click` are mappings with ``id`` (the
element's id), ``classes`` (its class names), ``dataset`` (its ``data-*`` attributes, camel
case keys) and ``indexes`` (its positions in enclosing lists, outermost first)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from .. import __version__
from ..analytics.evaluator import Evaluator
from .lifecycle import BuiltinEvent, Lifecycle
from .transport import AnalyticsTransport, RuntimeAPIError

try:
    import fcntl
except ImportError:  # not POSIX: the queue file is not locked against other processes
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("miniport.runtime.analytics")
Listener = Callable[[dict[str, Any]], Any]
EMPTY_CONFIG: dict[str, Any] = {"version": 0, "fields": [], "events": [], "test_id": None}
MAX_BATCH = 500  # events per request (the server takes up to 1000)
MAX_BATCH_BYTES = 900_000  # of events, UTF-8: the server takes 1,000,000 a request
RETRYABLE = frozenset({0, 401, 403, 408, 409, 429})  # and every 5xx: see outcome_of
RETRY_AFTER_STATUSES = frozenset({429, 503})  # whose Retry-After is honoured


def outcome_of(status: int) -> Literal["retry", "split", "drop"]:
    """What becomes of a batch the server answered with an error ``status`` (0: no answer,
    or one that is not JSON): ``"retry"``, ``"split"`` or ``"drop"``. The table (also the
    JavaScript runtime's ``outcomeOf``; docs/analytics.md, ``vectors/report_status.json``):

    - retry (keep the batch, same ids, with a backoff): not delivered (0, 408, 5xx: a proxy's,
      or the event store unreachable), asked again (409 "send it again", 429), or not allowed
      with this token (401: missing, expired or revoked; 403: minted for another app): the
      events are fine, and a new token sends them;
    - split (413): over the server's request size; smaller batches fit;
    - drop: any other 4xx (404 no such app, 422 a batch that cannot be read): sending the same
      again cannot change it, and it must not hold up what waits behind it."""
    if status in RETRYABLE or status >= 500:
        return "retry"
    return "split" if status == 413 else "drop"


def backoff(
    previous: float, first: float, longest: float, retry_after: float | None,
    rand: Callable[[], float],
) -> tuple[float, float]:  # fmt: skip
    """The next retry after a failure: ``(delay, wait)``, in the callers' unit. ``delay`` doubles
    from ``first`` (``previous``: the last one, 0 for none) up to ``longest``; the wait is drawn
    between half and all of it with ``rand()`` in [0, 1) ("equal jitter"), so 10,000 devices
    that failed at the same moment come back spread out rather than in synchronized waves. A
    ``retry_after`` (an answer's ``Retry-After``), capped at ``longest`` so a hostile or broken
    proxy cannot park a device for a day, is the least wait, and makes the delay at least twice
    it (the wait is then spread between it and twice it); the doubling goes on from there. The
    JavaScript runtime's ``backoff`` is the same function (``vectors/report_status.json``)."""
    floor = min(max(retry_after or 0.0, 0.0), longest)
    delay = min(longest, max(previous * 2 if previous else first, 2 * floor))
    share = min(max(rand(), 0.0), 1.0)
    return delay, max(floor, delay / 2 + delay / 2 * share)


def system_properties(system: Mapping[str, Any] | None) -> dict[str, Any]:
    """The host's system properties as sent: ``$``-named keys with a string, number or bool
    value (anything else is left out), ``$sdk_version`` defaulting to Miniport's version."""
    out: dict[str, Any] = {"$sdk_version": __version__}
    for key, value in (system or {}).items():
        if not isinstance(key, str) or not key.startswith("$"):
            continue
        if isinstance(value, (str, bool, int)) or (
            isinstance(value, float) and value == value and abs(value) != float("inf")
        ):
            out[key] = value
    return out


class OfflineQueue:
    """Queued events in memory and, with a path, in an append-only JSON-lines file.

    Several processes may share the file (hosts given the same path): every write holds an
    exclusive lock on ``<path>.lock`` (POSIX ``flock``), reopens the file when another process
    has rewritten it, and a rewrite (compaction) starts from what the file holds, not from this
    process's memory, so no process erases another's queued events. Each process sends what it
    queued (and what it found at its start, which another may send too: the server stores an
    event once)."""

    def __init__(self, path: str | os.PathLike[str] | None, max_events: int = 10_000) -> None:
        self.path = Path(path) if path else None
        self.max_events = max_events
        self.events: dict[str, dict[str, Any]] = {}
        self.config: dict[str, Any] | None = None
        self.dropped = 0
        self._acked_lines = 0
        self._stale_lines = 0  # lines of events dropped as the oldest, still in the file
        self._file: Any = None
        self._lock: Any = None
        self._unsaved = False  # a write failed: the next rewrite adds this process's queue
        if self.path is not None:
            if fcntl is not None:
                try:
                    self._lock = self.path.with_name(self.path.name + ".lock").open("a")
                except OSError as exc:
                    log.warning("cannot lock the analytics queue %s: %s", self.path, exc)
            self._load()  # (compacts the file, which opens it)
            if self._file is None:
                with self._locked():
                    self._file = self.path.open("a", encoding="utf-8")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the queue file against other processes (no-op without ``fcntl``)."""
        if self._lock is None or fcntl is None:
            yield
            return
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)

    def _read(self) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None, int] | None:
        """What the file holds now: the events still queued, the last configuration, and how
        many acknowledgement lines; None when it cannot be read (no file: nothing queued)."""
        assert self.path is not None
        events: dict[str, dict[str, Any]] = {}
        config: dict[str, Any] | None = None
        acked = 0
        try:
            # split on newlines only: splitlines() also cuts at U+2028, U+2029 and U+0085,
            # which json.dumps(ensure_ascii=False) leaves in an event's text: the event was
            # read as two broken lines and lost at the next start
            lines = self.path.read_text(encoding="utf-8").split("\n")
        except FileNotFoundError:
            return events, config, acked
        except OSError as exc:
            log.warning("cannot read the analytics queue %s: %s", self.path, exc)
            return None
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash
            if not isinstance(entry, dict):
                continue
            if isinstance(entry.get("event"), dict) and isinstance(entry["event"].get("id"), str):
                events[entry["event"]["id"]] = entry["event"]
            elif isinstance(entry.get("ack"), list):
                for uid in entry["ack"]:
                    events.pop(str(uid), None)
                acked += 1
            elif isinstance(entry.get("config"), dict):
                config = entry["config"]
        return events, config, acked

    def _load(self) -> None:
        assert self.path is not None
        with self._locked():
            if not self.path.exists():
                return
            found = self._read()
            if found is None:
                return
            self.events, self.config, self._acked_lines = found
            self._trim()
            self._rewrite(self.events, self.config)

    def _reopen_if_replaced(self) -> None:
        """Another process rewrote the file (a new one took its name): append to that one."""
        if self.path is None:
            return
        try:
            now = os.stat(self.path)
            if self._file is not None:
                held = os.fstat(self._file.fileno())
                if (held.st_ino, held.st_dev) == (now.st_ino, now.st_dev):
                    return
        except OSError:
            pass  # no file under the name any more: open (create) it
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(OSError):
            self._file = self.path.open("a", encoding="utf-8")

    def _write(self, entry: dict[str, Any]) -> None:
        if self.path is None:
            return
        with self._locked():
            self._reopen_if_replaced()
            try:
                if self._file is None:
                    raise OSError("the file could not be opened")
                self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
                self._file.flush()
            except OSError as exc:
                self._unsaved = True
                log.warning("cannot write the analytics queue %s: %s", self.path, exc)

    def _trim(self) -> None:
        while len(self.events) > self.max_events:  # the oldest go first
            self.events.pop(next(iter(self.events)))
            self.dropped += 1

    def add(self, event: dict[str, Any]) -> None:
        self.events[event["id"]] = event
        self._write({"event": event})
        if len(self.events) > self.max_events:
            before = len(self.events)
            self._trim()
            # the file is rewritten once the lines of dropped events make up a third of it,
            # not at every add past the limit (each rewrote the whole queue: 0.1 s a report
            # at 10,000 events); a start reading them trims the same oldest ones
            self._stale_lines += before - len(self.events)
            if self._stale_lines > max(100, self.max_events // 2):
                self._compact()

    def ack(self, ids: list[str]) -> None:
        for uid in ids:
            self.events.pop(uid, None)
        self._write({"ack": ids})
        self._acked_lines += 1
        if self._acked_lines > 100 and self._acked_lines > len(self.events) // 50:
            self._compact()

    def remember_config(self, config: dict[str, Any]) -> None:
        """Keep the configuration (offline starts use it): written only when it changed (each
        launch and each stream reconnect refreshes it), and its lines count towards the
        compaction as acknowledgements do, or the file grew by a whole configuration at every
        refresh, for good."""
        if config == self.config:
            return
        self.config = config
        self._write({"config": config})
        self._acked_lines += 1
        if self._acked_lines > 100 and self._acked_lines > len(self.events) // 50:
            self._compact()

    def _compact(self) -> None:
        """Rewrite the file with what is still queued (and the last configuration): what the
        file holds, other processes' events too (not this process's memory, which also has
        events another process sent since, if it found them at its start), at most
        ``max_events``, the oldest dropped. After a write failed, what of this process's
        queue the file lacks is added."""
        if self.path is None:
            return
        with self._locked():
            found = self._read()
            if found is None:
                return
            events = found[0]
            if self._unsaved:
                for uid, event in self.events.items():
                    events.setdefault(uid, event)
            for uid in list(events)[: max(0, len(events) - self.max_events)]:
                del events[uid]
            self._rewrite(events, found[1] if found[1] is not None else self.config)

    def _rewrite(
        self, events: dict[str, dict[str, Any]], config: dict[str, Any] | None = None
    ) -> None:
        """Replace the file with ``events`` and ``config`` (the lock held)."""
        assert self.path is not None
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with tmp.open("w", encoding="utf-8") as out:
                if config is not None:
                    out.write(json.dumps({"config": config}, ensure_ascii=False) + "\n")
                for event in events.values():
                    out.write(json.dumps({"event": event}, ensure_ascii=False) + "\n")
            if self._file is not None:
                self._file.close()
                self._file = None
            os.replace(tmp, self.path)
            self._acked_lines = self._stale_lines = 0
            self._unsaved = False
        except OSError as exc:
            log.warning("cannot compact the analytics queue %s: %s", self.path, exc)
        finally:
            if self._file is None:
                with contextlib.suppress(OSError):
                    self._file = self.path.open("a", encoding="utf-8")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self.path = None  # closed: nothing more is written


class RuntimeAnalytics:
    def __init__(
        self,
        transport: AnalyticsTransport,
        appid: str,
        *,
        queue_path: str | os.PathLike[str] | None = None,
        batch_size: int = 50,
        flush_interval_s: float = 5.0,
        retry_base_s: float = 1.0,
        retry_max_s: float = 60.0,
        max_queue: int = 10_000,
        clock: Callable[[], float] | None = None,
        app_data: Mapping[str, Any] | None = None,
        new_id: Callable[[], str] | None = None,
        system: Mapping[str, Any] | None = None,
        builtin_events: bool = True,
        session_timeout_s: float = 30 * 60,
        rand: Callable[[], float] | None = None,
    ) -> None:
        """``rand``: the backoff's random source, a number in [0, 1) (default
        ``random.random``; tests give their own)."""
        self.transport = transport
        self.appid = appid
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.flush_interval_s = flush_interval_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self._clock = clock or time.time
        self._rand = rand or random.random
        self._new_id = new_id or (lambda: uuid.uuid4().hex)
        self.queue = OfflineQueue(queue_path, max_queue)
        self.config: dict[str, Any] = dict(self.queue.config or EMPTY_CONFIG)
        self.evaluator = Evaluator(self.config, app_data)
        self.rejected: deque[dict[str, Any]] = deque(maxlen=200)
        self._rejected_listeners: list[Listener] = []
        self._config_listeners: list[Listener] = []
        self._config_seq = 0
        self._send_lock: asyncio.Lock | None = None
        self._timer: asyncio.Task[None] | None = None
        self._kick: asyncio.Event | None = None
        self._retry_at = 0.0
        self._retry_delay = 0.0
        self._retry_wait = 0.0
        self._max_batch_bytes = MAX_BATCH_BYTES  # lowered by a 413
        self._closed = False
        self.system = system_properties(system)
        self.builtin_option = builtin_events
        self.lifecycle = Lifecycle(self._new_id, round(session_timeout_s * 1000))

    # --- configuration ---
    @property
    def test_id(self) -> str | None:
        """The running test whose configuration this device has, if any."""
        value = self.config.get("test_id")
        return value if isinstance(value, str) else None

    def recorded_under(self) -> dict[str, int]:
        """``{"v": version}``: the published version an event queued now is recorded under,
        which the platform checks it against when the version in force by then refuses it (a
        field dropped meanwhile: queued offline, or sent before the publish reached this
        device); ``{}`` under a test, or with none published."""
        version = self.config.get("version")
        if self.test_id is None and type(version) is int and version > 0:
            return {"v": version}
        return {}

    def on_config(self, listener: Listener) -> None:
        """Called with each configuration applied (fetched or pushed)."""
        self._config_listeners.append(listener)

    def on_rejected(self, listener: Listener) -> None:
        """Called with ``{"id", "index", "reason", "code", "event"}`` for each refused event."""
        self._rejected_listeners.append(listener)

    def _apply(self, config: dict[str, Any]) -> None:
        self.config = config
        self.evaluator.set_config(config)
        self.queue.remember_config(config)
        for listener in list(self._config_listeners):
            _call(listener, config)

    async def refresh_config(self) -> dict[str, Any]:
        """Fetch the configuration in force for this device (a test's, or the published one).
        A failure keeps the current one (the last one received, also across restarts)."""
        seq = self._config_seq
        try:
            config = await self.transport.get_config()
        except Exception as exc:
            log.info("analytics config not refreshed: %s", exc)
            return self.config
        if seq == self._config_seq:  # nothing newer was pushed meanwhile
            self._config_seq += 1
            self._apply(config)
        return self.config

    def on_config_message(self, message: dict[str, Any]) -> None:
        """An ``analyticsConfig`` message of the event stream: a test started or stopped, or
        a new version published."""
        if message.get("appid") != self.appid or not isinstance(message.get("config"), dict):
            return
        self._config_seq += 1
        self._apply(message["config"])

    # --- reporting ---
    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _queue(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Queue ``event`` as it will be sent (:func:`sendable`); None, logged, when it cannot
        be sent at all (it would have failed every later send, holding up the queue)."""
        try:
            event = sendable(event)
        except ValueError as exc:
            log.error("analytics event %r not queued: %s", event.get("event"), exc)
            return None
        self.queue.add(event)
        self._schedule()
        return event

    def report_analytics(self, event_name: str, data: Mapping[str, Any] | None = None) -> str:
        """``wx.reportAnalytics``: queue a report of an event by name; returns its id."""
        return self._report(event_name, data)

    def report_event(self, event_id: int | str, data: Mapping[str, Any] | None = None) -> str:
        """``wx.reportEvent``: queue a report of an event by its numeric id; returns its id."""
        return self._report(event_id, data)

    def _report(self, event: int | str, data: Mapping[str, Any] | None) -> str:
        """A report from code: ``ValueError`` (nothing queued) when JSON cannot carry it (a
        datetime, a set, NaN...), so the caller hears it where the mistake is."""
        ts = self._now_ms()
        entry = {
            "id": self._new_id(),
            "event": event,
            "data": dict(data or {}),
            "ts": ts,
            # where it was reported, as the JavaScript runtime sends it (test view, user events)
            "page": self.evaluator.current_page(),
            "trigger": None,
            "action": None,
        }
        context = self.lifecycle.context(ts)
        queued = sendable({**entry, "context": context, **self.recorded_under()})
        self.queue.add(queued)
        self._schedule()
        return str(queued["id"])

    def update_system(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """The host reports a change (``{"$network": "4g"}``): later batches carry it."""
        self.system.update({k: v for k, v in system_properties(changes).items() if k in changes})
        return dict(self.system)

    @property
    def builtin_enabled(self) -> bool:
        """Built-in events are reported: the option and the app's configuration allow them."""
        return self.builtin_option and self.config.get("builtin_events") is not False

    def _builtin(self, events: list[BuiltinEvent]) -> list[dict[str, Any]]:
        if not events or not self.builtin_enabled:
            return []
        queued = (
            self._queue(
                {
                    "id": self._new_id(),
                    "event": ev.event,
                    "data": ev.data,
                    "ts": ev.t,
                    "page": ev.page,
                    "trigger": None,
                    "action": None,
                    "context": self.lifecycle.context(ev.t),
                }
            )
            for ev in events
        )
        return [q for q in queued if q is not None]

    def _emitted(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        queued = []
        recorded = self.recorded_under()
        for ev in events:
            one = self._queue(
                {
                    "id": self._new_id(),
                    "event": ev["event"],
                    "data": ev["data"],
                    "ts": int(ev["t"]),
                    "page": ev["page"] or None,
                    "trigger": ev["trigger"],
                    "action": ev["action"],
                    "context": self.lifecycle.context(int(ev["t"])),
                    **recorded,
                }
            )
            if one is not None:
                queued.append(one)
        return queued

    # --- the host container's calls (each returns the events it queued, built-in first) ---
    def launch(
        self, path: str = "", query: Any = None, scene: int | None = None
    ) -> list[dict[str, Any]]:
        """A cold (the first) or warm launch, with where it opened."""
        now = self._now_ms()
        queued = self._builtin(self.lifecycle.launch(now, path, query, scene))
        return queued + self._emitted(self.evaluator.launch(now))

    def page_load(
        self, page: str, data: Mapping[str, Any] | None = None, query: Any = None
    ) -> list[dict[str, Any]]:
        """``query``: the page's query (for its ``$pageview``)."""
        self.lifecycle.page_load(page, query)
        return self._emitted(self.evaluator.page_load(self._now_ms(), page, data))

    def page_show(self, page: str, query: Any = None) -> list[dict[str, Any]]:
        now = self._now_ms()
        queued = self._builtin(self.lifecycle.page_show(now, page, query))
        return queued + self._emitted(self.evaluator.page_show(now, page))

    def page_hide(self, page: str) -> list[dict[str, Any]]:
        now = self._now_ms()
        queued = self._emitted(self.evaluator.page_hide(now, page))
        return queued + self._builtin(self.lifecycle.page_leave(now, page))

    def page_unload(self, page: str) -> list[dict[str, Any]]:
        now = self._now_ms()
        queued = self._emitted(self.evaluator.page_unload(now, page))
        return queued + self._builtin(self.lifecycle.page_leave(now, page))

    def click(self, page: str, element: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        return self._emitted(self.evaluator.click(self._now_ms(), page, element))

    def switch_tab(self, page: str) -> list[dict[str, Any]]:
        return self._emitted(self.evaluator.switch_tab(self._now_ms(), page))

    def pull_down_refresh(self, page: str) -> list[dict[str, Any]]:
        return self._emitted(self.evaluator.pull_down_refresh(self._now_ms(), page))

    def background(self) -> list[dict[str, Any]]:
        now = self._now_ms()
        queued = self._emitted(self.evaluator.background(now))
        return queued + self._builtin(self.lifecycle.hide(now))

    def foreground(self) -> list[dict[str, Any]]:
        now = self._now_ms()
        queued = self._builtin(self.lifecycle.show(now))
        return queued + self._emitted(self.evaluator.foreground(now))

    def share(self, page: str | None = None) -> list[dict[str, Any]]:
        return self._emitted(self.evaluator.share(self._now_ms(), page))

    def set_page_data(self, page: str, data: Mapping[str, Any]) -> None:
        """``Page.setData``: shallow-merge top-level keys into the page's data."""
        self.evaluator.set_data(self._now_ms(), page, data)

    def set_app_data(self, data: Mapping[str, Any]) -> None:
        """Primitive values of the app instance (``$APP.key``), shallow-merged."""
        self.evaluator.set_app_data(self._now_ms(), data)

    # --- sending ---
    @property
    def pending(self) -> list[dict[str, Any]]:
        """Events queued and not yet acknowledged by the server."""
        return list(self.queue.events.values())

    def flush_soon(self) -> None:
        """Have the timer send what is queued now (unless it is backing off)."""
        self._schedule(now=bool(self.queue.events))

    def _schedule(self, now: bool = False) -> None:
        """Start the flush timer, and wake it when a batch is full."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the next flush() or launch sends them
        if self._closed:
            return
        if self._timer is None or self._timer.done():
            self._kick = asyncio.Event()
            self._timer = loop.create_task(self._run_timer())
        if (now or len(self.queue.events) >= self.batch_size) and self._kick is not None:
            self._kick.set()

    async def _run_timer(self) -> None:
        assert self._kick is not None
        kick = self._kick
        while not self._closed:
            wait = self.flush_interval_s
            if self._retry_at:
                wait = max(0.0, self._retry_at - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(kick.wait(), wait)
            kick.clear()
            if self._retry_at and time.monotonic() < self._retry_at:
                continue  # backing off: a full batch waits for the retry time
            if self.queue.events:
                try:
                    await self.flush()
                except Exception:  # the timer must outlive any one failure (it backs off)
                    log.exception("sending analytics events failed")
                    self._back_off()

    async def flush(self) -> dict[str, Any]:
        """Send everything queued when this call gets its turn (one flush at a time), in
        batches. Returns what the server said of them, ``{"accepted", "duplicates",
        "rejected": [...], "pending"}``; on a delivery failure what is left stays queued
        (and ``"error"`` says why)."""
        if self._send_lock is None:
            self._send_lock = asyncio.Lock()
        total: dict[str, Any] = {"accepted": 0, "duplicates": 0, "rejected": []}
        async with self._send_lock:
            # what is queued now (events queued meanwhile go with the next flush)
            waiting = list(self.queue.events)
            while waiting:
                chunk, waiting = _next_batch(self.queue.events, waiting, self._max_batch_bytes)
                if not chunk:
                    continue
                try:
                    result = await self._send(chunk)
                except _Undelivered as exc:
                    self._back_off(exc.retry_after_s)
                    total["error"] = str(exc)
                    break
                except _TooLarge as exc:
                    if len(chunk) > 1:  # at once again, from now on at most half of this one
                        self._max_batch_bytes = max(1, _batch_bytes(chunk) // 2)
                        waiting = [str(e["id"]) for e in chunk] + waiting
                        continue
                    result = _refused(chunk, exc.error)  # one event alone: never taken
                self._retry_at, self._retry_delay, self._retry_wait = 0.0, 0.0, 0.0
                total["accepted"] += int(result.get("accepted", 0))
                total["duplicates"] += int(result.get("duplicates", 0))
                for rejection in result.get("rejected", []):
                    index = rejection.get("index")
                    shown = {**rejection}
                    if isinstance(index, int) and 0 <= index < len(chunk):
                        shown["event"] = chunk[index].get("event")
                    total["rejected"].append(shown)
                    self.rejected.append(shown)
                    log.warning("analytics event refused: %s", shown.get("reason"))
                    for listener in list(self._rejected_listeners):
                        _call(listener, shown)
                self.queue.ack([str(e["id"]) for e in chunk])
        total["pending"] = len(self.queue.events)
        return total

    async def _send(self, chunk: list[dict[str, Any]]) -> dict[str, Any]:
        now = self._now_ms()
        context = {**self.system, **self.lifecycle.context(now)}
        body = {"sent_at": now, "context": context, "events": chunk}
        try:
            return await self.transport.send_events(body)
        except TimeoutError as exc:
            raise _Undelivered("reportAnalytics:fail timeout") from exc
        except RuntimeAPIError as exc:
            outcome = outcome_of(exc.status)
            if outcome == "retry":
                honoured = exc.status in RETRY_AFTER_STATUSES
                raise _Undelivered(exc.err_msg, exc.retry_after_s if honoured else None) from exc
            if outcome == "split":
                raise _TooLarge(exc) from exc
            # refused as a whole (e.g. an unknown app): retrying would not help
            return _refused(chunk, exc)

    def _back_off(self, retry_after_s: float | None = None) -> None:
        """Wait before the next try (:func:`backoff`); ``retry_after_s``: the answer's
        ``Retry-After`` (a 429 or 503), the least wait."""
        self._retry_delay, self._retry_wait = backoff(
            self._retry_delay, self.retry_base_s, self.retry_max_s, retry_after_s, self._rand
        )
        self._retry_at = time.monotonic() + self._retry_wait
        if self._kick is not None:  # the timer recomputes its wait
            self._kick.set()

    @property
    def retry_delay_s(self) -> float:
        """The current backoff, before jitter: the longest the next try may wait (0 when the
        last send succeeded)."""
        return self._retry_delay

    @property
    def retry_wait_s(self) -> float:
        """How long the next try waits, counted from the failure: the backoff with its jitter
        (and at least the answer's ``Retry-After``); 0 when the last send succeeded."""
        return self._retry_wait

    async def close(self, flush: bool = True) -> None:
        """Stop the timer; with ``flush``, try once to send what is queued (what cannot be
        sent stays in the queue file for the next start)."""
        timer, self._timer = self._timer, None
        self._closed = True
        if timer is not None:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await timer
        if flush and self.queue.events:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.flush(), 10)
        self.queue.close()


class _Undelivered(Exception):
    """The batch did not reach the server (or the server could not take it now);
    ``retry_after_s``: how long the server asked to be left alone (a 429 or 503)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class _TooLarge(Exception):
    """The server refused the batch for its size (413): smaller ones may go."""

    def __init__(self, error: RuntimeAPIError) -> None:
        super().__init__(error.err_msg)
        self.error = error


def _refused(chunk: list[dict[str, Any]], exc: RuntimeAPIError) -> dict[str, Any]:
    """A batch refused as a whole, as the server's verdict would give it: every event refused."""
    reason, code = exc.err_msg, exc.code or "refused"
    refused = [
        {"index": i, "id": e["id"], "reason": reason, "code": code} for i, e in enumerate(chunk)
    ]
    return {"accepted": 0, "duplicates": 0, "rejected": refused}


_listener_tasks: set[asyncio.Task[Any]] = set()


def _call(listener: Listener, value: dict[str, Any]) -> None:
    """Call a listener; a coroutine listener runs as a task of the running loop."""
    try:
        outcome = listener(value)
        if asyncio.iscoroutine(outcome):
            task = asyncio.get_running_loop().create_task(outcome)
            _listener_tasks.add(task)
            task.add_done_callback(_listener_tasks.discard)
    except Exception:
        log.exception("an analytics listener failed")


__all__ = ["OfflineQueue", "RuntimeAnalytics", "backoff", "outcome_of"]


def sendable(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` as JSON carries it: every string (keys too) well-formed, a lone surrogate (text
    decoded with ``surrogateescape``) as U+FFFD, as the JavaScript runtime does (the platform's
    strict reader refuses the whole batch otherwise); ``ValueError`` when JSON cannot write it
    (a datetime, a Decimal, a set, NaN or an infinity, nesting past Python's recursion)."""
    try:
        text = json.dumps(_well_formed(event), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"the event cannot be sent as JSON: {exc}") from None
    value: dict[str, Any] = json.loads(text)
    return value


def _well_formed(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {_well_formed(k): _well_formed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_well_formed(v) for v in value]
    return value


def _event_bytes(event: Mapping[str, Any]) -> int:
    """An event's share of a batch: its UTF-8 JSON and a comma."""
    return len(json.dumps(event, ensure_ascii=False).encode()) + 1


def _batch_bytes(chunk: list[dict[str, Any]]) -> int:
    return sum(_event_bytes(e) for e in chunk)


def _next_batch(
    events: Mapping[str, dict[str, Any]], waiting: list[str], max_bytes: int = MAX_BATCH_BYTES
) -> tuple[list[dict[str, Any]], list[str]]:
    """The next batch of ``waiting`` (ids of ``events``): up to ``MAX_BATCH`` events and
    ``max_bytes`` of them as UTF-8 JSON (at least one), and the ids left. 500 events of
    long Chinese text made a 1.6 MB body, which the server refused whole, and they were
    dropped."""
    chunk: list[dict[str, Any]] = []
    size = 0
    taken = 0
    for key in waiting:
        if len(chunk) >= MAX_BATCH:
            break
        event = events.get(key)
        if event is not None:
            weight = _event_bytes(event)
            if chunk and size + weight > max_bytes:
                break
            chunk.append(event)
            size += weight
        taken += 1
    return chunk, waiting[taken:]
