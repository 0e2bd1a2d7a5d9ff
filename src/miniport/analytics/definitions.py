"""Custom analytics definitions: fields, events and their actions (pure domain rules).

Nothing here does I/O or reads a clock. The models parse the public JSON shape of the
definition files (see ``docs/analytics-definitions.md``); every rule that is broken is
reported as a :class:`DefinitionError` with a ``path`` such as
``events[2].actions[0].element`` so a console can show the message next to the field at
fault.

Rules checked on one object (by the models themselves, so an invalid ``EventDef`` cannot
be built):

* names (fields and events): ``^[a-z][a-z0-9_]{0,31}$``;
* ``display_name``: 1..32 characters after stripping, no control characters;
* actions: trigger/page/element/data consistency and the value-source syntax;
* events: ``api`` events have no actions, ``configured`` events have at least one, every
  ``data`` key is one of the event's ``fields``, multi-step order (``start`` … ``report``).

Rules that need the whole configuration (and the previously published one) are checked by
:func:`validate_config`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, Self, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from miniport.analytics.coercion import FIELD_TYPES, FieldType
from miniport.domain.shown import short_repr
from miniport.errors import DefinitionsInvalid, Problem

__all__ = [
    "ACTION_KINDS",
    "ANY_PAGE",
    "MAX_FIELDS_PER_TYPE",
    "PAGELESS_TRIGGERS",
    "PAGE_TRIGGERS",
    "SYSTEM_SOURCES",
    "TRIGGERS",
    "Action",
    "ActionKind",
    "AnalyticsConfig",
    "DefinitionError",
    "DefinitionsInvalid",
    "EventDef",
    "EventMode",
    "FieldDef",
    "FieldType",
    "Trigger",
    "ValueSource",
    "assign_slots",
    "config_for_runtime",
    "errors_from_validation",
    "join_path",
    "parse_config",
    "parse_event",
    "parse_field",
    "parse_source",
    "slot_column",
    "validate_config",
]

EventMode = Literal["api", "configured"]
ActionKind = Literal["report", "start"]
Trigger = Literal[
    "click",
    "enterPage",
    "leavePage",
    "pageLoad",
    "pageUnload",
    "switchTab",
    "pullDownRefresh",
    "launch",
    "background",
    "foreground",
    "share",
]

PAGE_TRIGGERS: Final[frozenset[str]] = frozenset(
    {"click", "enterPage", "leavePage", "pageLoad", "pageUnload", "switchTab", "pullDownRefresh"}
)
PAGELESS_TRIGGERS: Final[frozenset[str]] = frozenset(
    {"launch", "background", "foreground", "share"}
)
TRIGGERS: Final[frozenset[str]] = PAGE_TRIGGERS | PAGELESS_TRIGGERS
ACTION_KINDS: Final[frozenset[str]] = frozenset({"report", "start"})
ANY_PAGE: Final = "ANY_PAGE"
SYSTEM_SOURCES: Final[frozenset[str]] = frozenset(
    {"$PAGE_TIME", "$APP_TIME", "$CURRENT_PAGE", "$LAST_PAGE"}
)

MAX_FIELDS_PER_TYPE: Final = 32
MAX_DISPLAY_NAME: Final = 32
MAX_PAGE_LENGTH: Final = 256
MAX_SOURCE_LENGTH: Final = 256

NAME_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")
ELEMENT_RE: Final = re.compile(r"[.#][A-Za-z_][\w-]*", re.ASCII)
PAGE_RE: Final = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_SEGMENT = rf"(?:{_IDENT}|0|[1-9][0-9]*)"
_PATH = rf"{_IDENT}(?:\.{_SEGMENT})*"
_DATA_PATH_RE: Final = re.compile(_PATH)
_LIST_RE: Final = re.compile(
    rf"(?P<base>{_PATH})(?P<levels>(?:\[\]){{1,2}})"
    rf"(?P<rest>\.\$INDEX|\.{_SEGMENT}(?:\.{_SEGMENT})*)?"
)
_KEYED_RE: Final = re.compile(rf"\$(?P<scope>DATASET|APP)\.(?P<key>{_IDENT})")
_PLAIN_KEY_RE: Final = re.compile(_IDENT)
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")

NAME_RULE: Final = (
    "use lowercase letters, digits and _, starting with a letter, at most 32 characters"
)


# --------------------------------------------------------------------------- errors


# One broken rule (where and what) is an errors.Problem; DefinitionsInvalid carries them all.
DefinitionError = Problem


def _show(value: object, limit: int = 40) -> str:
    """A short, quoted rendering of a user value for a message (JSON's spelling, as the user
    sent it; a value nested past what ``json.dumps`` recurses into: a short repr)."""
    try:
        text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    except RecursionError:
        return short_repr(value, limit)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fail(message: str) -> PydanticCustomError:
    # The message is passed through the context so braces in user input are kept as is.
    return PydanticCustomError("definition", "{message}", {"message": message})


def _fail_many(errors: Sequence[tuple[str, str]]) -> PydanticCustomError:
    """Several errors found by a model validator, each with a path relative to the model."""
    summary = "; ".join(f"{path}: {message}" if path else message for path, message in errors)
    return PydanticCustomError(
        "definition_group", "{summary}", {"summary": summary, "errors": list(errors)}
    )


def join_path(*parts: str | int) -> str:
    """``join_path("events", 2, "actions", 0)`` -> ``events[2].actions[0]``.

    A key that is not a plain identifier is written ``["a.b"]`` so paths stay unambiguous.
    """
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY_RE.fullmatch(part):
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
        elif out:
            out += f".{part}"
        else:
            out = part
    return out


def _join_relative(base: str, relative: str) -> str:
    if not relative:
        return base
    if not base or relative.startswith("["):
        return base + relative
    return f"{base}.{relative}"


_TYPE_WORDS: Final[dict[str, str]] = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "none_required": "null",
}


def _message_for(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    loc = error.get("loc") or ()
    name = next((part for part in reversed(loc) if isinstance(part, str)), "value")
    if kind == "definition":
        return str(ctx["message"])
    if kind == "missing":
        return f"{name} is required"
    if kind == "extra_forbidden":
        return f"unknown key {_show(name)}"
    if kind == "literal_error":
        return f"invalid {name} {_show(error.get('input'))}: expected {ctx.get('expected')}"
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, got {_json_type(error.get('input'))}"
    return str(error.get("msg", "invalid value"))


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def errors_from_validation(exc: ValidationError, prefix: str = "") -> list[DefinitionError]:
    """Turn a Pydantic ``ValidationError`` from these models into ``DefinitionError`` s.

    Paths are the same as the ones :func:`validate_config` produces (``prefix`` is put in
    front, e.g. ``events[2]``).
    """
    out: list[DefinitionError] = []
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if part != "[key]")
        base = _join_relative(prefix, join_path(*loc))
        if error["type"] == "definition_group":
            for relative, message in error["ctx"]["errors"]:
                out.append(DefinitionError(_join_relative(base, relative), message))
        else:
            out.append(DefinitionError(base, _message_for(error)))
    return out


# --------------------------------------------------------------------------- single values


def _check_name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        if value.startswith("$"):
            raise _fail(
                f"invalid name {_show(value)}: names starting with $ are reserved for the "
                "built-in events and system properties, which need no definition"
            )
        raise _fail(f"invalid name {_show(value)}: {NAME_RULE}")
    return value


def _check_display_name(value: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise _fail("display name is empty")
    if len(stripped) > MAX_DISPLAY_NAME:
        raise _fail(
            f"display name {_show(stripped)} is too long: {len(stripped)} characters "
            f"(at most {MAX_DISPLAY_NAME})"
        )
    if _CONTROL_RE.search(stripped):
        raise _fail(f"display name {_show(stripped)} contains control characters")
    return stripped


def _check_page(value: str | None) -> str | None:
    if value is None or value == ANY_PAGE:
        return value
    if value.startswith("/"):
        raise _fail(f"invalid page {_show(value)}: write the path without a leading '/'")
    if "?" in value:
        raise _fail(f"invalid page {_show(value)}: a page path has no query string")
    if len(value) > MAX_PAGE_LENGTH or not PAGE_RE.fullmatch(value):
        raise _fail(
            f"invalid page {_show(value)}: use a page path like 'pages/list/list' or ANY_PAGE"
        )
    return value


def _check_element(value: str | None) -> str | None:
    if value is not None and not ELEMENT_RE.fullmatch(value):
        raise _fail(
            f"invalid element selector {_show(value)}: use one '.class' or '#id' "
            "(a letter or _ first, then letters, digits, _ or -)"
        )
    return value


@dataclass(frozen=True, slots=True)
class ValueSource:
    """A parsed value source.

    ``kind`` is ``path`` (page data), ``list`` (``base[]…rest``), ``dataset``, ``app`` or
    ``system``. For ``list``: ``base`` is the path before the brackets, ``levels`` 1 or 2,
    ``rest`` the dotted path after them (empty for ``tags[]``) and ``index`` is true for
    ``….$INDEX``. For ``dataset``/``app``, ``key``; for ``system``, ``key`` is the name
    (``$PAGE_TIME``…). ``reads_element`` is true for sources that need a clicked element.
    """

    kind: Literal["path", "list", "dataset", "app", "system"]
    raw: str
    base: tuple[str, ...] = ()
    levels: int = 0
    rest: tuple[str, ...] = ()
    index: bool = False
    key: str = ""

    @property
    def reads_element(self) -> bool:
        return self.kind in ("list", "dataset")


def parse_source(text: str) -> ValueSource:
    """Parse a value source; raises ``ValueError`` with a message naming the problem."""
    if not text:
        raise ValueError("empty value source")
    if len(text) > MAX_SOURCE_LENGTH:
        raise ValueError(
            f"value source {_show(text)} is too long: at most {MAX_SOURCE_LENGTH} characters"
        )
    if text.startswith("$"):
        if text in SYSTEM_SOURCES:
            return ValueSource("system", text, key=text)
        keyed = _KEYED_RE.fullmatch(text)
        if keyed is not None:
            kind: Literal["dataset", "app"] = "dataset" if keyed["scope"] == "DATASET" else "app"
            return ValueSource(kind, text, key=keyed["key"])
        if text.startswith(("$DATASET", "$APP.")) or text == "$APP":
            raise ValueError(
                f"invalid value source {_show(text)}: write $DATASET.key or $APP.key with one "
                "key (letters, digits and _)"
            )
        raise ValueError(
            f"unknown system value {_show(text)}: expected $PAGE_TIME, $APP_TIME, "
            "$CURRENT_PAGE, $LAST_PAGE, $DATASET.key or $APP.key"
        )
    if _DATA_PATH_RE.fullmatch(text):
        return ValueSource("path", text, base=tuple(text.split(".")))
    listed = _LIST_RE.fullmatch(text)
    if listed is not None:
        rest = listed["rest"] or ""
        is_index = rest == ".$INDEX"
        return ValueSource(
            "list",
            text,
            base=tuple(listed["base"].split(".")),
            levels=len(listed["levels"]) // 2,
            rest=() if is_index or not rest else tuple(rest[1:].split(".")),
            index=is_index,
        )
    raise ValueError(
        f"invalid value source {_show(text)}: expected a page data path (goods.price), "
        "list[].name, list[][].name, list[].$INDEX, $DATASET.key, $APP.key or a system value"
    )


def _check_source(value: str) -> str:
    try:
        parse_source(value)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    return value


Name = Annotated[str, AfterValidator(_check_name)]
DisplayName = Annotated[str, AfterValidator(_check_display_name)]
PagePath = Annotated[str | None, AfterValidator(_check_page)]
Element = Annotated[str | None, AfterValidator(_check_element)]
Source = Annotated[str, AfterValidator(_check_source)]


# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class FieldDef(_Model):
    """An app-wide field: ``{"name": "price", "type": "int"}``."""

    name: Name
    type: FieldType


class Action(_Model):
    """One action of a configured event (see the module docs for the rules)."""

    trigger: Trigger
    action: ActionKind
    page: PagePath = None
    element: Element = None
    data: dict[Name, Source] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        errors = action_errors(self)
        if errors:
            raise _fail_many(errors)
        return self


def action_errors(action: Action) -> list[tuple[str, str]]:
    """Cross-field rules of one action, as ``(relative path, message)``."""
    errors: list[tuple[str, str]] = []
    trigger = action.trigger
    if trigger in PAGE_TRIGGERS and action.page is None:
        errors.append(("page", f"trigger {_show(trigger)} needs a page (a page path or ANY_PAGE)"))
    if trigger in PAGELESS_TRIGGERS and action.page is not None:
        errors.append(("page", f"trigger {_show(trigger)} has no page; remove 'page'"))
    if trigger == "click" and action.element is None:
        errors.append(("element", "trigger 'click' needs an element selector"))
    if trigger != "click" and action.element is not None:
        errors.append(
            ("element", f"only trigger 'click' takes an element; remove it from {_show(trigger)}")
        )
    if trigger != "click":
        for field, raw in action.data.items():
            if parse_source(raw).reads_element:
                errors.append(
                    (
                        join_path("data", field),
                        f"value source {_show(raw)} reads the clicked element: "
                        f"it needs trigger 'click', not {_show(trigger)}",
                    )
                )
    return errors


class EventDef(_Model):
    """An event definition (``mode`` ``api``: reported from code; ``configured``: codeless)."""

    name: Name
    display_name: DisplayName
    mode: EventMode
    fields: list[Name] = Field(default_factory=list)
    actions: list[Action] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        errors = event_errors(self)
        if errors:
            raise _fail_many(errors)
        return self

    @property
    def is_multi_step(self) -> bool:
        return any(action.action == "start" for action in self.actions)


def event_errors(event: EventDef) -> list[tuple[str, str]]:
    """Cross-field rules of one event, as ``(relative path, message)``."""
    errors: list[tuple[str, str]] = []
    seen: set[str] = set()
    for k, field in enumerate(event.fields):
        if field in seen:
            errors.append((join_path("fields", k), f"field {_show(field)} is listed twice"))
        seen.add(field)
    if event.mode == "api" and event.actions:
        errors.append(
            (
                "actions",
                "an api event has no actions (it is reported from code); "
                "remove the actions or use mode 'configured'",
            )
        )
    if event.mode == "configured" and not event.actions:
        errors.append(("actions", "a configured event needs at least one action"))
    for i, action in enumerate(event.actions):
        for field in action.data:
            if field not in seen:
                errors.append(
                    (
                        join_path("actions", i, "data", field),
                        f"field {_show(field)} is not one of this event's fields "
                        "(add it to fields)",
                    )
                )
    if event.is_multi_step:
        started = False
        reports = 0
        for i, action in enumerate(event.actions):
            if action.action == "start":
                started = True
            else:
                reports += 1
                if not started:
                    errors.append(
                        (join_path("actions", i, "action"), f"report without start (action {i})")
                    )
        if reports == 0:
            errors.append(
                ("actions", "multi-step event has no report: add a report action after the start")
            )
    return errors


class AnalyticsConfig(_Model):
    """The whole definition set of an app. Cross-object rules: :func:`validate_config`."""

    fields: list[FieldDef] = Field(default_factory=list)
    events: list[EventDef] = Field(default_factory=list)

    def field(self, name: str) -> FieldDef | None:
        return next((field for field in self.fields if field.name == name), None)


# --------------------------------------------------------------------------- parsing


_M = TypeVar("_M", bound=BaseModel)


def _parse(model: type[_M], obj: object, prefix: str = "") -> _M:
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise DefinitionsInvalid(errors_from_validation(exc, prefix)) from None


def parse_field(obj: object) -> FieldDef:
    """Parse one field definition; raises :class:`DefinitionsInvalid`."""
    return _parse(FieldDef, obj)


def parse_event(obj: object) -> EventDef:
    """Parse one event definition file; raises :class:`DefinitionsInvalid`.

    Paths are relative to the event (``actions[0].element``).
    """
    return _parse(EventDef, obj)


def parse_config(obj: object, published: AnalyticsConfig | None = None) -> AnalyticsConfig:
    """Parse ``{"fields": [...], "events": [...]}`` and run :func:`validate_config`.

    Raises :class:`DefinitionsInvalid` with every error (shape errors first; the
    cross-object rules only run once every object is valid on its own).
    """
    config = _parse(AnalyticsConfig, obj)
    errors = validate_config(config, published)
    if errors:
        raise DefinitionsInvalid(errors)
    return config


def _duplicates(values: Iterable[str]) -> list[tuple[int, int]]:
    """``(index, index of first occurrence)`` for every repeated value."""
    first: dict[str, int] = {}
    out: list[tuple[int, int]] = []
    for i, value in enumerate(values):
        if value in first:
            out.append((i, first[value]))
        else:
            first[value] = i
    return out


def validate_config(
    config: AnalyticsConfig,
    published: AnalyticsConfig | None,
    retyped: Collection[str] = (),
) -> list[DefinitionError]:
    """Cross-object rules; an empty list means the configuration may be saved/published.

    * field names, event names and event display names are unique (the later one is
      reported, naming the earlier);
    * every field an event lists is defined;
    * at most 32 int fields and 32 string fields;
    * against ``published``: a published field is neither removed/renamed nor retyped, except
      the fields named in ``retyped`` (a type change made through
      :func:`miniport.analytics.field_history.plan_retype`, which keeps the old values).
    """
    errors: list[DefinitionError] = []
    for i, j in _duplicates(field.name for field in config.fields):
        errors.append(
            DefinitionError(
                join_path("fields", i, "name"),
                f"duplicate field name {_show(config.fields[i].name)} (also fields[{j}])",
            )
        )
    for i, j in _duplicates(event.name for event in config.events):
        errors.append(
            DefinitionError(
                join_path("events", i, "name"),
                f"duplicate event name {_show(config.events[i].name)} (also events[{j}])",
            )
        )
    for i, j in _duplicates(event.display_name for event in config.events):
        errors.append(
            DefinitionError(
                join_path("events", i, "display_name"),
                f"duplicate display name {_show(config.events[i].display_name)} (also events[{j}])",
            )
        )
    defined = {field.name for field in config.fields}
    for i, event in enumerate(config.events):
        for k, name in enumerate(event.fields):
            if name not in defined:
                errors.append(
                    DefinitionError(
                        join_path("events", i, "fields", k),
                        f"unknown field {_show(name)} (define it first)",
                    )
                )
    for field_type in FIELD_TYPES:
        count = len({field.name for field in config.fields if field.type == field_type})
        if count > MAX_FIELDS_PER_TYPE:
            errors.append(
                DefinitionError(
                    "fields",
                    f"too many {field_type} fields: {count} "
                    f"(at most {MAX_FIELDS_PER_TYPE} per app)",
                )
            )
    if published is not None:
        current = {field.name: (i, field) for i, field in enumerate(config.fields)}
        for old in published.fields:
            if old.name not in current:
                errors.append(
                    DefinitionError(
                        "fields",
                        f"field {_show(old.name)} is published; it cannot be removed or renamed",
                    )
                )
                continue
            i, new = current[old.name]
            if new.type != old.type and old.name not in retyped:
                errors.append(
                    DefinitionError(
                        join_path("fields", i, "type"),
                        f"field {_show(old.name)} is published as {old.type}; "
                        "its type cannot change",
                    )
                )
    return errors


# --------------------------------------------------------------------------- slots


SLOT_PREFIX: Final[Mapping[str, str]] = {"int": "i", "string": "s", "float": "f", "bool": "b"}
"""Slot column prefix of each field type: ``i0..i31``, ``s0..s31``, ``f0..f31``, ``b0..b31``."""


def slot_column(field_type: FieldType, slot: int) -> str:
    """The event-store column of a slot: ``i0..i31`` (int), ``s0..s31`` (string), ``f0..f31``
    (float), ``b0..b31`` (bool)."""
    if not 0 <= slot < MAX_FIELDS_PER_TYPE:
        raise ValueError(f"slot {slot} is outside 0..{MAX_FIELDS_PER_TYPE - 1}")
    return f"{SLOT_PREFIX[field_type]}{slot}"


def assign_slots(fields: Sequence[FieldDef], existing: Mapping[str, int]) -> dict[str, int]:
    """Slot number (0..31, per type) of every field.

    A field already in ``existing`` keeps its slot; each new field (in list order) gets the
    lowest slot of its type that no other field of the list uses. Names in ``existing``
    that are not in ``fields`` are not returned and their slots are free again (a published
    field cannot be removed, so only never-published fields disappear). Raises
    ``ValueError`` when a type has no free slot left, or when ``existing`` gives two fields
    of one type the same slot or a slot outside 0..31.
    """
    result: dict[str, int] = {}
    used: dict[str, dict[int, str]] = {t: {} for t in FIELD_TYPES}
    for field in fields:
        if field.name in existing and field.name not in result:
            slot = existing[field.name]
            if not 0 <= slot < MAX_FIELDS_PER_TYPE:
                raise ValueError(f"field {field.name!r} has slot {slot}, outside 0..31")
            other = used[field.type].get(slot)
            if other is not None:
                raise ValueError(
                    f"fields {other!r} and {field.name!r} share {slot_column(field.type, slot)}"
                )
            used[field.type][slot] = field.name
            result[field.name] = slot
    for field in fields:
        if field.name in result:
            continue
        taken = used[field.type]
        free = next((s for s in range(MAX_FIELDS_PER_TYPE) if s not in taken), None)
        if free is None:
            raise ValueError(
                f"no free {field.type} slot for field {field.name!r} "
                f"(at most {MAX_FIELDS_PER_TYPE} {field.type} fields)"
            )
        taken[free] = field.name
        result[field.name] = free
    return result


# --------------------------------------------------------------------------- runtime JSON


def config_for_runtime(
    config: AnalyticsConfig, version: int, events_ids: Mapping[str, int]
) -> dict[str, Any]:
    """The configuration a runtime receives (published or under test).

    ``{"version", "fields": [{"name", "type"}], "events": [{"id", "name", "display_name",
    "mode", "fields", "actions": [{"trigger", "action", "page", "element", "data"}]}]}``;
    ``page``/``element`` are ``null`` when absent. Raises ``ValueError`` naming an event
    that has no id in ``events_ids``.
    """
    events: list[dict[str, Any]] = []
    for event in config.events:
        if event.name not in events_ids:
            raise ValueError(f"event {event.name!r} has no id")
        events.append(
            {
                "id": events_ids[event.name],
                "name": event.name,
                "display_name": event.display_name,
                "mode": event.mode,
                "fields": list(event.fields),
                "actions": [
                    {
                        "trigger": action.trigger,
                        "action": action.action,
                        "page": action.page,
                        "element": action.element,
                        "data": dict(action.data),
                    }
                    for action in event.actions
                ],
            }
        )
    return {
        "version": version,
        "fields": [{"name": field.name, "type": field.type} for field in config.fields],
        "events": events,
    }
