"""Saved reports on a dashboard in a real browser: a developer saves an event analysis and a
funnel from the reports page, builds a dashboard of them (add, reorder), and a viewer sees it
drawn (charts and tables); then the developer looks a user up and erases them behind the
confirmation page. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import LiveConsole, shot, sign_in, watch_errors

pytestmark = pytest.mark.browser
DESKTOP = {"viewport": {"width": 1440, "height": 1000}}
PURCHASE = {"name": "purchase", "display_name": "购买", "mode": "api", "fields": ["price"]}
VIEW = {"name": "view_goods", "display_name": "看商品", "mode": "api", "fields": ["price"]}


def load_data(live: LiveConsole, appid: str) -> None:
    live.call("analytics.add_field", appid, {"name": "price", "type": "int"})
    live.call("analytics.save_event", appid, PURCHASE)
    live.call("analytics.save_event", appid, VIEW)
    live.call("analytics.publish", appid, "test")
    now = int(time.time() * 1000)
    for user, n in (("alice", 3), ("bob", 1)):
        events = [{"id": f"{user}-v{i}", "event": "view_goods", "data": {"price": 5},
                   "ts": now - 5000 + i} for i in range(n)]
        events += [{"id": f"{user}-p", "event": "purchase", "data": {"price": 10 * n},
                    "ts": now - 1000}]
        live.call("analytics.ingest", appid, user, {"sent_at": now, "events": events})


def test_saved_reports_on_a_dashboard_and_a_user_erased(live: LiveConsole, browser: Any) -> None:
    developer = live.user("developer")
    viewer = live.user("viewer")
    app = live.app("Dashboards")
    load_data(live, app.appid)
    errors: list[str] = []
    ctx = browser.new_context(**DESKTOP)
    page = ctx.new_page()
    watch_errors(page, errors)
    base = f"/console/apps/{app.appid}/analytics"
    sign_in(page, live.url, developer, path=f"{base}/reports")
    expect(page.locator("#reports-page")).to_have_attribute("data-ready", "true")

    # --- save an event analysis and a funnel from the reports page ---
    page.get_by_test_id("rep-event").select_option("purchase")
    page.get_by_test_id("rep-run").click()
    expect(page.get_by_test_id("rep-table")).not_to_have_attribute("data-rows", "0")
    page.get_by_test_id("rep-save-name").fill("Purchases")
    page.get_by_test_id("rep-save").click()
    expect(page.get_by_test_id("rep-save-out")).to_contain_text("Saved as “Purchases”")
    page.get_by_test_id("rep-save").click()  # the same name again: refused, said so
    expect(page.get_by_test_id("rep-save-out")).to_contain_text("already exists")
    # a name is shown as typed: "$$" and "$'" were read as replacement patterns, "{name}" again
    page.get_by_test_id("rep-save-name").fill("Top $$ spenders $' {name}")
    page.get_by_test_id("rep-save").click()
    saved = page.get_by_test_id("rep-save-out")
    expect(saved).to_contain_text("Saved as “Top $$ spenders $' {name}”.")
    steps = page.get_by_test_id("funnel-steps").locator("select[name=step_event]")
    steps.nth(0).select_option("view_goods")
    steps.nth(1).select_option("purchase")
    page.get_by_test_id("funnel-save-name").fill("Buy funnel")
    page.get_by_test_id("funnel-save").click()
    expect(page.get_by_test_id("funnel-save-out")).to_contain_text("Saved as “Buy funnel”")

    # --- build a dashboard of them ---
    page.goto(f"{live.url}{base}/dashboards")
    expect(page.get_by_test_id("dash-empty")).to_be_visible()
    page.get_by_test_id("dash-name").fill("Main")
    page.get_by_test_id("dash-create-button").click()
    expect(page.get_by_test_id("dash-current")).to_have_text("Main")
    expect(page.locator("#dashboards-page")).to_have_attribute("data-ready", "true")
    expect(page.get_by_test_id("dash-no-items")).to_be_visible()
    for report in ("Purchases", "Buy funnel"):
        page.get_by_test_id("dash-report").select_option(report)
        page.get_by_test_id("dash-add-button").click()
        expect(page.locator(f'[data-testid="dash-item"][data-report="{report}"]')).to_be_visible()
    items = page.get_by_test_id("dash-item")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_have_attribute("data-report", "Purchases")
    items.nth(1).get_by_test_id("dash-up").click()
    expect(items.nth(0)).to_have_attribute("data-report", "Buy funnel")
    funnel_rows = items.nth(0).locator("tbody tr")
    expect(funnel_rows).to_have_count(2)
    expect(funnel_rows.nth(1).locator('[data-col="users"]')).to_have_text("2")
    shot(page, "dashboard-developer")

    # --- a viewer sees it drawn, without the controls ---
    viewer_ctx = browser.new_context(**DESKTOP)
    view = viewer_ctx.new_page()
    watch_errors(view, errors)
    sign_in(view, live.url, viewer, path=f"{base}/dashboards")
    expect(view.locator("#dashboards-page")).to_have_attribute("data-ready", "true")
    shown = view.get_by_test_id("dash-item")
    expect(shown).to_have_count(2)
    expect(shown.nth(1)).to_have_attribute("data-report", "Purchases")
    expect(shown.nth(1).locator('tbody [data-col="count"]').first).to_have_text("2")
    for item in range(2):
        chart = shown.nth(item).get_by_test_id("dash-chart")
        expect(chart).to_have_attribute("data-rendered", "true")
    expect(view.get_by_test_id("dash-up")).to_have_count(0)
    expect(view.get_by_test_id("dash-create")).to_have_count(0)
    expect(view.get_by_test_id("tab-users")).to_have_count(0)
    shot(view, "dashboard-viewer")
    viewer_ctx.close()

    # --- look a user up, then erase them behind the confirmation ---
    page.get_by_test_id("tab-users").click()
    page.get_by_test_id("user-id").fill("alice")
    page.get_by_test_id("user-look").click()
    expect(page.get_by_test_id("user-events")).to_have_attribute("data-rows", "4")
    expect(page.get_by_test_id("user-events").locator("tbody tr").last).to_contain_text("purchase")
    page.get_by_test_id("user-forget").click()
    page.get_by_test_id("forget-confirm").fill("alicia")
    page.get_by_test_id("forget-submit").click()
    expect(page.get_by_test_id("forget-error")).to_be_visible()
    page.get_by_test_id("forget-confirm").fill("alice")
    page.get_by_test_id("forget-submit").click()
    expect(page.locator(".flash")).to_contain_text("4 event(s) deleted")
    page.get_by_test_id("user-id").fill("alice")
    page.get_by_test_id("user-look").click()
    expect(page.get_by_test_id("user-none")).to_be_visible()
    assert live.call("analytics.count", app.appid) == 2  # bob's
    assert errors == []
    ctx.close()
