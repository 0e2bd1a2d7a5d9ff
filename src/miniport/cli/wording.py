"""Validation messages in the CLI's words: the server's admin API reports invalid input in the
validation library's phrasing (``steps: List should have at least 2 items after validation,
not 1``); the CLI says it as its own commands would (``--step: give at least 2, not 1``).

Invariant: a message no rule matches passes unchanged; only whole ``field: message`` parts are
rewritten, so nothing the server said is lost."""

from __future__ import annotations

import re

# the API's field name -> the CLI's option
FLAGS = {
    "steps": "--step", "metrics": "--metric", "group_by": "--group-by", "filters": "--filter",
    "granularity": "--granularity", "user_id": "--user", "url": "--url", "kind": "--kind",
    "name": "NAME", "role": "--role", "type": "--type", "from": "--from", "to": "--to",
}  # fmt: skip

RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), words)
    for pattern, words in (
        (r"^List should have at least (\d+) items? after validation, not (\d+)$",
         r"give at least \1, not \2"),
        (r"^List should have at most (\d+) items? after validation, not (\d+)$",
         r"give at most \1, not \2"),
        (r"^String should have at least 1 character$", "must not be empty"),
        (r"^String should have at least (\d+) characters$", r"needs at least \1 characters"),
        (r"^String should have at most (\d+) characters$", r"is longer than \1 characters"),
        (r"^Input should be (.+)$", r"must be \1"),
        (r"^Field required$", "is required"),
        (r"^Value error, (.+)$", r"\1"),
        (r"^Input should be a valid (\w+)$", r"must be a \1"),
    )
)  # fmt: skip


def reworded(message: str) -> str:
    """``field: message; field: message`` with each part in the CLI's words."""
    return "; ".join(_part(p) for p in message.split("; "))


def _part(part: str) -> str:
    field, sep, text = part.partition(": ")
    if not sep:
        field, text = "", part
    for pattern, words in RULES:
        if pattern.match(text):
            text = pattern.sub(words, text)
            break
    else:
        return part
    name = field.rsplit(".", 1)[-1] if field else ""
    flag = FLAGS.get(name, name)
    return f"{flag}: {text}" if flag else text
