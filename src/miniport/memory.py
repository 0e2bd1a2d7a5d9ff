"""Giving memory back to the operating system after many connections close.

After 10,000 device streams closed, the server's resident memory stayed where it was (issue
13): each closed connection leaves reference cycles (uvicorn's protocol, its request cycle and
parser point at each other), which only a full collection frees, and the serving processes make
full collections rare (``gc_tuning``); and glibc's malloc keeps freed chunks in its heap.
``release`` does both: a full collection, then ``trim`` (``malloc_trim(0)``: every free page
back to the system; nothing where the C library is not glibc). It costs a full collection and
a walk of the heap, so callers use it after a wave of closes, not after each.

Before that it calls the hooks registered with ``on_release``: caches drop what has expired.
Python's small-object allocator returns an arena (1 MiB) only once every object in it is
gone, so one cache entry made while 10,000 streams opened, kept after they closed, holds the
arena it was made in, full of the streams' freed memory. And ``shrink`` rebuilds, in place, a
dict or set whose table grew for many more entries than it holds (neither ever shrinks by
itself)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
import weakref
from collections.abc import Callable
from typing import Any

_trim: Callable[[int], int] | None = None
_looked = False


def _malloc_trim() -> Callable[[int], int] | None:
    global _trim, _looked
    if not _looked:
        _looked = True
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name) if name else None
            _trim = getattr(libc, "malloc_trim", None)
        except OSError:
            _trim = None
    return _trim


def trim() -> bool:
    """Return free heap pages to the operating system. True: the C library did (some were
    free); False: nothing returned, or not glibc."""
    malloc_trim = _malloc_trim()
    return bool(malloc_trim(0)) if malloc_trim is not None else False


_hooks: list[weakref.WeakMethod[Callable[[], Any]]] = []


def on_release(method: Callable[[], Any]) -> None:
    """Call the bound ``method`` at each ``release`` while its object lives (held weakly)."""
    _hooks[:] = [hook for hook in _hooks if hook() is not None]
    _hooks.append(weakref.WeakMethod(method))


def release() -> None:
    """Let the hooks drop what they no longer need, free what closed connections left in
    reference cycles, then return free pages."""
    for hook in list(_hooks):
        method = hook()
        if method is not None:
            method()
    gc.collect()
    trim()


def shrink(container: dict[Any, Any] | set[Any]) -> None:
    """Rebuild ``container``'s table, in place, when it is several times larger than its
    entries need (a dict or set keeps the table it grew to when entries leave). An empty one
    is cleared, which frees its table without allocating anything: a new object made now
    would outlive the wave among the freed memory and hold its arena."""
    if sys.getsizeof(container) <= 1024 or sys.getsizeof(container) <= 128 * len(container):
        return  # a compact table takes less than ~53 bytes an entry (a set), ~40 (a dict)
    if isinstance(container, dict):
        items = list(container.items())
        container.clear()
        container.update(items)
    else:
        members = list(container)
        container.clear()
        container.update(members)
