"""Which analytics event store a platform uses: DuckDB in the data directory (the default,
nothing to install) or ClickHouse when ``MINIPORT_ANALYTICS_URL`` is set. The store is
opened on first use (see :class:`~miniport.services.analytics.AnalyticsService`); a
ClickHouse that cannot be reached then answers 503 and the next use tries again."""

from __future__ import annotations

from collections.abc import Callable

from ..analytics.event_store import EventStore
from ..config import Settings
from .analytics import open_duckdb

__all__ = ["open_clickhouse", "open_event_store"]


def open_clickhouse(
    url: str, state_url: str, ca_file: str | None = None
) -> Callable[[], EventStore]:
    """ClickHouse at ``url``, with the index of stored event ids in the state database at
    ``state_url`` (every node of a deployment shares it: PostgreSQL). Opening does no I/O (the
    service opens the store on its event loop): the process migrated the state database at
    start, and the store connects to both on first use, in the thread that uses it."""
    # imported here: processes without ClickHouse (most CLI commands) do not pay for it
    from ..analytics.clickhouse_store import ClickHouseEventStore
    from ..analytics.clickhouse_transport import HttpTransport, parse_clickhouse_url
    from ..storage.db import make_engine
    from ..storage.event_keys import EventKeyIndex

    parsed = parse_clickhouse_url(url, ca_file)  # a malformed URL fails at start

    def opener() -> EventStore:
        return ClickHouseEventStore(HttpTransport(parsed), EventKeyIndex(make_engine(state_url)))

    return opener


def open_event_store(settings: Settings) -> Callable[[], EventStore]:
    if settings.analytics_url:
        return open_clickhouse(
            settings.analytics_url, settings.state_url, settings.analytics_ca_file
        )
    return open_duckdb(str(settings.events_path))
