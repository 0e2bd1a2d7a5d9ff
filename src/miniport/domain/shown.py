"""A user's value shown in a message: short, and bounded work whatever the value (a list
nested 1,000 deep, which the JSON reader takes, made ``repr`` and ``json.dumps`` raise
RecursionError: a 500 instead of the 422 the message was for)."""

from __future__ import annotations

import reprlib
from typing import Final

_SHORT: Final = reprlib.Repr()
# long enough that the first 40 characters are repr's (the middle is what reprlib cuts), but
# for a dict's keys, which reprlib sorts, and containers deeper than 3
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxlong, _SHORT.maxother = 3, 100, 100, 100
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = _SHORT.maxfrozenset = 40


def short_repr(value: object, limit: int = 40) -> str:
    """``repr(value)`` for a message, at most ``limit`` characters."""
    text = _SHORT.repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
