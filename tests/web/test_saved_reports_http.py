"""Saved reports, dashboards and one user's events over the real HTTP admin API, on SQLite and
on PostgreSQL: a saved report runs to exactly what its report call answers, a dashboard runs
its reports under its own range in its order, each kind of bad input has a clear error, and a
user's events can be looked up and erased (developers only, audited)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from miniport.storage.members import MemberStore
from tests.conftest import make_settings, running_server
from tests.support.analytics_api import GOODS_CLICK, PURCHASE, Api, OpenApi, now_ms

H = 3_600_000


def day0() -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=2)


def at(hours: float) -> int:
    return int(day0().timestamp() * 1000 + hours * H)


def day(offset: int) -> str:
    return (day0() + timedelta(days=offset)).date().isoformat()


DATA = [  # user, event, price, color, hours after day0
    ("u1", "goods_click", 10, "red", 10),
    ("u1", "purchase", 100, "red", 11),
    ("u2", "goods_click", 20, "blue", 19),
    ("u2", "purchase", 50, "blue", 30),
    ("u1", "purchase", 30, None, 34),
]


@pytest.fixture
async def api(tmp_path: Path, db: dict[str, Any], open_api: OpenApi) -> AsyncIterator[Api]:
    async with running_server(make_settings(tmp_path, **db)) as server:
        a = await open_api(server, None)
        await a.define(PURCHASE, GOODS_CLICK, publish=True)
        for n, (user, event, price, color, hours) in enumerate(DATA):
            data = {"price": price, **({"color": color} if color else {})}
            batch = {"sent_at": now_ms(), "events": [
                {"id": f"e{n}", "event": event, "data": data, "ts": at(hours)}]}
            assert (await a.report(user, batch))["accepted"] == 1
        yield a


async def as_role(api: Api, role: str) -> dict[str, str]:
    """Headers of a new API key with ``role``, a member of the app with that role."""
    p = api.platform
    key = (await p.auth.create_key("api", f"k-{role}", role))["key"]
    await p.db.write(MemberStore(p.db).put, api.appid, f"key:k-{role}", role, 0.0, "test")
    return {"Authorization": f"Bearer {key}"}


async def call_as(
    api: Api, headers: dict[str, str], method: str, path: str, body: Any = None, **params: Any
) -> tuple[int, Any]:
    url = f"{api.url}/admin/v1/apps/{api.appid}/analytics{path}"
    async with api.session.request(
        method, url, json=body, params=params or None, headers=headers
    ) as resp:
        return resp.status, await resp.json()


REPORT = {"event": "purchase", "metrics": ["count", "sum:price"], "group_by": ["color"],
          "granularity": "all", "from": day(0), "to": day(2)}
FUNNEL = {"steps": ["goods_click", "purchase"], "from": day(0), "to": day(2)}


async def test_a_saved_report_runs_to_what_its_report_answers(api: Api) -> None:
    saved = await api.ok("POST", "/saved", {"name": "Sales by colour", "kind": "report",
                                            "params": REPORT})
    assert saved["kind"] == "report" and saved["params"]["event"] == "purchase"
    assert saved["params"]["tz"] == "UTC"  # defaults filled in when saved
    await api.ok("POST", "/saved", {"name": "buy funnel", "kind": "funnel", "params": FUNNEL})
    direct = await api.ok("POST", "/report", REPORT)
    assert direct["rows"]  # not vacuous
    assert await api.ok("POST", "/saved/Sales%20by%20colour/run") == direct
    assert await api.ok("POST", "/saved/buy%20funnel/run") == await api.ok(
        "POST", "/funnel", FUNNEL)
    listed = await api.ok("GET", "/saved")
    assert [(r["name"], r["kind"]) for r in listed["reports"]] == [
        ("Sales by colour", "report"), ("buy funnel", "funnel")]
    shown = await api.ok("GET", "/saved/buy%20funnel")
    assert shown["params"]["steps"] == ["goods_click", "purchase"]
    # every kind runs: a saved retention answers as the report itself
    retention = {"start": "$any", "return": "$any", "from": REPORT["from"], "to": REPORT["to"]}
    await api.ok("POST", "/saved", {"name": "week 1", "kind": "retention", "params": retention})
    assert await api.ok("POST", "/saved/week%201/run") == await api.ok(
        "POST", "/retention", retention)
    assert await api.ok("DELETE", "/saved/week%201") == {"name": "week 1", "status": "deleted"}
    status, body = await api.call("GET", "/saved/week%201")
    assert status == 404 and body["message"] == "saved report 'week 1' not found"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"name": "x", "kind": "pie", "params": {}}, 422, "unknown report kind 'pie'"),
        ({"name": "x", "kind": "report", "params": {"metrics": ["count"]}}, 422,
         "params.event: Field required"),
        ({"name": "x", "kind": "report", "params": {"event": "purchase", "colour": 1}}, 422,
         "params.colour: Extra inputs are not permitted"),
        ({"name": "x", "kind": "funnel", "params": {"steps": ["one"]}}, 422,
         "params.steps: List should have at least 2 items"),
        ({"name": "x", "kind": "overview", "params": [1, 2]}, 422, "must be a JSON object"),
        ({"name": "", "kind": "report", "params": {"event": "a"}}, 422, "needs a name"),
        ({"name": "n" * 65, "kind": "report", "params": {"event": "a"}}, 422, "at most 64"),
        ({"name": " x", "kind": "report", "params": {"event": "a"}}, 422, "spaces"),
        ({"name": "a/b", "kind": "report", "params": {"event": "a"}}, 422, "no slash"),
        ({"name": "..", "kind": "report", "params": {"event": "a"}}, 422, "only dots"),
        ({"name": "a\tb", "kind": "report", "params": {"event": "a"}}, 422, "control"),
    ],
)
async def test_bad_saved_reports_are_refused(
    api: Api, body: dict[str, Any], status: int, says: str
) -> None:
    got, answer = await api.call("POST", "/saved", body)
    assert got == status and says in answer["message"], answer


async def test_duplicate_and_missing_names(api: Api) -> None:
    body = {"name": "dup", "kind": "report", "params": {"event": "purchase"}}
    await api.ok("POST", "/saved", body)
    status, answer = await api.call("POST", "/saved", body)
    assert status == 409 and answer == {
        "error": "conflict", "message": "a saved report named 'dup' already exists"}
    for method, path in [("GET", "/saved/nope"), ("POST", "/saved/nope/run"),
                         ("DELETE", "/saved/nope"), ("GET", "/dashboards/nope")]:
        status, answer = await api.call(method, path)
        assert status == 404 and "not found" in answer["message"], (method, path, answer)


async def test_a_dashboard_runs_its_reports_in_order_under_its_range(api: Api) -> None:
    for name, kind, params in [("sales", "report", {**REPORT, "from": "2020-01-01",
                                                      "to": "2020-01-02"}),
                               ("funnel", "funnel", FUNNEL),
                               ("broken", "report", {"event": "no_such_event"})]:
        await api.ok("POST", "/saved", {"name": name, "kind": kind, "params": params})
    board = await api.ok("POST", "/dashboards", {"name": "Main", "last_days": 3})
    assert board["items"] == [] and board["to"] == datetime.now(UTC).date().isoformat()
    assert board["from"] == day(0)
    for report, width in [("sales", 2), ("funnel", 1), ("broken", 1)]:
        await api.ok("POST", "/dashboards/Main/items", {"report": report, "width": width})
    moved = await api.ok("POST", "/dashboards/Main/items/funnel/move", {"position": 0})
    assert [i["report"] for i in moved["items"]] == ["funnel", "sales", "broken"]
    assert [i["position"] for i in moved["items"]] == [0, 1, 2]

    ran = await api.ok("POST", "/dashboards/Main/run")
    funnel, sales, broken = ran["items"]
    assert funnel["result"] == await api.ok("POST", "/funnel", FUNNEL)
    # the dashboard's range replaced the saved one (2020 would have no data)
    ranged = {**REPORT, "from": day(0), "to": datetime.now(UTC).date().isoformat()}
    assert sales["result"] == await api.ok("POST", "/report", ranged)
    assert sales["result"]["rows"] and sales["width"] == 2
    assert broken["error"] == "not_found" and "no_such_event" in broken["message"]

    await api.ok("DELETE", "/dashboards/Main/items/broken")
    await api.ok("DELETE", "/saved/sales")  # a deleted report leaves the dashboard
    shown = await api.ok("GET", "/dashboards/Main")
    assert [(i["report"], i["position"]) for i in shown["items"]] == [("funnel", 0)]
    fixed = await api.ok("PUT", "/dashboards/Main/range",
                         {"from": day(0), "to": day(1), "tz": "Asia/Shanghai"})
    assert (fixed["from"], fixed["to"], fixed["tz"]) == (day(0), day(1), "Asia/Shanghai")
    assert (await api.ok("GET", "/dashboards"))["dashboards"] == [{"name": "Main", "reports": 1}]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [
        ("POST", "/dashboards", {"name": "d", "last_days": 0}, 422, "last days must be 1 to 366"),
        ("POST", "/dashboards", {"name": "d", "last_days": 7, "from": "2026-01-01"}, 422,
         "not both"),
        ("POST", "/dashboards", {"name": "d", "from": "2026-01-01"}, 422, "both a from and a to"),
        ("POST", "/dashboards", {"name": "d", "from": "2026-02-01", "to": "2026-01-01"}, 422,
         "is after"),
        ("POST", "/dashboards", {"name": "d", "tz": "Mars/Base"}, 422, "unknown time zone"),
        ("POST", "/dashboards", {"name": "d", "last_days": "7"}, 422, "must be an integer"),
        ("POST", "/dashboards", {"name": "Main"}, 409, "a dashboard named 'Main' already exists"),
        ("POST", "/dashboards/Main/items", {"report": "nope"}, 404, "saved report 'nope'"),
        ("POST", "/dashboards/Main/items", {"report": "r", "width": 3}, 422, "width must be 1"),
        ("POST", "/dashboards/Main/items", {"report": "r"}, 409, "already on dashboard"),
        ("POST", "/dashboards/Main/items/r/move", {"position": -1}, 422, "0 or more"),
        ("POST", "/dashboards/Main/items/q/move", {"position": 0}, 404, "'q' is not on"),
        ("DELETE", "/dashboards/Main/items/q", None, 404, "'q' is not on"),
        ("POST", "/dashboards/Other/items", {"report": "r"}, 404, "dashboard 'Other' not found"),
    ],
)
async def test_bad_dashboard_input_is_refused(
    api: Api, method: str, path: str, body: Any, status: int, says: str
) -> None:
    await api.ok("POST", "/saved", {"name": "r", "kind": "report", "params": {"event": "purchase"}})
    await api.ok("POST", "/saved", {"name": "q", "kind": "report", "params": {"event": "purchase"}})
    await api.ok("POST", "/dashboards", {"name": "Main"})
    await api.ok("POST", "/dashboards/Main/items", {"report": "r"})
    got, answer = await api.call(method, path, body)
    assert got == status and says in answer["message"], answer


async def test_viewers_see_dashboards_but_do_not_change_them(api: Api) -> None:
    await api.ok("POST", "/saved", {"name": "r", "kind": "report", "params": REPORT})
    await api.ok("POST", "/dashboards", {"name": "Main"})
    await api.ok("POST", "/dashboards/Main/items", {"report": "r"})
    viewer = await as_role(api, "viewer")
    status, ran = await call_as(api, viewer, "POST", "/dashboards/Main/run")
    assert status == 200 and ran["items"][0]["result"]["rows"]
    status, _ = await call_as(api, viewer, "POST", "/saved/r/run")
    assert status == 200
    for method, path, body in [("POST", "/saved", {"name": "v", "kind": "report",
                                                   "params": REPORT}),
                               ("DELETE", "/saved/r", None),
                               ("POST", "/dashboards", {"name": "V"}),
                               ("DELETE", "/dashboards/Main/items/r", None)]:
        status, answer = await call_as(api, viewer, method, path, body)
        assert status == 403 and "developer role" in answer["message"], (path, answer)


async def test_a_users_events_then_forgetting_them(api: Api) -> None:
    page = await api.ok("GET", "/users/events", user="u1", limit=2)
    assert [(e["event"], e["data"]) for e in page["events"]] == [
        ("purchase", {"price": 100, "color": "red"}), ("purchase", {"price": 30})]
    assert page["more"] is True
    older = await api.ok("GET", "/users/events", user="u1", limit=2, before=page["before"])
    assert [(e["event"], e["data"]) for e in older["events"]] == [
        ("goods_click", {"price": 10, "color": "red"})]
    assert older["more"] is False and older["before"] is None

    viewer = await as_role(api, "viewer")
    status, answer = await call_as(api, viewer, "GET", "/users/events", user="u1")
    assert status == 403
    status, answer = await call_as(api, viewer, "POST", "/users/forget", {"user_id": "u1"})
    assert status == 403
    developer = await as_role(api, "developer")
    status, answer = await call_as(api, developer, "POST", "/users/forget", {"user_id": "u1"})
    assert status == 200 and answer == {"deleted": 3, "tests": 0}
    assert (await api.ok("GET", "/users/events", user="u1"))["events"] == []
    assert len((await api.ok("GET", "/users/events", user="u2"))["events"]) == 2
    assert await api.count() == 2

    async with api.session.get(f"{api.url}/admin/v1/audit", params={"appid": api.appid},
                               headers=api.admin) as resp:
        entries = (await resp.json())["entries"]
    forgot = [e for e in entries if e["action"] == "analytics.forget_user"]
    assert len(forgot) == 1 and forgot[0]["actor"] == "key:k-developer"
    assert forgot[0]["detail"] == {"user_sha256": hashlib.sha256(b"u1").hexdigest(),
                                   "deleted": 3, "tests": 0}
    assert "u1" not in str(forgot[0])


async def test_events_sent_again_after_a_forget_stay_forgotten_and_new_ones_are_kept(
    api: Api,
) -> None:
    """A device sends again, after the forget, events from before it (a batch whose answer
    was lost, a queue kept offline): none is stored. What the user does afterwards is."""
    earlier = [{"id": "e0", "event": "goods_click", "data": {"price": 10, "color": "red"},
                "ts": at(10)},
               {"id": "q1", "event": "purchase", "data": {"price": 7}, "ts": now_ms() - 1000}]
    assert (await api.ok("POST", "/users/forget", {"user_id": "u1"}))["deleted"] == 3
    answer = await api.report("u1", {"sent_at": now_ms(), "events": earlier})
    assert (answer["accepted"], answer["duplicates"]) == (0, 2)
    assert (await api.ok("GET", "/users/events", user="u1"))["events"] == []
    await asyncio.sleep(0.01)
    later = [{"id": "n1", "event": "purchase", "data": {"price": 5}, "ts": now_ms()}]
    assert (await api.report("u1", {"sent_at": now_ms(), "events": later}))["accepted"] == 1
    page = await api.ok("GET", "/users/events", user="u1")
    assert [e["id"] for e in page["events"]] == ["n1"]
    assert len((await api.ok("GET", "/users/events", user="u2"))["events"]) == 2
    assert await api.count() == 3
    # back after the forget, the user is new again: the events sent again (dropped) did not
    # make their old day the user's first
    rows = (await api.ok("POST", "/report", {
        "event": "purchase", "group_by": ["$new_user"], "granularity": "all",
        "filters": ["price=5"],
        "from": now_ms() - 86_400_000, "to": now_ms() + 60_000}))["rows"]  # fmt: skip
    assert [(r["$new_user"], r["count"]) for r in rows] == [(True, 1)]
    # and known as such: the user's next batches do not ask the store again
    store = api.platform.analytics.store
    asked: list[object] = []
    real = store.first_days
    store.first_days = lambda *a: asked.append(a) or real(*a)  # type: ignore[method-assign]
    for n in range(3):
        event = {"id": f"m{n}", "event": "purchase", "data": {"price": 5}, "ts": now_ms()}
        batch = {"sent_at": now_ms(), "events": [event]}
        assert (await api.report("u1", batch))["accepted"] == 1
    assert asked == []


async def test_forgetting_a_tester_stops_and_removes_their_tests(api: Api) -> None:
    test = await api.ok("POST", "/tests", {"user_id": "tester"})
    batch = {"sent_at": now_ms(), "events": [{"id": "t1", "event": "purchase",
                                              "data": {"price": 1}, "ts": now_ms()}]}
    assert (await api.report("tester", batch))["accepted"] == 1
    assert (await api.config("tester"))["test_id"] == test["test_id"]
    assert await api.ok("POST", "/users/forget", {"user_id": "tester"}) == {
        "deleted": 1, "tests": 1}
    status, _ = await api.call("GET", f"/tests/{test['test_id']}")
    assert status == 404
    assert (await api.config("tester"))["test_id"] is None
    assert await api.count(include_tests=True) == len(DATA)


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "says"),
    [
        ("GET", "/users/events", {}, None, "user"),
        ("GET", "/users/events", {"user": "u1", "limit": "0"}, None, "limit"),
        ("GET", "/users/events", {"user": "u1", "before": "x"}, None, "cursor 'x'"),
        ("POST", "/users/forget", {}, {"user_id": ""}, "user_id"),
        ("POST", "/users/forget", {}, {"user": "u1"}, "user_id"),
    ],
)
async def test_bad_user_requests(
    api: Api, method: str, path: str, params: dict[str, str], body: Any, says: str
) -> None:
    status, answer = await api.call(method, path, body, **params)
    assert status == 422 and says in answer["message"], answer


async def test_the_user_id_may_hold_any_character(api: Api) -> None:
    odd = "a/b?c&d 用户"
    batch = {"sent_at": now_ms(), "events": [{"id": "o1", "event": "purchase",
                                              "data": {"price": 5}, "ts": now_ms()}]}
    assert (await api.report(odd, batch))["accepted"] == 1
    page = await api.ok("GET", "/users/events", user=odd)
    assert [e["id"] for e in page["events"]] == ["o1"]
    assert (await api.ok("POST", "/users/forget", {"user_id": odd}))["deleted"] == 1


