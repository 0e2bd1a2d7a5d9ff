"""Sessions and built-in events of the Python runtime (pure: no I/O, time passed in as ms).

The same rules as the JavaScript runtime's ``lifecycle.js``; both run the shared vectors in
``src/miniport/runtime/vectors/lifecycle.json``.

Invariants:

- ``$session``: a new id at a cold start (the first :meth:`Lifecycle.launch`), and when the
  app comes back to the foreground (``launch``, ``show`` or a page shown) after at least
  ``timeout_ms`` (30 minutes) in the background. Anything reported before a launch gets a
  session when it is first needed.
- ``$launch`` ``{cold, path, query}`` at every launch (cold the first time, warm after);
  ``$show`` ``{}`` when the app comes to the foreground (a launch included); ``$hide`` ``{}``
  when it goes to the background, after a ``$pageleave`` for the page still shown.
- ``$pageview`` ``{path, query, referrer}`` when a page is shown (the referrer is the page
  shown before it in the same session, ``''`` for the first); ``$pageleave``
  ``{path, duration_ms}`` when that page is hidden or unloaded (once per view). A page shown
  while another is open closes the other first. The query is the one given with the page,
  else the one it was loaded with, else the launch query for the launch page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

SESSION_TIMEOUT_MS = 30 * 60 * 1000
BUILTIN_EVENTS = ("$launch", "$show", "$hide", "$pageview", "$pageleave")
_URI_SAFE = "-_.!~*'()"  # what JavaScript's encodeURIComponent leaves alone


@dataclass(frozen=True)
class BuiltinEvent:
    event: str
    data: dict[str, Any]
    t: int
    page: str | None


def _js_text(value: Any) -> str:
    """``value`` as JavaScript's ``String()`` writes it, so both runtimes send the same query
    (vectors/lifecycle.json, ``query_strings``): Python wrote ``None``, ``[1, 2]``, ``1e-07``."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _js_number(value)
    if isinstance(value, list | tuple):
        return ",".join("" if v is None else _js_text(v) for v in value)
    if isinstance(value, Mapping):
        return "[object Object]"
    return str(value)


def _js_number(x: float) -> str:
    """ECMAScript's Number::toString: the shortest digits that read back (Python's repr finds
    the same), plain from 1e-6 up to 1e21, with an exponent (``1e+21``, ``1e-7``) beyond."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    exact = Decimal(repr(abs(x)))
    digits = "".join(map(str, exact.as_tuple().digits))
    n = len(digits) + int(exact.as_tuple().exponent)  # the point's place: 0.DIGITS x 10^n
    digits = digits.rstrip("0")
    k = len(digits)
    sign = "-" if x < 0 else ""
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def query_string(query: Any) -> str:
    """A query as WeChat's string form (``a=1&b=2``), encoded as ``encodeURIComponent`` does."""
    if query is None:
        return ""
    if isinstance(query, str):
        return query.removeprefix("?")
    if isinstance(query, Mapping):
        return "&".join(
            f"{quote(str(k), safe=_URI_SAFE)}={quote(_js_text(v), safe=_URI_SAFE)}"
            for k, v in query.items()
        )
    return _js_text(query)


class Lifecycle:
    def __init__(self, new_id: Callable[[], str], timeout_ms: int = SESSION_TIMEOUT_MS) -> None:
        self._new_id = new_id
        self.timeout_ms = timeout_ms
        self.session: str | None = None
        self.scene: int | None = None
        self.launched = False
        self.hidden_at: int | None = None
        self._open: tuple[str, int] | None = None  # (path, shown at)
        self._last_path = ""
        self._launch_path = ""
        self._launch_query = ""
        self._page_queries: dict[str, str] = {}

    # --- sessions ---
    def session_at(self, t: int) -> str:
        if self.session is None:
            self._new_session()
        assert self.session is not None
        return self.session

    def _new_session(self) -> None:
        self.session = self._new_id()
        self._last_path = ""

    def _expired(self, t: int) -> bool:
        return self.hidden_at is not None and t - self.hidden_at >= self.timeout_ms

    def context(self, t: int) -> dict[str, Any]:
        """What every event at ``t`` carries besides the batch's context."""
        out: dict[str, Any] = {"$session": self.session_at(t)}
        if self.scene is not None:
            out["$scene"] = self.scene
        return out

    def _event(self, name: str, data: dict[str, Any], t: int) -> BuiltinEvent:
        return BuiltinEvent(name, data, t, self._open[0] if self._open else None)

    # --- the app ---
    def launch(
        self, t: int, path: str = "", query: Any = None, scene: int | None = None
    ) -> list[BuiltinEvent]:
        cold = not self.launched
        was_hidden = cold or self.hidden_at is not None
        if cold or self.session is None or self._expired(t):
            self._new_session()
        self.launched = True
        self.hidden_at = None
        if isinstance(scene, int) and not isinstance(scene, bool):
            self.scene = scene
        self._launch_path = path
        self._launch_query = query_string(query)
        data = {"cold": cold, "path": path, "query": self._launch_query}
        out = [self._event("$launch", data, t)]
        if was_hidden:
            out.append(self._event("$show", {}, t))
        return out

    def show(self, t: int) -> list[BuiltinEvent]:
        """The app comes to the foreground."""
        if self.hidden_at is None and self.session is not None:
            return []
        if self.session is None or self._expired(t):
            self._new_session()
        self.hidden_at = None
        return [self._event("$show", {}, t)]

    def hide(self, t: int) -> list[BuiltinEvent]:
        """The app goes to the background."""
        if self.hidden_at is not None:
            return []
        self.session_at(t)
        out = self.page_leave(t, self._open[0]) if self._open else []
        self.hidden_at = t
        out.append(self._event("$hide", {}, t))
        return out

    # --- pages ---
    def page_load(self, path: str, query: Any) -> None:
        if query is not None:
            self._page_queries[path] = query_string(query)

    def page_show(self, t: int, path: str, query: Any = None) -> list[BuiltinEvent]:
        if self._open is not None and self._open[0] == path and self.hidden_at is None:
            return []
        out = self.show(t) if self.hidden_at is not None or self.session is None else []
        if self._open is not None:
            out.extend(self.page_leave(t, self._open[0]))
        if query is None:
            default = self._launch_query if path == self._launch_path else ""
            q = self._page_queries.get(path, default)
        else:
            q = query_string(query)
        referrer = self._last_path
        self._open = (path, t)
        self._last_path = path
        out.append(self._event("$pageview", {"path": path, "query": q, "referrer": referrer}, t))
        return out

    def page_leave(self, t: int, path: str) -> list[BuiltinEvent]:
        """The page is hidden or unloaded."""
        if self._open is None or self._open[0] != path:
            return []
        duration = max(0, round(t - self._open[1]))
        out = [self._event("$pageleave", {"path": path, "duration_ms": duration}, t)]
        self._open = None
        return out


__all__ = ["BUILTIN_EVENTS", "SESSION_TIMEOUT_MS", "BuiltinEvent", "Lifecycle", "query_string"]
