"""Changing a published field's type in the console: the field editor's "Change type" (a
refusal shown beside it, the pending change until publish, the type history after), and the
report page saying which part of the data used which type. Screenshots go to
test-artifacts/screenshots/."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import LiveConsole, shot, sign_in, watch_errors
from tests.support.analytics_api import PURCHASE

pytestmark = pytest.mark.browser
DESKTOP = {"viewport": {"width": 1440, "height": 1000}}


def buy(live: LiveConsole, appid: str, tag: str, *prices: object) -> None:
    now = int(time.time() * 1000)
    events = [
        {"id": f"{tag}{i}", "event": "purchase", "data": {"price": p, "color": "red"}, "ts": now}
        for i, p in enumerate(prices)
    ]
    answer = live.call("analytics.ingest", appid, "u1", {"sent_at": now, "events": events})
    assert answer["rejected"] == []


def test_change_a_field_type_and_read_across_it(live: LiveConsole, browser: Any) -> None:
    developer = live.user("developer")
    app = live.app("Price change")
    for name in ("price", "color"):
        live.call("analytics.add_field", app.appid, {"name": name, "type": "string"})
    live.call("analytics.save_event", app.appid, PURCHASE)
    live.call("analytics.publish", app.appid, "test")
    buy(live, app.appid, "a", "cheap", "12")

    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    errors: list[str] = []
    watch_errors(page, errors)
    sign_in(page, live.url, developer, path=f"/console/apps/{app.appid}/analytics")
    expect(page.locator("#analytics-page")).to_have_attribute("data-ready", "true")

    # a refusal is shown beside the form: color is already a string
    page.get_by_test_id("retype-color").click()
    form = page.get_by_test_id("retype-form")
    form.get_by_test_id("retype-type").select_option("string")
    form.get_by_test_id("retype-apply").click()
    expect(form.locator('[data-error-for="type"]')).to_have_text("field 'color' is already string")

    # price: string -> int, waiting for the publish
    page.get_by_test_id("retype-price").click()
    form = page.get_by_test_id("retype-form")
    expect(form).to_contain_text("next publish")
    form.get_by_test_id("retype-type").select_option("int")
    form.get_by_test_id("retype-apply").click()
    expect(page.get_by_test_id("pending-price")).to_have_text("→ int at publish")
    expect(page.get_by_test_id("retype-said")).to_have_text(
        "price becomes int at the next publish."
    )
    shot(page, "analytics-retype-pending")

    live.call("analytics.publish", app.appid, "test")
    buy(live, app.appid, "b", 30, 12)
    page.reload()
    expect(page.locator("#analytics-page")).to_have_attribute("data-ready", "true")
    expect(page.get_by_test_id("pending-price")).to_have_count(0)
    expect(page.get_by_test_id("history-price")).to_contain_text("Type history: string until ")
    expect(page.get_by_test_id("history-price")).to_contain_text("→ int")

    # the report: the string part kept apart, the sum over the int part only, and said so
    page.goto(f"{live.url}/console/apps/{app.appid}/analytics/reports")
    expect(page.locator("#reports-page")).to_have_attribute("data-ready", "true")
    report = page.get_by_test_id("report-form")
    report.get_by_test_id("rep-event").select_option("purchase")
    report.get_by_role("button", name="Add a metric").click()
    report.get_by_test_id("rep-metrics").locator("select[name=metric]").nth(1).select_option(
        "sum:price"
    )
    report.get_by_role("button", name="Add a group-by").click()
    report.get_by_test_id("rep-groups").locator("select[name=group]").select_option("price")
    report.get_by_test_id("rep-granularity").select_option("all")
    report.get_by_test_id("rep-run").click()
    table = page.get_by_test_id("rep-table")
    expect(table).to_have_attribute("data-rows", "4")
    types = [t.strip() for t in table.locator("td[data-col='price@type']").all_inner_texts()]
    assert types == ["string", "string", "int", "int"]
    sums = table.locator("td[data-col='sum:price']").all_inner_texts()
    assert sums == ["0", "0", "12", "30"]
    said = page.get_by_test_id("rep-field-types")
    expect(said).to_be_visible()
    expect(said).to_contain_text("price changed type (now int):")
    expect(said.locator("li[data-read=apart]")).to_contain_text(
        "string (s0), accepted from the start"
    )
    expect(said.locator("li[data-read=apart]")).to_contain_text("kept apart")
    expect(said.locator("li[data-read=current]")).to_contain_text("int (i0), accepted ")
    expect(said).to_contain_text(
        "sum:price counts only the int values; the string part is left out"
    )
    shot(page, "analytics-retype-report")
    assert errors == []
    context.close()
