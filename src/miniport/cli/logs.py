"""The server's log lines: ``human`` (one readable line: local time, level, source, message) or
``json`` (one JSON object per line, for log shippers: ``ts``, ``level``, ``logger``,
``message`` and the record's structured ``fields``).

Invariants: one line per record (a traceback is folded into the JSON object's ``exc`` or
follows the human line); the access log (``miniport.access``) and the fetch log
(``miniport.fetch``) pass their values as ``extra={"fields": {...}}``."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

SHORT_NAMES = {"miniport.access": "access", "miniport.fetch": "fetch"}


class _Seconds:
    """A record's time to the second as ``fmt`` text, formatted once per second: the access
    log writes a line per request, and ``strftime`` was a tenth of its cost."""

    def __init__(self, fmt: str, convert: Callable[[float], time.struct_time]) -> None:
        self.fmt, self.convert = fmt, convert
        self._last: tuple[int, str] = (-1, "")

    def __call__(self, created: float) -> str:
        second = int(created)
        last = self._last
        if last[0] != second:
            last = (second, time.strftime(self.fmt, self.convert(second)))
            self._last = last  # one tuple: a thread sees the old pair or the new, whole
        return last[1]


class HumanFormatter(logging.Formatter):
    _when = _Seconds("%Y-%m-%d %H:%M:%S", time.localtime)

    def format(self, record: logging.LogRecord) -> str:
        when = self._when(record.created)
        source = SHORT_NAMES.get(record.name, record.name)
        line = f"{when} {record.levelname:<7} {source} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    _when = _Seconds("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": self._when(record.created) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        body.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False, default=str)


def configure(fmt: str = "human", level: str = "info") -> None:
    """Route every log record (ours, uvicorn's, alembic's) through one handler on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations: quiet unless wrong
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # what neither format shows is not collected (the optimizations listed in the logging
    # HOWTO): the access log writes a line per request, and looking up the caller's frame,
    # thread and process was a quarter of its cost
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
