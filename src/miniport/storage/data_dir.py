"""The data directory's locks: one server at a time uses a data directory (its SQLite and
DuckDB files, its ``server.json``: ``serve.lock``, exclusive), any number of workers beside it
on SQLite (``workers.lock``, shared), and a restore replaces its files only while neither
runs (it takes both, exclusive)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_FILE = "serve.lock"
WORKERS_LOCK_FILE = "workers.lock"
Busy = Callable[[], Exception]


# how long the lock of a starting server or restore is tried for: a `miniport` command takes it
# for a moment to tell a server's server.json from a stale one
SETTLE_S = 1.0


def holding(
    data_dir: Path, busy: Busy, *, wait_s: float = SETTLE_S
) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock on ``data_dir`` for the life of the block (released by the OS when the
    process ends, however it ends); held by another process for ``wait_s``, ``busy()`` is
    raised."""
    return locked(data_dir / LOCK_FILE, busy, wait_s=wait_s)


def working(data_dir: Path, busy: Busy) -> contextlib.AbstractContextManager[None]:
    """A worker's shared lock on ``data_dir`` for the life of the block (workers share it;
    a restore, which takes it exclusively, keeps them out and waits for none): ``busy()``
    while a restore runs."""
    return locked(data_dir / WORKERS_LOCK_FILE, busy, shared=True)


def no_workers(data_dir: Path, busy: Busy) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock on ``data_dir``'s workers' lock: ``busy()`` while a worker runs."""
    return locked(data_dir / WORKERS_LOCK_FILE, busy)


@contextlib.contextmanager
def locked(
    path: Path, busy: Busy, *, shared: bool = False, wait_s: float = 0.0
) -> Iterator[None]:
    """An exclusive (or ``shared``) lock on the file ``path`` (made, with its directory, when
    missing) for the life of the block; held by another process (for ``wait_s``, tried every
    50 ms), ``busy()`` is raised."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise busy() from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
