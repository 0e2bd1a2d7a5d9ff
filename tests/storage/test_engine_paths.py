"""The SQLite state file's directory is made where the file is: the settings' URL quotes the
path (' ', '#', '?', '%', non-ASCII), and the quoted text was made as a stray directory
beside the data directory (``sp ace`` gained an empty ``sp%20ace``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from miniport.config import Settings
from miniport.storage.db import make_engine


@pytest.mark.parametrize("name", ["sp ace", "hash#tag", "what?", "100%", "données", "a%20b"])
def test_the_state_directory_is_made_at_the_decoded_path_and_nowhere_else(
    tmp_path: Path, name: str
) -> None:
    data = tmp_path / name / "data"  # neither exists yet: make_engine makes them
    engine = make_engine(Settings(data_dir=data).state_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
    assert (data / "miniport.db").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
