"""The data directory's locks, between real processes' file descriptions: a server's (held by
`miniport` commands for a moment, to tell a live server.json from a stale one: a starting
server waits that moment out), the workers' (shared) and a restore's (exclusive of both)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from miniport.storage.data_dir import holding, locked, no_workers, working


class Busy(Exception):
    pass


def test_a_lock_held_for_a_moment_is_waited_for_a_held_one_refused(tmp_path: Path) -> None:
    taken, release = threading.Event(), threading.Event()

    def probe() -> None:  # a `miniport` command looking at server.json
        with holding(tmp_path, Busy, wait_s=0):
            taken.set()
            release.wait(10)

    prober = threading.Thread(target=probe)
    prober.start()
    assert taken.wait(10)
    with pytest.raises(Busy), holding(tmp_path, Busy, wait_s=0):
        pass
    threading.Timer(0.2, release.set).start()
    with holding(tmp_path, Busy, wait_s=5):  # the probe ends within the wait
        pass
    prober.join()


def test_workers_share_their_lock_which_a_restore_takes_alone(tmp_path: Path) -> None:
    restore = no_workers(tmp_path, Busy)
    with working(tmp_path, Busy), working(tmp_path, Busy), pytest.raises(Busy), restore:
        pass  # two workers: no restore
    worker = working(tmp_path, Busy)
    with no_workers(tmp_path, Busy), pytest.raises(Busy), worker:
        pass  # a restore: no worker starts meanwhile
    shared, exclusive = locked(tmp_path / "x", Busy, shared=True), locked(tmp_path / "x", Busy)
    with shared, pytest.raises(Busy), exclusive:
        pass
