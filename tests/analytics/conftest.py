"""Fixtures of the analytics tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from miniport.analytics.clickhouse_store import ClickHouseEventStore
from tests.conftest import event_keys_at


@pytest.fixture(params=["clickhouse", "chdb"])
def one_store(
    request: pytest.FixtureRequest, clickhouse_url: str, tmp_path: Path
) -> Iterator[ClickHouseEventStore]:
    """One node, on the real server or on chDB (the current engine)."""
    if request.param == "chdb":
        store = ClickHouseEventStore.in_process(str(tmp_path / "chdb"))
    else:
        store = ClickHouseEventStore.from_url(clickhouse_url, event_keys_at(tmp_path / "k.db"))
    try:
        yield store
    finally:
        store.close()
