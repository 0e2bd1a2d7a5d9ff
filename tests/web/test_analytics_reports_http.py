"""Reports over HTTP on a small known data set: event analysis (metrics, group-by, filters
AND/OR, granularity, time zone, date range), funnels and CSV export."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.analytics_api import GOODS_CLICK, PURCHASE, Api, now_ms

H = 3_600_000


def day0() -> datetime:
    """Midnight UTC three days ago: every event of the data set is within the default week."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=3)


def at(hours: float) -> int:
    return int(day0().timestamp() * 1000 + hours * H)


def day(offset: int) -> str:
    return (day0() + timedelta(days=offset)).date().isoformat()


DATA = [  # user, event, data, hours after day0
    ("u1", "goods_click", {"price": 10, "color": "red"}, 10),
    ("u1", "purchase", {"price": 100, "color": "red"}, 11),
    ("u2", "goods_click", {"price": 20, "color": "blue"}, 19),
    ("u2", "purchase", {"price": 50, "color": "blue"}, 20),  # next day in Asia/Shanghai
    ("u3", "goods_click", {"price": 5, "color": "red"}, 21),
    ("u1", "purchase", {"price": 30, "color": "red"}, 34),
]


@pytest.fixture
async def loaded(api: Api) -> Api:
    await api.define(PURCHASE, GOODS_CLICK, publish=True)
    for n, (user, event, data, hours) in enumerate(DATA):
        extra = (
            {"page": "pages/list/list", "trigger": "click", "action": "report"}
            if event == "goods_click"
            else {}
        )
        batch = {
            "sent_at": now_ms(),
            "events": [{"id": f"e{n}", "event": event, "data": data, "ts": at(hours), **extra}],
        }
        assert (await api.report(user, batch))["accepted"] == 1
    return api


async def report(api: Api, **body: Any) -> list[dict[str, Any]]:
    return (await api.ok("POST", "/report", {"event": "purchase", **body}))["rows"]  # type: ignore[no-any-return]


async def test_every_metric_over_the_whole_range(loaded: Api) -> None:
    metrics = [
        "count",
        "users",
        "per_user",
        "sum:price",
        "max:price",
    ]
    assert await report(loaded, metrics=metrics, granularity="all") == [
        {
            "bucket": "all",
            "count": 3,
            "users": 2,
            "per_user": 1.5,
            "sum:price": 180,
            "max:price": 100,
        }
    ]
    metrics = ["min:price", "avg:price", "per_user:price", "distinct:color"]
    assert await report(loaded, metrics=metrics, granularity="all") == [
        {
            "bucket": "all",
            "min:price": 30,
            "avg:price": 60.0,
            "per_user:price": 90.0,
            "distinct:color": 2,
        }
    ]


async def test_days_in_a_time_zone_and_hours(loaded: Api) -> None:
    assert await report(loaded, metrics=["count"]) == [
        {"bucket": day(0), "count": 2},
        {"bucket": day(1), "count": 1},
    ]
    assert await report(loaded, metrics=["count"], tz="Asia/Shanghai") == [
        {"bucket": day(0), "count": 1},
        {"bucket": day(1), "count": 2},
    ]
    hours = await report(loaded, metrics=["count"], granularity="hour")
    assert [r["bucket"] for r in hours] == [f"{day(0)}T11:00", f"{day(0)}T20:00", f"{day(1)}T10:00"]
    # a date range is whole days in the time zone, the end day included
    only = await report(
        loaded, metrics=["count"], granularity="all", **{"from": day(1), "to": day(1)}
    )
    assert only == [{"bucket": "all", "count": 1}]


async def test_group_by_and_filters(loaded: Api) -> None:
    grouped = await report(
        loaded, metrics=["count", "sum:price"], group_by=["color"], granularity="all"
    )
    assert grouped == [
        {"bucket": "all", "color": "blue", "count": 1, "sum:price": 50},
        {"bucket": "all", "color": "red", "count": 2, "sum:price": 130},
    ]
    assert await report(loaded, filters=["price>=50"], granularity="all") == [
        {"bucket": "all", "count": 2}
    ]
    both = await report(loaded, filters=["color=red", "price>=50"], granularity="all")
    assert both == [{"bucket": "all", "count": 1}]
    either = await report(loaded, filters=["color=blue", "price>=100"], any=True, granularity="all")
    assert either == [{"bucket": "all", "count": 2}]
    assert await report(loaded, filters=["color!=red"], granularity="all") == [
        {"bucket": "all", "count": 1}
    ]


async def test_report_limits_and_bad_queries(loaded: Api) -> None:
    for body, fragment in (
        (
            {"metrics": ["count", "users", "per_user", "sum:price", "max:price", "min:price"]},
            "metrics",
        ),
        ({"filters": ["color=red"] * 6}, "filters"),
        ({"metrics": ["sum:color"]}, "color"),
        ({"metrics": ["avg:size"]}, "size"),
        ({"filters": ["price~3"]}, "price~3"),
        ({"tz": "Mars/Olympus"}, "Mars/Olympus"),
        ({"granularity": "week"}, "granularity"),
    ):
        status, answer = await loaded.call("POST", "/report", {"event": "purchase", **body})
        assert status == 422, body
        assert fragment in answer["message"], (body, answer)


async def test_funnels(loaded: Api) -> None:
    rows = (await loaded.ok("POST", "/funnel", {"steps": ["goods_click", "purchase"]}))["rows"]
    assert rows == [
        {
            "step": 1,
            "event": "goods_click",
            "users": 3,
            "conversion": 1.0,
            "step_conversion": 1.0,
            "drop_off": 0,
            "median_s": pytest.approx(3600, abs=1),  # times are corrected by sent_at
        },
        {
            "step": 2,
            "event": "purchase",
            "users": 2,
            "conversion": 2 / 3,
            "step_conversion": 2 / 3,
            "drop_off": 1,
            "median_s": None,
        },
    ]
    rows = (
        await loaded.ok(
            "POST", "/funnel", {"steps": ["goods_click:color=red", "purchase:price>=50"]}
        )
    )["rows"]
    assert [r["users"] for r in rows] == [2, 1]
    rows = (
        await loaded.ok(
            "POST", "/funnel", {"steps": ["goods_click", "purchase"], "group_by": "color"}
        )
    )["rows"]
    assert [(r["color"], r["step"], r["users"], r["conversion"]) for r in rows] == [
        ("blue", 1, 1, 1.0),
        ("blue", 2, 1, 1.0),
        ("red", 1, 2, 1.0),
        ("red", 2, 1, 0.5),
    ]
    # order matters: nobody clicked after purchasing
    rows = (await loaded.ok("POST", "/funnel", {"steps": ["purchase", "goods_click"]}))["rows"]
    assert [r["users"] for r in rows] == [2, 0]
    status, _ = await loaded.call("POST", "/funnel", {"steps": ["purchase"]})
    assert status == 422


async def test_funnel_window_and_order(loaded: Api) -> None:
    steps = ["goods_click", "purchase"]
    found = await loaded.ok("POST", "/funnel", {"steps": steps, "window": "30m"})
    assert [r["users"] for r in found["rows"]] == [3, 0]
    assert found["window_ms"] == 30 * 60_000 and found["order"] == "strict"
    found = await loaded.ok("POST", "/funnel", {"steps": steps, "window": "61m"})
    assert [r["users"] for r in found["rows"]] == [3, 2]
    assert found["rows"][0]["median_s"] == pytest.approx(3600, abs=1)
    # any order: the purchase may come first, but never before the step-1 event
    found = await loaded.ok("POST", "/funnel", {"steps": steps[::-1], "order": "any"})
    assert [r["users"] for r in found["rows"]] == [2, 0] and found["order"] == "any"
    for body, fragment in (
        ({"window": "0m"}, "too short"),
        ({"window": "-1h"}, "not a duration"),
        ({"window": "abc"}, "not a duration"),
        ({"window": "91d"}, "at most 90d"),
        ({"order": "sideways"}, "strict or any"),
        ({"window": 60}, "window"),
    ):
        status, answer = await loaded.call("POST", "/funnel", {"steps": steps, **body})
        assert status == 422, body
        assert fragment in str(answer), (body, answer)


async def test_csv_export(loaded: Api) -> None:
    status, text = await loaded.call("GET", "/export", event="goods_click")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["time", "user", "page", "trigger", "action", "price", "color"]
    assert [(r["user"], r["price"], r["color"], r["page"], r["trigger"]) for r in rows] == [
        ("u1", "10", "red", "pages/list/list", "click"),
        ("u2", "20", "blue", "pages/list/list", "click"),
        ("u3", "5", "red", "pages/list/list", "click"),
    ]
    assert rows[0]["time"].startswith(f"{day(0)}T10:00:00.") and rows[0]["time"].endswith("Z")
    status, text = await loaded.call("GET", "/export", event="purchase", **{"from": day(1)})
    assert [r["price"] for r in csv.DictReader(io.StringIO(text))] == ["30"]
