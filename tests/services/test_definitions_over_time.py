"""Definitions over months of use, on SQLite and PostgreSQL: events deleted and created again,
edits that meet a publish."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from miniport.platform import Platform


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'state.db'}"


def api_event(name: str, fields: list[str]) -> dict[str, Any]:
    return {"name": name, "display_name": name.title(), "mode": "api", "fields": fields}


async def app_with_price(
    platforms: Callable[..., Awaitable[Platform]], tmp_path: Path, url: str
) -> tuple[Platform, str]:
    p = await platforms(database_url=url, data_dir=tmp_path / "data")
    appid = (await p.apps.create("shop", "test")).appid
    await p.analytics.add_field(appid, {"name": "price", "type": "int"})
    return p, appid


async def test_a_deleted_events_id_is_never_given_to_another_event(
    platforms: Callable[..., Awaitable[Platform]], tmp_path: Path, state_url: str
) -> None:
    """An app version in users' hands calls ``reportEvent(<id>)`` with the id it was built
    with: once that event is deleted, the id must be refused, not counted as a newer event."""
    p, appid = await app_with_price(platforms, tmp_path, state_url)
    s = p.analytics
    await s.save_event(appid, api_event("view", ["price"]))
    buy = await s.save_event(appid, api_event("buy", ["price"]))
    await s.publish(appid, "dev")
    await s.delete_event(appid, "buy")
    await s.publish(appid, "dev")
    refund = await s.save_event(appid, api_event("refund", ["price"]))
    await s.publish(appid, "dev")

    assert refund["id"] != buy["id"]
    now = int(p.clock.now() * 1000)
    old_app = {"sent_at": now, "events": [{"id": "e1", "event": buy["id"], "data": {"price": 5}}]}
    verdict = await s.ingest(appid, "u1", old_app)
    assert verdict["accepted"] == 0
    assert [r["code"] for r in verdict["rejected"]] == ["unknown_event"]
