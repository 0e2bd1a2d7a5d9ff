"""Watching what a ClickHouse event store sends: which of its statements are deletes (mutations,
run by the server in the background) and when it waits for them."""

from __future__ import annotations

from typing import Any

from miniport.analytics.clickhouse_store import ClickHouseEventStore


def record_deletes_and_waits(store: ClickHouseEventStore) -> list[str]:
    """From now on, ``"delete"`` for each ``ALTER TABLE … DELETE`` that ``store`` sends and
    ``"wait"`` each time it starts waiting for mutations, in order (a list that grows)."""
    steps: list[str] = []
    execute, wait = store._t.execute, store._wait_for_mutations

    def recorded_execute(sql: str, *args: Any, **kw: Any) -> Any:
        if sql.startswith("ALTER TABLE") and " DELETE WHERE " in sql:
            steps.append("delete")
        return execute(sql, *args, **kw)

    def recorded_wait(*args: Any) -> None:
        steps.append("wait")
        wait(*args)

    store._t.execute = recorded_execute  # type: ignore[method-assign]
    store._wait_for_mutations = recorded_wait  # type: ignore[method-assign]
    return steps


def waited_after_the_last_delete(steps: list[str]) -> bool:
    """Whether ``steps`` has a delete, and a wait after the last one."""
    if "delete" not in steps:
        return False
    last = len(steps) - 1 - steps[::-1].index("delete")
    return "wait" in steps[last:]
