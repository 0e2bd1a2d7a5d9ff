"""The data directory's lock: one server at a time uses a data directory (its SQLite and
DuckDB files, its ``server.json``), and a restore replaces its files only while none does."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_FILE = "serve.lock"


def holding(
    data_dir: Path, busy: Callable[[], Exception]
) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock on ``data_dir`` for the life of the block (released by the OS when the
    process ends, however it ends); held by another process, ``busy()`` is raised."""
    return locked(data_dir / LOCK_FILE, busy)


@contextlib.contextmanager
def locked(path: Path, busy: Callable[[], Exception]) -> Iterator[None]:
    """An exclusive lock on the file ``path`` (made, with its directory, when missing) for the
    life of the block; held by another process, ``busy()`` is raised."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy() from None
        yield
    finally:
        os.close(fd)
