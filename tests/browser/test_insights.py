"""The insights page in a real browser: the overview (tiles, chart, top pages, scenes) from the
runtimes' built-in events and system properties, real time picking up an event accepted while
the page is open (pushed over the app's real-time stream: no request for the report after the
first), a retention table, and paths drawn as a Sankey chart. Screenshots go to
test-artifacts/screenshots/."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import LiveConsole, shot, sign_in, watch_errors

pytestmark = pytest.mark.browser
DESKTOP = {"viewport": {"width": 1440, "height": 1000}}
DAY = 86_400_000


def visit(user: str, session: str, at: int, *, scene: int, pages: list[str]) -> dict[str, Any]:
    """One session of a user: a launch, then page views and leaves, 10 s apart."""
    events: list[dict[str, Any]] = [{"id": f"{session}-l", "event": "$launch", "ts": at,
                                     "data": {"path": pages[0], "cold": True}}]
    for i, page in enumerate(pages):
        t = at + 1000 + i * 10_000
        events.append({"id": f"{session}-v{i}", "event": "$pageview", "ts": t, "page": page,
                       "data": {"path": page}})
        events.append({"id": f"{session}-x{i}", "event": "$pageleave", "ts": t + 9000,
                       "page": page, "data": {"path": page, "duration_ms": 9000}})
    context = {"$platform": "ios" if user != "carol" else "android", "$scene": scene,
               "$session": session}
    return {"context": context, "events": events}


def load_visits(live: LiveConsole, appid: str) -> None:
    now = int(time.time() * 1000)
    visits = [
        ("alice", "a1", now - 2 * DAY, 1001, ["pages/index/index", "pages/goods/goods"]),
        ("alice", "a2", now - 60_000, 1001, ["pages/index/index", "pages/cart/cart"]),
        ("bob", "b1", now - 2 * DAY, 1047, ["pages/index/index", "pages/goods/goods"]),
        ("carol", "c1", now - 120_000, 1001, ["pages/index/index"]),
    ]
    for user, session, at, scene, pages in visits:
        batch = visit(user, session, at, scene=scene, pages=pages)
        batch["sent_at"] = now  # sent now (kept offline until then): no clock skew
        live.call("analytics.ingest", appid, user, batch)


def test_overview_realtime_retention_and_paths(live: LiveConsole, browser: Any) -> None:
    viewer = live.user("viewer")
    app = live.app("Insights")
    load_visits(live, app.appid)
    errors: list[str] = []
    ctx = browser.new_context(**DESKTOP)
    page = ctx.new_page()
    watch_errors(page, errors)
    reports: list[float] = []  # when the page asked for the real-time report
    page.on("request", lambda r: reports.append(time.monotonic())
            if r.url.split("?")[0].endswith("/analytics/realtime") else None)
    sign_in(page, live.url, viewer, path=f"/console/apps/{app.appid}/analytics/insights")
    expect(page.locator("#insights-page")).to_have_attribute("data-ready", "true")

    # --- overview: three users over the week, their launches, pages and scenes ---
    expect(page.get_by_test_id("ov-launches")).to_contain_text("4")
    expect(page.get_by_test_id("ov-views")).to_contain_text("7")
    pages = page.get_by_test_id("ov-pages")
    expect(pages.locator("tbody tr").first).to_contain_text("pages/index/index")
    expect(pages.locator("tbody tr").first).to_contain_text("4")
    expect(page.get_by_test_id("ov-scenes")).to_contain_text("1047")
    expect(page.get_by_test_id("ov-empty")).to_be_hidden()
    page.get_by_test_id("ov-group").select_option("$platform")
    page.get_by_test_id("ov-run").click()
    expect(page.get_by_test_id("ov-table")).to_contain_text("android")

    # --- real time: the recent sessions, then an event accepted while the page is open shows
    # within 2 s, pushed: the report was asked for once, when the stream connected ---
    latest = page.get_by_test_id("rt-latest")
    expect(latest).to_contain_text("carol")
    insights = page.locator("#insights-page")
    expect(insights).to_have_attribute("data-realtime", "live")
    before = int(insights.get_attribute("data-rt-events") or "0")
    assert len(reports) == 1
    page.wait_for_timeout(2500)  # longer than the old polling interval: still one request
    now = int(time.time() * 1000)
    accepted = time.monotonic()
    live.call("analytics.ingest", app.appid, "dave", {"sent_at": now, "context": {
        "$platform": "devtools"}, "events": [{"id": "d-1", "event": "$launch", "ts": now},
                                             {"id": "d-2", "event": "$show", "ts": now}]})
    expect(latest.locator("tbody tr").first).to_contain_text("dave", timeout=2000)
    assert time.monotonic() - accepted < 2
    expect(latest).to_contain_text("devtools")
    expect(insights).to_have_attribute("data-rt-events", str(before + 2))
    chart = page.evaluate("() => window.Chart.getChart('realtime-chart').data.datasets[0].data")
    assert len(chart) == 30 and sum(chart) == before + 2 and chart[-1] + chart[-2] >= 2
    assert len(reports) == 1, "the real-time report was asked for again: polling"
    page.locator("#realtime").scroll_into_view_if_needed()
    shot(page, "insights-realtime-pushed", full_page=False)
    shot(page, "insights-overview-realtime")

    # --- retention: any event, by day; today's cohort is everyone active today ---
    page.get_by_test_id("ret-run").click()
    expect(page.locator("#insights-page")).to_have_attribute("data-retention", "drawn")
    table = page.get_by_test_id("ret-table")
    expect(table).not_to_have_attribute("data-rows", "0")
    expect(table.locator("thead")).to_contain_text("Day 1")
    expect(table).to_contain_text("100.0%")

    # --- paths from the home page: a Sankey of where people went next ---
    page.get_by_test_id("paths-start").fill("pages/index/index")
    page.get_by_test_id("paths-run").click()
    expect(page.locator("#insights-page")).to_have_attribute("data-paths", "drawn")
    paths = page.get_by_test_id("paths-table")  # each user's first visit of the start page
    expect(paths.locator("tbody tr")).to_have_count(1)
    expect(paths.locator("tbody tr")).to_contain_text("pages/goods/goods2")
    assert page.evaluate("() => window.Chart.getChart('paths-chart')?.config.type") == "sankey"
    page.get_by_test_id("paths-start").fill("pages/nowhere")
    page.get_by_test_id("paths-run").click()
    expect(paths).to_contain_text("Nobody reached the start")
    page.get_by_test_id("paths-start").fill("pages/index/index")
    page.get_by_test_id("paths-run").click()
    expect(paths).to_contain_text("pages/goods/goods")
    page.locator("#retention").scroll_into_view_if_needed()
    shot(page, "insights-retention-paths")
    assert errors == []
    ctx.close()


def test_an_app_without_events_says_what_to_do(live: LiveConsole, browser: Any) -> None:
    developer = live.user("developer")
    app = live.app("Empty insights")
    ctx = browser.new_context(**DESKTOP)
    page = ctx.new_page()
    sign_in(page, live.url, developer, path=f"/console/apps/{app.appid}/analytics/insights")
    expect(page.locator("#insights-page")).to_have_attribute("data-ready", "true")
    expect(page.get_by_test_id("ov-empty")).to_be_visible()
    expect(page.get_by_test_id("ov-empty").get_by_role("link")).to_have_text("Open the simulator")
    expect(page.get_by_test_id("rt-latest")).to_contain_text("No events in the last 30 minutes")
    page.get_by_test_id("paths-start").fill("x")
    page.get_by_test_id("paths-depth").fill("9")
    page.get_by_test_id("paths-run").click()
    expect(page.get_by_test_id("paths-error")).not_to_be_empty()
    ctx.close()


def test_real_time_catches_up_after_a_drop_and_rolls_over_without_events(
    live: LiveConsole, browser: Any,
) -> None:
    viewer = live.user("viewer")
    app = live.app("Insights live")
    now = int(time.time() * 1000)
    live.call("analytics.ingest", app.appid, "frank", {"sent_at": now, "events": [
        {"id": "f-1", "event": "$launch", "ts": now - 60_000}]})
    errors: list[str] = []
    ctx = browser.new_context(**DESKTOP)
    page = ctx.new_page()
    page.clock.install()  # the page's clock runs as usual until fast-forwarded below
    watch_errors(page, errors)
    reports: list[str] = []
    page.on("request", lambda r: reports.append(r.url)
            if r.url.split("?")[0].endswith("/analytics/realtime") else None)
    sign_in(page, live.url, viewer, path=f"/console/apps/{app.appid}/analytics/insights")
    insights = page.locator("#insights-page")
    expect(insights).to_have_attribute("data-realtime", "live")
    latest = page.get_by_test_id("rt-latest")
    expect(latest).to_contain_text("frank")
    assert len(reports) == 1

    # --- the stream drops (the server ends it); an event accepted meanwhile is not lost: the
    # browser reconnects by itself and fetches the report once more ---
    async def drop() -> int:
        subs = list(live.platform.live._local.get(app.appid, ()))
        for sub in subs:
            live.platform.broker.unsubscribe(sub)
        return len(subs)

    assert live.run(drop()) == 1
    expect(insights).to_have_attribute("data-realtime", "connecting")
    now = int(time.time() * 1000)
    live.call("analytics.ingest", app.appid, "erin", {"sent_at": now, "events": [
        {"id": "e-1", "event": "$launch", "ts": now}]})
    expect(latest).to_contain_text("erin", timeout=10_000)
    expect(insights).to_have_attribute("data-realtime", "live")
    assert len(reports) == 2  # one fetch per (re)connect, no more

    # --- a minute later with no events, the minutes have moved on by one ---
    def series() -> list[int]:
        data: list[int] = page.evaluate(
            "() => window.Chart.getChart('realtime-chart').data.datasets[0].data")
        return data

    before = series()
    assert sum(before) == 2 and len(before) == 30
    page.clock.fast_forward(60_000)
    expect(insights).to_have_attribute("data-rt-events", "2")
    page.wait_for_function(
        f"() => window.Chart.getChart('realtime-chart').data.datasets[0].data[29] === 0"
        f" && JSON.stringify(window.Chart.getChart('realtime-chart').data.datasets[0].data"
        f".slice(0, 29)) === '{before[1:]}'.replace(/ /g, '')", timeout=5000)
    assert len(reports) == 2
    assert errors == []
    ctx.close()


def test_a_push_spanning_the_pages_fetch_is_not_counted_twice(
    live: LiveConsole, browser: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batches accepted just before the page's fetch and just after it go out in one push (the
    pushes' interval, made long here so the case is certain): the page adds only what the
    fetch did not count."""
    from miniport.services import live_feed

    monkeypatch.setattr(live_feed, "MIN_INTERVAL_S", 1.5)
    viewer = live.user("viewer")
    app = live.app("Insights span")
    errors: list[str] = []
    ctx = browser.new_context(**DESKTOP)
    page = ctx.new_page()
    watch_errors(page, errors)

    at = int(time.time() * 1000)  # every event in one minute

    def ingest(user: str, n: int) -> None:
        live.call("analytics.ingest", app.appid, user, {"sent_at": at, "events": [
            {"id": f"{user}-{i}", "event": "$show", "ts": at} for i in range(n)]})

    fetches: list[str] = []

    def around_the_fetch(route: Any) -> None:
        fetches.append(route.request.url)
        if len(fetches) > 1:
            route.continue_()
            return
        ingest("alice", 1)  # pushed at once (the first after a quiet spell)
        ingest("bob", 2)  # waits for the next push
        time.sleep(0.01)
        found = route.fetch()  # counts alice's and bob's
        time.sleep(0.01)
        ingest("carol", 1)  # joins bob's push
        route.fulfill(response=found)

    page.route(lambda url: url.split("?")[0].endswith("/analytics/realtime"), around_the_fetch)
    sign_in(page, live.url, viewer, path=f"/console/apps/{app.appid}/analytics/insights")
    insights = page.locator("#insights-page")
    expect(page.get_by_test_id("rt-latest")).to_contain_text("carol", timeout=10_000)
    expect(insights).to_have_attribute("data-rt-events", "4")
    page.wait_for_timeout(500)
    expect(insights).to_have_attribute("data-rt-events", "4")
    data = page.evaluate("() => window.Chart.getChart('realtime-chart').data.datasets")
    assert sum(data[0]["data"]) == 4 and sum(data[1]["data"]) == 3  # alice, bob, carol
    assert len(fetches) == 1  # split by its batches, not fetched again
    assert errors == []
    ctx.close()


def test_the_realtime_view_says_so_when_its_access_is_taken_away(
    live: LiveConsole, browser: Any
) -> None:
    """The server ends a console stream whose session is no longer good (an admin disabled
    the account): the page says why at once, instead of showing "connecting" for good."""
    viewer = live.user("viewer")
    app = live.app("Insights gone")
    ctx = browser.new_context(**DESKTOP)
    page = ctx.new_page()
    sign_in(page, live.url, viewer, path=f"/console/apps/{app.appid}/analytics/insights")
    insights = page.locator("#insights-page")
    expect(insights).to_have_attribute("data-realtime", "live")
    live.call("console_users.set_disabled", viewer, True, "test-admin")
    expect(insights).to_have_attribute("data-realtime", "closed", timeout=10_000)
    expect(page.get_by_test_id("rt-updated")).to_contain_text("The live view was closed")
    page.locator("#realtime").scroll_into_view_if_needed()
    shot(page, "insights-realtime-access-gone", full_page=False)
    ctx.close()
