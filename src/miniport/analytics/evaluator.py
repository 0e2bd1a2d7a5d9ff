"""Codeless ("configured") analytics evaluator.

Pure code: no I/O and no clock reads. The runtime (container SDK) creates one
:class:`Evaluator` per app session, feeds it the page-lifecycle and click calls of
the host container, each with its time ``t`` in milliseconds, and sends what every
call returns (the events to report) to the ingestion API. ``src/miniport/web/sdk/evaluator.js``
is the same evaluator in JavaScript; the JSON test vectors in ``vectors/`` keep the
two in step, so any change here must be made there too, with a vector.

Configuration
-------------
``{"version": 3, "fields": [...], "events": [...]}``. Only events with
``"mode": "configured"`` are evaluated (``api`` events are reported from code). A
configured event has ``id``, ``name`` and ``actions``; each action has:

``trigger``
    With a page: ``click`` (needs ``element``), ``enterPage``, ``leavePage``,
    ``pageLoad``, ``pageUnload``, ``switchTab``, ``pullDownRefresh``. Without a
    page: ``launch``, ``background``, ``foreground``, ``share``. Any other trigger
    never matches.
``action``
    ``report`` or ``start``; anything else is ignored.
``page``
    A page path or ``ANY_PAGE``. Paths are compared after stripping one leading
    ``/`` and anything from the first ``?``. A page trigger whose action has no
    ``page`` never matches; page-less triggers ignore ``page``.
``element``
    For ``click``: ``.name`` (a class in the clicked element's ``classes``) or
    ``#name`` (the element's ``id``), where ``name`` is ``[A-Za-z0-9_-]+``.
    Anything else (descendant selectors, tags, ``.a.b``, surrounding spaces) is
    invalid and never matches, so a click action without a valid element never
    fires.
``data``
    ``{field_name: source}`` (sources below). Field names are not checked against
    the event's ``fields``: the server validates what it receives.

Single-step and multi-step events
---------------------------------
An event whose actions contain no ``start`` is single-step: each matching
``report`` action emits the event at once with that action's values.

An event with a ``start`` action is multi-step. A matching ``start`` begins (or
restarts, replacing) a pending collection for the event holding the values of the
start action's data, read at that moment. A matching ``report`` emits the event
with the pending values merged with its own (the report's values win) and clears
the collection; a ``report`` with nothing pending emits nothing. A collection is
kept per event id, survives page changes, is dropped by ``launch`` (new session),
and by :meth:`Evaluator.set_config` when its event is gone or no longer
multi-step.

For every call, events are evaluated in configuration order and each event's
actions in their order; every matching action has its effect (so a ``report``
listed before a ``start`` on the same trigger uses the previous collection, and a
``start`` listed before a ``report`` is reported at once). One emission per
matching ``report`` action.

Value sources
-------------
``a.b.c``
    A path in the page data: dotted keys; on an array, a segment written as a
    non-negative integer without leading zeros (``goods.0.price``) indexes it.
``list[].name``
    Each ``[]`` takes the next of the clicked element's ``indexes`` (the first
    ``[]`` ``indexes[0]``, the second ``indexes[1]``) and indexes the array there:
    ``list[][].name``, ``shop.goods[].price``; the part after the last ``[]`` may
    be empty (``tags[]`` is the item itself) or dotted.
``list[].$INDEX``
    The element's index for the last ``[]`` (``list[][].$INDEX`` is
    ``indexes[1]``). The page data is not consulted.
``$DATASET.key``
    The clicked element's ``dataset[key]`` (its ``data-*`` attribute), as given.
``$APP.key``
    ``app_data[key]``, the app instance data (the key is taken literally, dots
    included).
``$PAGE_TIME``
    ms since the page was last shown (``page_show``), or since its ``page_load``
    if it has not been shown.
``$APP_TIME``
    ms since the last ``launch``.
``$CURRENT_PAGE``
    The page of the call (see below).
``$LAST_PAGE``
    The most recently shown page other than the page of the call; ``""`` if none.

Every page-dependent value (page data, ``$PAGE_TIME``, ``$CURRENT_PAGE``,
``$LAST_PAGE``) is taken relative to *the page of the call*: the call's own page
for page triggers (for ``switch_tab``, the tab page switched to), otherwise the
current page. The current page is the last page shown or loaded and not yet
unloaded; when it is unloaded the previously shown or loaded page becomes current.

A source yields nothing, and its field is left out of ``data``, when it is not a
valid source string, when a path is missing, an index is out of range or absent
(no element, or too few ``indexes``), when the value is an object or an array
(only primitives are kept: string, number, boolean and ``null``), when there is
no launch for ``$APP_TIME``, or no page for ``$PAGE_TIME``/``$CURRENT_PAGE``.
Values are reported raw, without coercion to the field type.

Calls and state
---------------
``page_load`` replaces the page's data and makes it current; ``page_show`` makes
it current and restarts its page time; ``page_hide`` changes nothing;
``page_unload`` evaluates first, then forgets the page and its data;
``set_data``/``set_app_data`` shallow-merge their top-level keys (path keys such as
``"a.b"`` or ``"list[0]"`` are not expanded: pass the whole new top-level values);
``launch`` drops pending collections and restarts ``$APP_TIME`` before it is
evaluated, but leaves pages alone. Every emitted event is
``{"event", "event_id", "data", "page", "trigger", "action", "t"}`` where ``page``
is the (normalised) page of the call, ``""`` for a page-less trigger with no
current page, and ``t`` the call's time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

ANY_PAGE: Final = "ANY_PAGE"
PAGE_TRIGGERS: Final = frozenset(
    {"click", "enterPage", "leavePage", "pageLoad", "pageUnload", "switchTab", "pullDownRefresh"}
)
PAGELESS_TRIGGERS: Final = frozenset({"launch", "background", "foreground", "share"})

SourceKind = Literal[
    "path", "index", "dataset", "app", "page_time", "app_time", "current_page", "last_page"
]

Event = dict[str, Any]
"""An emitted event: ``{"event", "event_id", "data", "page", "trigger", "action", "t"}``."""

_SELECTOR_RE: Final = re.compile(r"([.#])([A-Za-z0-9_-]+)")
_SEGMENT_RE: Final = re.compile(r"([^.\[\]$][^.\[\]]*)((?:\[\])*)")
_INDEX_RE: Final = re.compile(r"0|[1-9][0-9]*")
_SYSTEM_SOURCES: Final[dict[str, SourceKind]] = {
    "$PAGE_TIME": "page_time",
    "$APP_TIME": "app_time",
    "$CURRENT_PAGE": "current_page",
    "$LAST_PAGE": "last_page",
}
_NOTHING: Final = object()


def normalize_page(page: str) -> str:
    """Strip one leading ``/`` and any ``?query`` from a page path."""
    page = page.removeprefix("/")
    return page.split("?", 1)[0]


@dataclass(frozen=True)
class Selector:
    """A one-level element selector: ``.class`` or ``#id``."""

    kind: Literal["class", "id"]
    name: str

    def matches(self, element: Mapping[str, Any]) -> bool:
        if self.kind == "id":
            return element.get("id") == self.name
        classes = element.get("classes")
        return isinstance(classes, list) and self.name in classes


def parse_selector(text: object) -> Selector | None:
    """Parse ``.class`` or ``#id``; ``None`` for anything else."""
    if not isinstance(text, str):
        return None
    match = _SELECTOR_RE.fullmatch(text)
    if match is None:
        return None
    return Selector("class" if match[1] == "." else "id", match[2])


@dataclass(frozen=True)
class Source:
    """A parsed value source.

    For ``path``, ``steps`` holds page data keys (``str``) and element-index
    placeholders (``int`` n: the value of ``indexes[n]``). For ``index``, ``level``
    is the position in ``indexes``. For ``dataset`` and ``app``, ``key`` is the key.
    """

    kind: SourceKind
    steps: tuple[str | int, ...] = ()
    level: int = 0
    key: str = ""


def parse_source(text: object) -> Source | None:
    """Parse a value source string; ``None`` when it is not valid."""
    if not isinstance(text, str) or not text:
        return None
    if text.startswith("$"):
        if text in _SYSTEM_SOURCES:
            return Source(_SYSTEM_SOURCES[text])
        prefixes: tuple[tuple[str, SourceKind], ...] = (("$DATASET.", "dataset"), ("$APP.", "app"))
        for prefix, kind in prefixes:
            if text.startswith(prefix) and len(text) > len(prefix):
                return Source(kind, key=text[len(prefix) :])
        return None
    segments = text.split(".")
    steps: list[str | int] = []
    levels = 0
    for position, segment in enumerate(segments):
        if segment == "$INDEX" and position == len(segments) - 1 and levels > 0:
            return Source("index", level=levels - 1)
        match = _SEGMENT_RE.fullmatch(segment)
        if match is None:
            return None
        steps.append(match[1])
        for _ in range(len(match[2]) // 2):
            steps.append(levels)
            levels += 1
    return Source("path", steps=tuple(steps))


def _element_index(element: Mapping[str, Any] | None, level: int) -> int | None:
    """``element.indexes[level]`` if it is a non-negative integer."""
    indexes = element.get("indexes") if element is not None else None
    if not isinstance(indexes, list) or level >= len(indexes):
        return None
    value = indexes[level]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _resolve_path(
    root: object, steps: Sequence[str | int], element: Mapping[str, Any] | None
) -> object:
    value = root
    for step in steps:
        if isinstance(step, int):
            index = _element_index(element, step)
            if index is None or not isinstance(value, list) or index >= len(value):
                return _NOTHING
            value = value[index]
        elif isinstance(value, dict):
            if step not in value:
                return _NOTHING
            value = value[step]
        elif isinstance(value, list) and _INDEX_RE.fullmatch(step) and len(step) < 16:
            if int(step) >= len(value):
                return _NOTHING
            value = value[int(step)]
        else:
            return _NOTHING
    return value


def _is_primitive(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


@dataclass(frozen=True)
class _Action:
    trigger: str
    kind: str
    page: str | None
    selector: Selector | None
    sources: tuple[tuple[str, Source | None], ...]

    def matches(self, trigger: str, page: str, element: Mapping[str, Any] | None) -> bool:
        if self.trigger != trigger:
            return False
        if trigger in PAGE_TRIGGERS and (self.page is None or self.page not in (ANY_PAGE, page)):
            return False
        if trigger == "click":
            return (
                self.selector is not None and element is not None and self.selector.matches(element)
            )
        return True


@dataclass(frozen=True)
class _Event:
    id: Any
    name: Any
    actions: tuple[_Action, ...]
    multi_step: bool


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


def _compile_action(raw: Mapping[str, Any]) -> _Action:
    page = raw.get("page")
    data = raw.get("data")
    return _Action(
        trigger=_string(raw.get("trigger")),
        kind=_string(raw.get("action")),
        page=normalize_page(page) if isinstance(page, str) else None,
        selector=parse_selector(raw.get("element")),
        sources=tuple(
            (str(name), parse_source(source))
            for name, source in (data.items() if isinstance(data, dict) else ())
        ),
    )


def _compile(config: Mapping[str, Any]) -> list[_Event]:
    events: list[_Event] = []
    raw_events = config.get("events")
    for raw in raw_events if isinstance(raw_events, list) else ():
        if not isinstance(raw, dict) or raw.get("mode") != "configured":
            continue
        raw_actions = raw.get("actions")
        actions = tuple(
            _compile_action(a)
            for a in (raw_actions if isinstance(raw_actions, list) else ())
            if isinstance(a, dict)
        )
        multi_step = any(a.kind == "start" for a in actions)
        events.append(_Event(raw.get("id"), raw.get("name"), actions, multi_step))
    return events


@dataclass
class _PageState:
    data: dict[str, Any] = field(default_factory=dict)
    loaded_at: float | None = None
    shown_at: float | None = None


@dataclass(frozen=True)
class _Call:
    t: float
    trigger: str
    page: str | None
    element: Mapping[str, Any] | None = None


class Evaluator:
    """Decides which configured events a sequence of container calls reports.

    Every call method returns the events emitted by that call, in configuration
    order (see the module documentation for the semantics).
    """

    def __init__(
        self, config: Mapping[str, Any], app_data: Mapping[str, Any] | None = None
    ) -> None:
        self._events: list[_Event] = []
        self._app_data: dict[str, Any] = dict(app_data or {})
        self._pages: dict[str, _PageState] = {}
        self._active: list[str] = []  # loaded or shown pages, most recently activated last
        self._shown: list[str] = []  # the last two distinct pages shown, oldest first
        self._launched_at: float | None = None
        self._pending: dict[Any, dict[str, Any]] = {}
        self.set_config(config)

    # -- configuration and data --------------------------------------------------------

    def set_config(self, config: Mapping[str, Any]) -> None:
        """Replace the configuration; page state is kept, and pending collections too
        for the events still present (same id) and still multi-step."""
        self._events = _compile(config)
        kept = {event.id for event in self._events if event.multi_step}
        self._pending = {key: values for key, values in self._pending.items() if key in kept}

    def set_app_data(self, t: float, data: Mapping[str, Any]) -> list[Event]:
        self._app_data.update(data)
        return []

    def set_data(self, t: float, page: str, data: Mapping[str, Any]) -> list[Event]:
        self._page_state(normalize_page(page)).data.update(data)
        return []

    # -- page lifecycle ----------------------------------------------------------------

    def page_load(self, t: float, page: str, data: Mapping[str, Any] | None = None) -> list[Event]:
        path = normalize_page(page)
        self._pages[path] = _PageState(data=dict(data or {}), loaded_at=t)
        self._activate(path)
        return self._fire(_Call(t, "pageLoad", path))

    def page_show(self, t: float, page: str) -> list[Event]:
        path = normalize_page(page)
        self._page_state(path).shown_at = t
        self._activate(path)
        if not self._shown or self._shown[-1] != path:
            self._shown = [*self._shown[-1:], path]
        return self._fire(_Call(t, "enterPage", path))

    def page_hide(self, t: float, page: str) -> list[Event]:
        return self._fire(_Call(t, "leavePage", normalize_page(page)))

    def page_unload(self, t: float, page: str) -> list[Event]:
        path = normalize_page(page)
        events = self._fire(_Call(t, "pageUnload", path))
        self._pages.pop(path, None)
        if path in self._active:
            self._active.remove(path)
        return events

    def click(self, t: float, page: str, element: Mapping[str, Any] | None) -> list[Event]:
        return self._fire(_Call(t, "click", normalize_page(page), element))

    def switch_tab(self, t: float, page: str) -> list[Event]:
        return self._fire(_Call(t, "switchTab", normalize_page(page)))

    def pull_down_refresh(self, t: float, page: str) -> list[Event]:
        return self._fire(_Call(t, "pullDownRefresh", normalize_page(page)))

    # -- page-less triggers ------------------------------------------------------------

    def launch(self, t: float) -> list[Event]:
        self._pending.clear()
        self._launched_at = t
        return self._fire(_Call(t, "launch", self._current_page()))

    def background(self, t: float) -> list[Event]:
        return self._fire(_Call(t, "background", self._current_page()))

    def foreground(self, t: float) -> list[Event]:
        return self._fire(_Call(t, "foreground", self._current_page()))

    def share(self, t: float, page: str | None = None) -> list[Event]:
        path = normalize_page(page) if page is not None else self._current_page()
        return self._fire(_Call(t, "share", path))

    # -- internals ---------------------------------------------------------------------

    def _page_state(self, path: str) -> _PageState:
        return self._pages.setdefault(path, _PageState())

    def _activate(self, path: str) -> None:
        if path in self._active:
            self._active.remove(path)
        self._active.append(path)

    def _current_page(self) -> str | None:
        return self._active[-1] if self._active else None

    def current_page(self) -> str | None:
        """The page on top (the last shown of those not hidden), None before any."""
        return self._current_page()

    def _fire(self, call: _Call) -> list[Event]:
        emitted: list[Event] = []
        page = call.page if call.page is not None else ""
        for event in self._events:
            for action in event.actions:
                if action.kind not in ("start", "report"):
                    continue
                if not action.matches(call.trigger, page, call.element):
                    continue
                values = self._values(action, call)
                if action.kind == "start":  # only multi-step events have one
                    self._pending[event.id] = values
                elif not event.multi_step:
                    emitted.append(self._event(event, call, values))
                elif event.id in self._pending:
                    pending = self._pending.pop(event.id)
                    emitted.append(self._event(event, call, {**pending, **values}))
        return emitted

    @staticmethod
    def _event(event: _Event, call: _Call, data: dict[str, Any]) -> Event:
        return {
            "event": event.name,
            "event_id": event.id,
            "data": data,
            "page": call.page if call.page is not None else "",
            "trigger": call.trigger,
            "action": "report",
            "t": call.t,
        }

    def _values(self, action: _Action, call: _Call) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, source in action.sources:
            value = self._value(source, call) if source is not None else _NOTHING
            if value is not _NOTHING and _is_primitive(value):
                values[name] = value
        return values

    def _value(self, source: Source, call: _Call) -> object:
        state = self._pages.get(call.page) if call.page is not None else None
        element = call.element
        match source.kind:
            case "path":
                root = state.data if state is not None else _NOTHING
                return _resolve_path(root, source.steps, element)
            case "index":
                index = _element_index(element, source.level)
                return _NOTHING if index is None else index
            case "dataset":
                dataset = element.get("dataset") if element is not None else None
                return dataset.get(source.key, _NOTHING) if isinstance(dataset, dict) else _NOTHING
            case "app":
                return self._app_data.get(source.key, _NOTHING)
            case "page_time":
                since = None
                if state is not None:
                    since = state.shown_at if state.shown_at is not None else state.loaded_at
                return _NOTHING if since is None else call.t - since
            case "app_time":
                return _NOTHING if self._launched_at is None else call.t - self._launched_at
            case "current_page":
                return _NOTHING if call.page is None else call.page
            case "last_page":
                others = [page for page in self._shown if page != call.page]
                return others[-1] if others else ""
