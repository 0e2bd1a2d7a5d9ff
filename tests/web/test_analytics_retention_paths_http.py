"""Retention and paths over HTTP on a small known data set, and their bad-input answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.analytics_api import GOODS_CLICK, PURCHASE, Api, now_ms

MINUTE = 60_000


def day0() -> datetime:
    """Midnight UTC three days ago (inside the default windows)."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=3)


def at(minutes: float) -> int:
    """10:00 UTC on day0, plus minutes."""
    return int(day0().timestamp() * 1000) + 10 * 3_600_000 + int(minutes * MINUTE)


def day(offset: int) -> str:
    return (day0() + timedelta(days=offset)).date().isoformat()


DATA = [  # user, event, page, minutes after day0 10:00
    ("u1", "goods_click", "list", 0),
    ("u1", "goods_click", "item", 5),
    ("u1", "purchase", "item", 6),
    ("u2", "goods_click", "list", 0),
    ("u2", "purchase", "cart", 10),
    ("u3", "goods_click", "list", 0),
    ("u3", "goods_click", "item", 24 * 60),  # the next day: another session, another cohort
]


@pytest.fixture
async def loaded(api: Api) -> Api:
    await api.define(PURCHASE, GOODS_CLICK, publish=True)
    for n, (user, event, page, minutes) in enumerate(DATA):
        item = {"id": f"e{n}", "event": event, "data": {"price": 1}, "ts": at(minutes)}
        batch = {"sent_at": now_ms(), "events": [{**item, "page": page}]}
        assert (await api.report(user, batch))["accepted"] == 1
    return api


async def test_retention_cohorts(loaded: Api) -> None:
    body = {"start": "goods_click", "return": "purchase", "periods": 2,
            "from": day(0), "to": day(2)}  # fmt: skip
    found = await loaded.ok("POST", "/retention", body)
    assert found["cohorts"] == [
        {"cohort": day(0), "size": 3, "retained": [2, 0, 0]},
        {"cohort": day(1), "size": 1, "retained": [0, 0]},
    ]
    grouped = await loaded.ok("POST", "/retention", {**body, "group_by": "page"})
    assert grouped["cohorts"] == [
        {"cohort": day(0), "page": "list", "size": 3, "retained": [2, 0, 0]},
        {"cohort": day(1), "page": "item", "size": 1, "retained": [0, 0]},
    ]
    new = await loaded.ok("POST", "/retention", {**body, "start": "$new", "return": "$any"})
    assert new["cohorts"] == [{"cohort": day(0), "size": 3, "retained": [3, 1, 0]}]
    # the default window: the last periods + 1 days up to now
    default = await loaded.ok("POST", "/retention", {"start": "$any", "return": "$any"})
    assert default["cohorts"][0]["cohort"] == day(0)


async def test_paths_by_page_and_by_event(loaded: Api) -> None:
    pages = await loaded.ok("POST", "/paths", {"start": "list", "depth": 2})
    assert pages["users"] == 3
    assert pages["links"] == [
        {"depth": 1, "from": "list", "to": "cart", "users": 1},
        {"depth": 1, "from": "list", "to": "item", "users": 1},
    ]
    events = await loaded.ok("POST", "/paths", {"start": "goods_click", "by": "event"})
    assert events["links"] == [{"depth": 1, "from": "goods_click", "to": "purchase", "users": 2}]
    assert events["nodes"] == [
        {"depth": 0, "name": "goods_click", "users": 3, "ended": 1},
        {"depth": 1, "name": "purchase", "users": 2, "ended": 2},
    ]


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/retention", {"start": "nope", "return": "purchase"}, 404, "'nope' is not defined"),
        ("/retention", {"start": "$any", "return": "nope"}, 404, "'nope' is not defined"),
        ("/retention", {"start": "$any", "return": "$any", "periods": 0}, 422, "periods is 1"),
        ("/retention", {"start": "$any", "return": "$any", "periods": 31}, 422, "periods is 1"),
        ("/retention", {"start": "$any", "return": "$any", "unit": "month"}, 422, "unit"),
        ("/retention", {"start": "$any", "return": "$any", "tz": "Mars/Base"}, 422, "Mars/Base"),
        ("/retention", {"start": "$any", "return": "$any", "from": day(2), "to": day(0)}, 422,
         "before"),
        ("/retention", {"start": "$any", "return": "$any", "group_by": "nope"}, 422, "'nope'"),
        ("/retention", {"start": "$any", "return": "$any", "perods": 7}, 422, "perods"),
        ("/paths", {"start": "list", "depth": 6}, 422, "depth is 1 to 5"),
        ("/paths", {"start": "list", "depth": "3"}, 422, "depth"),
        ("/paths", {"start": "list", "by": "screen"}, 422, "page or event"),
        ("/paths", {"start": "nope", "by": "event"}, 404, "'nope' is not defined"),
        ("/paths", {"start": "list", "from": day(2), "to": day(0)}, 422, "before"),
    ],
)  # fmt: skip
async def test_bad_queries(
    loaded: Api, path: str, body: dict[str, Any], status: int, fragment: str
) -> None:
    got, answer = await loaded.call("POST", path, body)
    assert got == status, answer
    assert fragment in answer["message"], answer
