"""Giving memory back to the operating system after many connections close.

After 10,000 device streams closed, the server's resident memory stayed where it was (issue
13): each closed connection leaves reference cycles (uvicorn's protocol, its request cycle and
parser point at each other), which only a full collection frees, and the serving processes make
full collections rare (``gc_tuning``); and glibc's malloc keeps freed chunks in its heap.
``release`` does both: a full collection, then ``trim`` (``malloc_trim(0)``: every free page
back to the system; nothing where the C library is not glibc). It costs a full collection and
a walk of the heap, so callers use it after a wave of closes, not after each."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable

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


def release() -> None:
    """Free what closed connections left in reference cycles, then return free pages."""
    gc.collect()
    trim()
