"""Coercion of reported analytics values to their field's type (pure).

``coerce(value, type)`` returns a :class:`Coerced` with the value to store and a note.
The note is ``None`` when the value was stored as it came; otherwise it is
``"<code>: <text>"`` (for example ``"truncated: 12.7 -> 12"``), shown to the developer in
the test view. The code (:attr:`Coerced.code`) is one of :data:`NOTE_CODES`, so coercions
can be counted. A value of ``None`` means: store nothing for this field (the event is kept).

int fields (32-bit signed, -2147483648..2147483647):

============================== ============================== =================
reported                       stored                         note code
============================== ============================== =================
integer in range               as is                          (none)
float with no fraction (12.0)  12                             (none)
float with a fraction          truncated toward zero          ``truncated``
``true`` / ``false``           1 / 0                          ``bool_to_int``
numeric string ``"12"``        12                             ``from_string``
numeric string ``"-12.7"``     -12 (truncated toward zero)    ``truncated``
integer, float or numeric      nothing (field left out)       ``out_of_range``
string outside the range
(after truncation), ±Infinity
other string, NaN, null, list, 0                              ``not_a_number``
object, anything else
============================== ============================== =================

A numeric string is ASCII: optional blanks (space, tab, CR, LF) around, an optional sign,
digits with an optional fraction (``12``, ``12.``, ``.5``, ``12.50``) and an optional
exponent (``1e3``); ``0x10``, ``1_000``, ``Infinity``, ``NaN`` and ``""`` are not numbers.

string fields (at most 255 characters, i.e. Unicode code points):

============================== ============================== =================
reported                       stored                         note code
============================== ============================== =================
string of at most 255 chars    as is                          (none)
longer string                  its first 255 characters       ``truncated``
string with lone surrogates    each replaced by U+FFFD        ``invalid_text``
number                         its JSON text: ``12``,         ``to_string``
                               ``12.5``, ``12.0`` -> ``12``,
                               ``NaN``, ``Infinity``
``true`` / ``false``           ``"true"`` / ``"false"``       ``to_string``
list / object                  compact JSON text (then cut    ``to_string``
                               to 255 characters)             (``truncated``
                                                              when cut)
``null``                       nothing (field left out)       ``null``
============================== ============================== =================

When several things happen to one value, the note text says all of them and the code is
the most important: ``out_of_range`` > ``truncated`` > ``invalid_text`` > the others.

float fields (IEEE 754 double: 15-17 significant digits, so sums of prices up to ~10^12 with
two decimals come out exact to the cent after rounding; NaN and ±Infinity are never stored):

============================== ============================== =================
reported                       stored                         note code
============================== ============================== =================
finite number                  as is (an integer as a float)  (none)
``true`` / ``false``           1.0 / 0.0                      ``bool_to_int``
numeric string ``"12.5"``      12.5                           ``from_string``
NaN, ±Infinity, a number       nothing (field left out)       ``out_of_range``
beyond ±1.7e308 (string)
other string, null, list,      0.0                            ``not_a_number``
object, anything else
============================== ============================== =================

bool fields:

============================== ============================== =================
reported                       stored                         note code
============================== ============================== =================
``true`` / ``false``           as is                          (none)
the number 1 / 0               true / false                   ``to_bool``
``"true"``/``"false"``/``"1"`` true / false (any case,        ``to_bool``
/``"0"``                       blanks around ignored)
``null``                       nothing (field left out)       ``null``
anything else                  nothing (field left out)       ``not_a_bool``
============================== ============================== =================
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Final, Literal

__all__ = [
    "FIELD_TYPES",
    "INT_MAX",
    "INT_MIN",
    "MAX_STRING_LENGTH",
    "NOTE_CODES",
    "Coerced",
    "FieldType",
    "coerce",
]

FieldType = Literal["int", "string", "float", "bool"]
FIELD_TYPES: Final[tuple[FieldType, ...]] = ("int", "string", "float", "bool")

INT_MIN: Final = -(2**31)
INT_MAX: Final = 2**31 - 1
MAX_STRING_LENGTH: Final = 255

NOTE_CODES: Final[frozenset[str]] = frozenset(
    {
        "bool_to_int",
        "truncated",
        "from_string",
        "not_a_number",
        "out_of_range",
        "to_string",
        "null",
        "invalid_text",
        "to_bool",
        "not_a_bool",
    }
)

_NUMBER_RE: Final = re.compile(
    r"[ \t\r\n]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t\r\n]*"
)
_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")
_SHOW_LIMIT: Final = 40


@dataclass(frozen=True, slots=True)
class Coerced:
    """The value to store (``None``: store nothing for the field) and the note, if any."""

    value: int | str | float | bool | None
    note: str | None = None

    @property
    def code(self) -> str | None:
        """The note's code (``truncated``, ``not_a_number``…), ``None`` without a note."""
        return None if self.note is None else self.note.split(":", 1)[0]


def _note(code: str, text: str) -> str:
    return f"{code}: {text}"


def _show(value: object) -> str:
    """A short JSON-like rendering of a reported value for a note."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, int | float):
        text = _number_text(value)
    elif isinstance(value, list | tuple):
        text = "a list"
    elif isinstance(value, dict):
        text = "an object"
    else:
        text = f"a {value.__class__.__name__}"
    return text if len(text) <= _SHOW_LIMIT else text[: _SHOW_LIMIT - 1] + "…"




def _number_text(value: int | float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _out_of_range(value: object) -> Coerced:
    return Coerced(
        None,
        _note("out_of_range", f"{_show(value)} is outside {INT_MIN}..{INT_MAX}; value dropped"),
    )


def _not_a_number(value: object) -> Coerced:
    return Coerced(0, _note("not_a_number", f"{_show(value)} is not a number -> 0"))


def _to_int(value: object) -> Coerced:
    if isinstance(value, bool):
        number = int(value)
        return Coerced(number, _note("bool_to_int", f"{_show(value)} -> {number}"))
    if isinstance(value, int):
        return Coerced(value) if INT_MIN <= value <= INT_MAX else _out_of_range(value)
    if isinstance(value, float):
        if math.isnan(value):
            return _not_a_number(value)
        if math.isinf(value):
            return _out_of_range(value)
        number = math.trunc(value)
        if not INT_MIN <= number <= INT_MAX:
            return _out_of_range(value)
        if number == value:
            return Coerced(number)
        return Coerced(number, _note("truncated", f"{_show(value)} -> {number}"))
    if isinstance(value, str):
        if _NUMBER_RE.fullmatch(value) is None:
            return _not_a_number(value)
        text = value.strip(" \t\r\n")
        try:
            exact = Decimal(text)
            whole = exact.to_integral_value(rounding=ROUND_DOWN)
        except InvalidOperation:  # an exponent past the decimal module's (beyond 10^18 digits)
            mantissa, _, exponent = text.lower().rpartition("e")
            if not any(c in "123456789" for c in mantissa):  # zero, whatever the exponent
                return Coerced(0, _note("from_string", f"{_show(value)} -> 0"))
            if not exponent.startswith("-"):  # (not int(): past 4,300 digits it refuses too)
                return _out_of_range(value)
            return Coerced(0, _note("truncated", f"{_show(value)} (string) -> 0"))
        if not INT_MIN <= whole <= INT_MAX:
            return _out_of_range(value)
        number = int(whole)
        if whole != exact:
            return Coerced(number, _note("truncated", f"{_show(value)} (string) -> {number}"))
        return Coerced(number, _note("from_string", f"{_show(value)} -> {number}"))
    return _not_a_number(value)


def _json_text(value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (ValueError, TypeError, RecursionError):
        return f"<{value.__class__.__name__}>"


def _to_string(value: object) -> Coerced:
    if value is None:
        return Coerced(None, _note("null", "null -> field left out"))
    notes: list[tuple[str, str]] = []
    if isinstance(value, str):
        text = value
    else:
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = _number_text(value)
        else:
            text = _json_text(value)
        what = "JSON text" if isinstance(value, list | tuple | dict) else json.dumps(text)
        notes.append(("to_string", f"{_show(value)} -> {what}"))
    text, replaced = _SURROGATE_RE.subn("\ufffd", text)
    if replaced:
        notes.append(("invalid_text", f"{replaced} invalid character(s) replaced with U+FFFD"))
    if len(text) > MAX_STRING_LENGTH:
        notes.append(("truncated", f"{len(text)} characters cut to {MAX_STRING_LENGTH}"))
        text = text[:MAX_STRING_LENGTH]
    if not notes:
        return Coerced(text)
    rank = {"truncated": 0, "invalid_text": 1}
    code = min((code for code, _ in notes), key=lambda c: rank.get(c, 2))
    return Coerced(text, _note(code, "; ".join(part for _, part in notes)))


def _to_float(value: object) -> Coerced:
    if isinstance(value, bool):
        number = float(value)
        return Coerced(number, _note("bool_to_int", f"{_show(value)} -> {_number_text(number)}"))
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isnan(number):
            return Coerced(None, _note("out_of_range", "NaN is not stored; value dropped"))
        if math.isinf(number):
            return Coerced(
                None, _note("out_of_range", f"{_show(value)} is not a finite number; value dropped")
            )
        return Coerced(number)
    if isinstance(value, str):
        if _NUMBER_RE.fullmatch(value) is None:
            return Coerced(0.0, _note("not_a_number", f"{_show(value)} is not a number -> 0"))
        number = float(value.strip(" \t\r\n"))
        if math.isinf(number):
            return Coerced(
                None, _note("out_of_range", f"{_show(value)} is not a finite number; value dropped")
            )
        return Coerced(number, _note("from_string", f"{_show(value)} -> {number!r}"))
    return Coerced(0.0, _note("not_a_number", f"{_show(value)} is not a number -> 0"))


_BOOL_TEXT: Final = {"true": True, "false": False, "1": True, "0": False}


def _to_bool(value: object) -> Coerced:
    if isinstance(value, bool):
        return Coerced(value)
    if value is None:
        return Coerced(None, _note("null", "null -> field left out"))
    flag: bool | None = None
    if isinstance(value, int | float) and value in (0, 1):
        flag = bool(value)
    elif isinstance(value, str):
        flag = _BOOL_TEXT.get(value.strip(" \t\r\n").lower())
    if flag is None:
        return Coerced(None, _note("not_a_bool", f"{_show(value)} is not true or false; dropped"))
    return Coerced(flag, _note("to_bool", f"{_show(value)} -> {_show(flag)}"))


def coerce(value: object, type: FieldType) -> Coerced:
    """Coerce a reported value to a field of ``type`` (int, string, float or bool)."""
    if type == "int":
        return _to_int(value)
    if type == "string":
        return _to_string(value)
    if type == "float":
        return _to_float(value)
    if type == "bool":
        return _to_bool(value)
    raise ValueError(f"unknown field type {type!r}")
