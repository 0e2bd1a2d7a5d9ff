"""Ingestion through the runtime HTTP API: coercion shown in the live test view, dedup (same
batch, later batch, after a restart), clock-skew correction, estimated times, and bad events
that cost their neighbours nothing."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from tests.support.analytics_api import (
    PURCHASE,
    Api,
    OpenApi,
    Serve,
    now_ms,
    watching,
)


def iso_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )


def by_id(events: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {ev["uid"]: ev for ev in events}


async def test_coercions_are_visible_in_the_test_view(api: Api) -> None:
    await api.define(PURCHASE)
    test_id = (await api.ok("POST", "/tests", {"user_id": "dev1"}))["test_id"]
    now = now_ms()
    async with watching(api, test_id) as view:
        result = await api.report(
            "dev1",
            {
                "sent_at": now,
                "events": [
                    {"id": "float", "event": "purchase", "data": {"price": 12.7}, "ts": now},
                    {"id": "neg", "event": "purchase", "data": {"price": -3.9}, "ts": now},
                    {"id": "big", "event": "purchase", "data": {"price": 2**31}, "ts": now},
                    {"id": "min", "event": "purchase", "data": {"price": -(2**31)}, "ts": now},
                    {"id": "word", "event": "purchase", "data": {"price": "cheap"}, "ts": now},
                    {"id": "text", "event": "purchase", "data": {"price": "42"}, "ts": now},
                    {"id": "num", "event": "purchase", "data": {"color": 7}, "ts": now},
                ],
            },
        )
        assert result == {"accepted": 7, "duplicates": 0, "rejected": []}
        await view.wait_for(lambda: len(view.accepted()) == 7)
    seen = by_id(view.accepted())
    assert seen["float"]["values"] == {"price": 12}
    assert seen["float"]["coercions"] == [{"field": "price", "note": "truncated: 12.7 -> 12"}]
    assert seen["neg"]["values"] == {"price": -3}  # toward zero
    # out of the 32-bit range: refused for that field (the event is kept), with the reason
    assert seen["big"]["values"] == {}
    assert seen["big"]["coercions"] == [
        {
            "field": "price",
            "note": "out_of_range: 2147483648 is outside -2147483648..2147483647; value dropped",
        }
    ]
    assert seen["min"]["values"] == {"price": -(2**31)} and seen["min"]["coercions"] == []
    assert seen["word"]["values"] == {"price": 0}
    assert seen["word"]["coercions"] == [
        {"field": "price", "note": 'not_a_number: "cheap" is not a number -> 0'}
    ]
    assert seen["text"]["values"] == {"price": 42}
    assert seen["text"]["coercions"][0]["note"].startswith("from_string")
    assert seen["num"]["values"] == {"color": "7"}
    assert seen["num"]["coercions"][0]["note"].startswith("to_string")

    # what was stored is what the view showed
    await api.ok("POST", f"/tests/{test_id}/sync")
    rows = (
        await api.ok(
            "POST",
            "/report",
            {"event": "purchase", "metrics": ["count", "sum:price"], "granularity": "all"},
        )
    )["rows"]
    assert rows == [{"bucket": "all", "count": 7, "sum:price": 12 - 3 - 2**31 + 0 + 42}]


async def test_bad_events_are_refused_one_by_one_and_shown(api: Api) -> None:
    await api.define(PURCHASE)
    test_id = (await api.ok("POST", "/tests", {"user_id": "dev1"}))["test_id"]
    now = now_ms()
    async with watching(api, test_id) as view:
        result = await api.report(
            "dev1",
            {
                "sent_at": now,
                "events": [
                    {"id": "ok1", "event": "purchase", "data": {"price": 1}, "ts": now},
                    {"id": "bad1", "event": "refund", "data": {}, "ts": now},
                    {"id": "bad2", "event": "purchase", "data": {"size": 3}, "ts": now},
                    {"event": "purchase", "data": {}},
                    {"id": "ok2", "event": "purchase", "data": {"color": "red"}, "ts": now},
                ],
            },
        )
        await view.wait_for(lambda: view.reports)
    assert result["accepted"] == 2
    assert result["rejected"] == [
        {"index": 1, "id": "bad1", "reason": "unknown event 'refund'", "code": "unknown_event"},
        {
            "index": 2,
            "id": "bad2",
            "reason": "unknown field 'size' for event 'purchase'",
            "code": "unknown_field",
        },
        {"index": 3, "id": None, "reason": "missing id", "code": "missing_id"},
    ]
    assert view.rejected() == result["rejected"]
    assert [ev["uid"] for ev in view.accepted()] == ["ok1", "ok2"]
    assert await api.count("purchase", include_tests=True) == 2


async def test_an_event_id_is_stored_once_even_across_a_restart(
    serve: Serve, open_api: OpenApi
) -> None:
    now = now_ms()

    def batch(*ids: str) -> dict[str, object]:
        events = [{"id": i, "event": "purchase", "data": {"price": 5}, "ts": now} for i in ids]
        return {"sent_at": now, "events": events}

    async with serve() as server:
        api = await open_api(server, None)
        await api.define(PURCHASE, publish=True)
        # the same id twice in one batch
        assert await api.report("u1", batch("a", "a", "b")) == {
            "accepted": 2,
            "duplicates": 1,
            "rejected": [],
        }
        # again in a later batch (a client retry)
        assert await api.report("u1", batch("a", "c")) == {
            "accepted": 1,
            "duplicates": 1,
            "rejected": [],
        }
        assert await api.count("purchase") == 3
        appid = api.appid

    async with serve() as server:  # a restart on the same data directory
        api = await open_api(server, appid)
        assert await api.report("u1", batch("a", "b", "c", "d")) == {
            "accepted": 1,
            "duplicates": 3,
            "rejected": [],
        }
        assert await api.count("purchase") == 4
        # the same id from another user of the same app is still the same event
        assert (await api.report("u2", batch("d")))["duplicates"] == 1
        assert await api.count("purchase") == 4


async def test_clock_skew_is_corrected_and_unusable_times_are_marked(api: Api) -> None:
    await api.define(PURCHASE)
    test_id = (await api.ok("POST", "/tests", {"user_id": "dev1"}))["test_id"]
    server_now = now_ms()
    client_now = server_now - 3_600_000  # the device's clock is an hour behind
    async with watching(api, test_id) as view:
        await api.report(
            "dev1",
            {
                "sent_at": client_now,
                "events": [
                    # happened 5 s before the batch was sent, by the device's clock
                    {"id": "skewed", "event": "purchase", "ts": client_now - 5000},
                    {"id": "no_ts", "event": "purchase"},
                    {"id": "absurd", "event": "purchase", "ts": 12},
                ],
            },
        )
        await view.wait_for(lambda: len(view.accepted()) == 3)
        received = view.reports[0]["received_ms"]
    seen = by_id(view.accepted())
    # event time = ts + (server receive time - sent_at)
    assert seen["skewed"]["ts_ms"] == client_now - 5000 + (received - client_now)
    assert seen["skewed"]["ts_ms"] == received - 5000
    assert seen["skewed"]["time_estimated"] is False
    for uid in ("no_ts", "absurd"):  # no usable time: the receive time, marked as estimated
        assert seen[uid]["ts_ms"] == received
        assert seen[uid]["time_estimated"] is True

    # without sent_at the skew is unknown: every time is estimated
    async with watching(api, test_id) as view:
        await api.report("dev1", {"events": [{"id": "x", "event": "purchase", "ts": server_now}]})
        await view.wait_for(lambda: view.accepted())
    assert view.accepted()[0]["time_estimated"] is True

    # the stored time is the corrected one (CSV export, ISO UTC with ms)
    await api.ok("POST", f"/tests/{test_id}/sync")
    status, text = await api.call("GET", "/export", event="purchase")
    assert status == 200
    times = [row["time"] for row in csv.DictReader(io.StringIO(text))]
    assert iso_utc(received - 5000) in times
    assert times.count(iso_utc(received)) == 2  # no_ts and absurd


async def test_a_batch_that_cannot_be_read_is_refused_whole(api: Api) -> None:
    await api.define(PURCHASE, publish=True)
    url = f"{api.url}/runtime/v1/apps/{api.appid}/analytics/events"
    for body, fragment in (
        ({"sent_at": 1}, "missing 'events'"),
        ({"events": {"id": "x"}}, "'events' must be a list"),
        ({"events": [{"id": str(i), "event": "purchase"} for i in range(1001)]}, "at most 1000"),
    ):
        async with api.session.post(url, json=body, headers=api.runtime("u1")) as resp:
            answer = await resp.json()
            assert resp.status == 422
            assert fragment in answer["message"]
            assert answer["errMsg"].startswith("reportAnalytics:fail")
    async with api.session.post(url, data=b"{not json", headers=api.runtime("u1")) as resp:
        assert resp.status == 422
    async with api.session.post(url, json={"events": []}) as resp:
        assert resp.status == 401
    assert await api.count() == 0


async def test_system_properties_built_in_events_and_new_users(api: Api) -> None:
    """A batch context and an event's own context are stored; $new_user is the platform's:
    true on the user's first UTC day, whatever the client says; built-in events need no
    definition; bad values are noted in the live test view."""
    await api.define(PURCHASE, publish=True)
    now = now_ms()
    day = 86_400_000
    two_days_ago = now - 2 * day
    context = {"$platform": "android", "$scene": 1001, "$new_user": False}
    first = await api.report(
        "fan",
        {
            "sent_at": now,
            "context": context,
            "events": [
                {"id": "p1", "event": "purchase", "data": {"price": 3}, "ts": two_days_ago},
                {
                    "id": "v1",
                    "event": "$pageview",
                    "data": {"path": "pages/a"},
                    "ts": two_days_ago,
                    "context": {"$scene": 1007},
                },
            ],
        },
    )
    assert first == {"accepted": 2, "duplicates": 0, "rejected": []}
    later = await api.report(
        "fan",
        {
            "sent_at": now,
            "context": {**context, "$new_user": True},
            "events": [{"id": "p2", "event": "purchase", "data": {"price": 4}, "ts": now}],
        },
    )
    assert later["accepted"] == 1
    await api.report(
        "newbie",
        {"sent_at": now, "events": [{"id": "p3", "event": "purchase", "ts": now}]},
    )
    window = {"from": two_days_ago - day, "to": now + day, "granularity": "all"}
    rows = (
        await api.ok(
            "POST",
            "/report",
            {"event": "purchase", "group_by": ["$platform", "$new_user"], **window},
        )
    )["rows"]
    assert rows == [
        {"bucket": "all", "$platform": None, "$new_user": True, "count": 1},
        {"bucket": "all", "$platform": "android", "$new_user": False, "count": 1},
        {"bucket": "all", "$platform": "android", "$new_user": True, "count": 1},
    ]
    views = await api.ok(
        "POST",
        "/report",
        {"event": "$pageview", "filters": ["$scene=1007"], "group_by": ["$path"], **window},
    )
    assert views["rows"] == [{"bucket": "all", "$path": "pages/a", "count": 1}]
    status, answer = await api.call(
        "POST", "/report", {"event": "purchase", "group_by": ["$nope"], **window}
    )
    assert status == 422 and "unknown system property '$nope'" in str(answer)

    test_id = (await api.ok("POST", "/tests", {"user_id": "dev1"}))["test_id"]
    async with watching(api, test_id) as view:
        await api.report(
            "dev1",
            {
                "sent_at": now,
                "context": {"$scene": "home", "$foo": 1},
                "events": [{"id": "t1", "event": "$show", "ts": now}],
            },
        )
        await view.wait_for(lambda: view.accepted())
    [shown] = view.accepted()
    assert [c["field"] for c in shown["coercions"]] == ["$scene", "$foo"]
    assert shown["system"] == {"$new_user": True}


async def test_float_and_bool_fields_from_definition_to_report(api: Api) -> None:
    """``field add --type float|bool`` through the admin API: values coerced at ingest (with
    notes), summed exactly enough for prices, filtered and grouped on."""
    for name, kind in (("amount", "float"), ("vip", "bool")):
        added = await api.ok("POST", "/fields", {"name": name, "type": kind})
        assert added == {"name": name, "type": kind, "slot": 0}
    status, refused = await api.call("POST", "/fields", {"name": "x", "type": "double"})
    assert status == 422, refused
    order = {"name": "order", "display_name": "下单", "mode": "api", "fields": ["amount", "vip"]}
    await api.ok("POST", "/events", order)
    await api.ok("POST", "/publish")
    now = now_ms()
    values = [(19.99, True), ("0.01", "true"), (0.1, 1), (0.2, False), ("abc", "maybe")]
    result = await api.report(
        "buyer",
        {
            "sent_at": now,
            "events": [
                {"id": f"o{i}", "event": "order", "data": {"amount": a, "vip": v}, "ts": now}
                for i, (a, v) in enumerate(values)
            ],
        },
    )
    assert result == {"accepted": 5, "duplicates": 0, "rejected": []}
    window = {"from": now - 86_400_000, "to": now + 86_400_000, "granularity": "all"}
    body = {"event": "order", "metrics": ["count", "sum:amount", "max:amount"], **window}
    rows = (await api.ok("POST", "/report", {**body, "group_by": ["vip"]}))["rows"]
    assert [(r["vip"], r["count"]) for r in rows] == [(None, 1), (False, 1), (True, 3)]
    assert round(rows[2]["sum:amount"], 2) == 20.10 and rows[2]["max:amount"] == 19.99
    assert rows[0]["sum:amount"] == 0.0  # "abc" -> 0 (noted), "maybe" dropped (noted)
    cheap = await api.ok("POST", "/report", {**body, "filters": ["amount<0.15", "vip=true"]})
    assert cheap["rows"][0]["count"] == 2  # 0.01 and 0.1
    status, answer = await api.call("POST", "/report", {**body, "filters": ["amount>=ten"]})
    assert status == 422 and "'amount' is a float field, 'ten' is not a number" in str(answer)
    status, answer = await api.call("POST", "/report", {**body, "filters": ["vip>=1"]})
    assert status == 422 and "true or false" in str(answer)


async def test_ingest_is_served_ahead_of_the_routers_and_documented_as_before(api: Api) -> None:
    """reportAnalytics is answered by a plain route mounted ahead of every router (the
    framework's request handling cost more per batch than the batch's JSON): another method
    gets the same 405, an unknown app the same 404, and the OpenAPI description is the
    documented route's."""
    from starlette.routing import Route

    from miniport.web.analytics_api import INGEST_ROUTE
    from miniport.web.app import create_app

    routes = create_app(api.platform).router.routes
    first_router = next(i for i, r in enumerate(routes) if not isinstance(r, Route))
    assert routes.index(INGEST_ROUTE) < first_router
    await api.define(PURCHASE, publish=True)
    url = f"{api.url}/runtime/v1/apps/{api.appid}/analytics/events"
    async with api.session.get(url, headers=api.runtime("u1")) as resp:
        assert resp.status == 405 and resp.headers["Allow"] == "POST"
    async with api.session.post(
        f"{api.url}/runtime/v1/apps/nosuchapp/analytics/events",
        json={"events": []},
        headers=api.runtime("u1"),
    ) as resp:
        assert resp.status == 404
        assert (await resp.json())["errMsg"].startswith("reportAnalytics:fail")
    answer = await api.report("u1", {"events": [{"id": "a", "event": "purchase"}]})
    assert answer["accepted"] == 1
    async with api.session.get(f"{api.url}/openapi.json") as resp:
        spec = await resp.json()
    post = spec["paths"]["/runtime/v1/apps/{appid}/analytics/events"]
    assert set(post) == {"post"}
    body = post["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["events"] and body["properties"]["events"]["maxItems"] == 1000


async def test_a_batch_sent_while_the_event_store_closes_gets_a_clear_503(api: Api) -> None:
    """A stopping server closes its event store: a batch that arrives then is refused with a
    503 that says nothing was stored (the runtime sends it again to another node), not a 500;
    the batches before were stored (the store drains its queue before closing)."""
    await api.define(PURCHASE, publish=True)
    now = now_ms()
    event = {"id": "before", "event": "purchase", "data": {"price": 1}, "ts": now}
    assert (await api.report("u1", {"sent_at": now, "events": [event]}))["accepted"] == 1
    api.platform.analytics.store.close()
    async with api.session.post(
        f"{api.url}/runtime/v1/apps/{api.appid}/analytics/events",
        json={"sent_at": now, "events": [dict(event, id="after")]},
        headers=api.runtime("u1"),
    ) as resp:
        assert resp.status == 503, await resp.text()
        assert resp.headers["Retry-After"] == "5"  # the runtimes wait at least that long
        body = await resp.json()
    assert body["error"] == "analytics_unavailable"
    assert "send it again" in body["message"]


async def test_a_batch_sent_while_the_event_store_is_unreachable_says_when_to_try_again(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ClickHouse down: the 503 carries ``Retry-After`` (integer seconds), so 10,000 devices
    that failed at the same moment do not come back at the same moments (they wait at least
    that long, then spread with jitter); on the fast ingest path and the framework's one (a
    request with an ``Origin`` goes through the middleware), the same."""
    from concurrent.futures import Future

    from miniport.errors import AnalyticsUnavailable

    await api.define(PURCHASE, publish=True)

    def unreachable(rows: object) -> Future[object]:
        failed: Future[object] = Future()
        failed.set_exception(AnalyticsUnavailable("ClickHouse at 127.0.0.1:1 is unreachable"))
        return failed

    monkeypatch.setattr(api.platform.analytics.store, "submit", unreachable)
    now = now_ms()
    event = {"id": "e1", "event": "purchase", "data": {"price": 1}, "ts": now}
    url = f"{api.url}/runtime/v1/apps/{api.appid}/analytics/events"
    for extra in ({}, {"Origin": "http://127.0.0.2:8080"}):
        async with api.session.post(
            url, json={"sent_at": now, "events": [event]}, headers={**api.runtime("u1"), **extra}
        ) as resp:
            assert resp.status == 503, await resp.text()
            assert resp.headers["Retry-After"] == "5"
            assert (await resp.json())["error"] == "analytics_unavailable"


async def test_a_field_is_added_while_the_event_store_is_away_and_its_slot_emptied_later(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fields live in the state database: adding one must not fail because the event store
    (ClickHouse) is unreachable at that moment. Emptying the slot it was given (of values a
    cancelled test change may have left there) waits for the store, and happens before the
    next batch is stored."""
    from miniport.errors import AnalyticsUnavailable

    store = api.platform.analytics.store
    original = store.clear_slot
    emptied: list[tuple[str, str, int]] = []

    def away(appid: str, column: str, before_ms: int) -> int:
        raise AnalyticsUnavailable("ClickHouse at 127.0.0.1:1 is unreachable")

    def back(appid: str, column: str, before_ms: int) -> int:
        emptied.append((appid, column, before_ms))
        return original(appid, column, before_ms)

    monkeypatch.setattr(store, "clear_slot", away)
    await api.define(PURCHASE, publish=True)  # two fields: price (i0) and color (s0)
    monkeypatch.setattr(store, "clear_slot", back)
    assert emptied == []
    now = now_ms()
    event = {"id": "e1", "event": "purchase", "data": {"price": 3}, "ts": now}
    assert (await api.report("u1", {"sent_at": now, "events": [event]}))["accepted"] == 1
    assert [(appid, column) for appid, column, _ in emptied] == [
        (api.appid, "i0"),
        (api.appid, "s0"),
    ]
    assert all(before <= now_ms() for _, _, before in emptied)
    await api.report("u1", {"sent_at": now, "events": [dict(event, id="e2")]})
    assert len(emptied) == 2  # once each


async def test_hostile_values_cost_only_themselves(api: Api) -> None:
    """A 400-digit duration (isfinite() of it overflowed) and values nested 1,000 deep (their
    repr() in the note raised RecursionError) answered 500 and lost the batch's good events;
    a 5xx also makes the runtime keep and resend the batch for ever."""
    await api.define(PURCHASE, publish=True)
    url = f"{api.url}/runtime/v1/apps/{api.appid}/analytics/events"
    now = now_ms()
    deep = "[" * 1000 + "1" + "]" * 1000
    huge = "1" + "0" * 400

    def good(k: int) -> str:
        return f'{{"id": "g{k}", "event": "purchase", "data": {{"price": 1}}, "ts": {now}}}'

    bodies = [
        f'{{"sent_at": {now}, "events": [{{"id": "d1", "event": "$pageleave",'
        f' "data": {{"duration_ms": {huge}}}}}, {good(1)}]}}',
        f'{{"sent_at": {now}, "events": [{{"id": "t1", "event": "purchase", "trigger": {deep}}},'
        f" {good(2)}]}}",
        f'{{"sent_at": {now}, "context": {{"$model": {deep}}}, "events": [{good(3)}]}}',
        f'{{"sent_at": {now}, "events": [{{"id": "c1", "event": "purchase",'
        f' "context": {{"$brand": {deep}}}}}, {good(4)}]}}',
    ]
    answers = []
    for body in bodies:
        async with api.session.post(url, data=body.encode(), headers=api.runtime("u1")) as resp:
            assert resp.status == 200, await resp.text()
            answers.append(await resp.json())
    assert [a["accepted"] for a in answers] == [2, 1, 1, 2]
    assert answers[1]["rejected"][0]["code"] == "invalid_trigger"
    assert await api.count("purchase") == 5  # g1..g4 and c1
