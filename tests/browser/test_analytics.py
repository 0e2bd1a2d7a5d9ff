"""Custom analytics in a real browser: fields and a configured click event defined through the
console's forms (with a validation error shown next to the input at fault), save-and-test for
the simulator's user, a tap in the simulator (a second browser context) arriving live in the
console's test panel, sync, the report chart and table, the funnel, CSV, and publishing reaching
the simulator. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import LiveConsole, shot, sign_in, watch_errors

pytestmark = pytest.mark.browser
DESKTOP = {"viewport": {"width": 1440, "height": 1000}}
LIVE_MS = 10_000

CANVAS_INK = """(id) => {
    const canvas = document.getElementById(id);
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let ink = 0;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) ink += 1;
    return ink;
}"""


def add_field(page: Any, name: str, kind: str) -> None:
    form = page.get_by_test_id("field-form")
    form.locator("input[name=name]").fill(name)
    form.locator("select[name=type]").select_option(kind)
    form.get_by_role("button", name="Add field").click()


def test_define_test_live_report_and_publish(live: LiveConsole, browser: Any) -> None:
    developer = live.user("developer")
    suffix = developer.rsplit("-", 1)[1]
    app = live.app("Tea shop", periodic="/data/periodic", pre="/data/prefetch")
    tester = f"tester-{suffix}"
    console_ctx = browser.new_context(**DESKTOP)
    page = console_ctx.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # publish / reset confirmations
    errors: list[str] = []
    watch_errors(page, errors)
    sign_in(page, live.url, developer, path=f"/console/apps/{app.appid}/analytics")
    expect(page.locator("#analytics-page")).to_have_attribute("data-ready", "true")

    # --- fields, through the form (a bad name is refused next to the name input) ---
    add_field(page, "Price", "int")
    name_error = page.get_by_test_id("field-form").locator('[data-error-for="name"]')
    expect(name_error).to_contain_text("invalid name 'Price'")
    add_field(page, "price", "int")
    expect(page.get_by_test_id("fields-table").locator("tr[data-field=price]")).to_contain_text("int")
    expect(name_error).to_be_empty()
    add_field(page, "goods_name", "string")
    expect(page.get_by_test_id("fields-table").locator("tr[data-field=goods_name]")).to_contain_text(
        "string")

    # --- the event editor: a configured click event ---
    editor = page.get_by_test_id("event-editor")
    editor.get_by_test_id("ev-name").fill("goods_click")
    editor.get_by_test_id("ev-display").fill("商品点击")
    expect(editor.get_by_test_id("ev-mode")).to_have_value("configured")
    editor.get_by_test_id("ev-field-price").check()
    editor.get_by_test_id("ev-field-goods_name").check()
    action = editor.get_by_test_id("action-0")
    trigger = action.locator("select[name=trigger]")
    expect(trigger.locator("option")).to_have_count(11)  # every trigger of SPEC section 2
    trigger.select_option("click")
    action.locator("select[name=action]").select_option("report")
    action.locator("input[name=page]").fill("pages/index/index")
    expect(action.locator("input[name=element]")).to_be_visible()
    action.get_by_role("button", name="Add a data source").click()
    action.get_by_role("button", name="Add a data source").click()
    rows = action.locator(".source-row")
    rows.nth(0).locator("select[name=source_field]").select_option("price")
    rows.nth(0).locator("input[name=source]").fill("goods[].price")
    rows.nth(1).locator("select[name=source_field]").select_option("goods_name")
    rows.nth(1).locator("input[name=source]").fill("$DATASET.name")

    # the element is missing: the server's error shows next to the element input
    editor.get_by_test_id("ev-save").click()
    element_error = action.locator('[data-error-for="actions[0].element"]')
    expect(element_error).to_contain_text("trigger 'click' needs an element selector")
    expect(action.locator("input[name=element]")).to_have_attribute("aria-invalid", "true")
    expect(editor.get_by_test_id("editor-result")).to_contain_text("Not saved")
    editor.scroll_into_view_if_needed()
    shot(page, "analytics-editor")

    # a page trigger without a page: the error is next to the page input
    action.locator("input[name=element]").fill(".buy")
    action.locator("input[name=page]").fill("")
    editor.get_by_test_id("ev-save").click()
    expect(action.locator('[data-error-for="actions[0].page"]')).to_contain_text(
        "needs a page")
    expect(element_error).to_be_empty()
    action.locator("input[name=page]").fill("pages/index/index")

    # save and test: asks for the tester, then opens the live test panel
    editor.get_by_test_id("ev-save-test").click()
    dialog = page.get_by_test_id("tester-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_test_id("tester-user").fill(tester)
    dialog.get_by_test_id("tester-start").click()
    panel = page.get_by_test_id("test-panel")
    expect(panel).to_be_visible()
    expect(panel).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    expect(panel.get_by_test_id("test-user")).to_contain_text(tester)
    events = page.get_by_test_id("events-table")
    expect(events.locator("tr[data-event=goods_click]")).to_have_attribute("data-status", "draft")
    test_id = panel.get_by_test_id("test-id").inner_text().strip()
    assert re.fullmatch(r"t_[0-9a-f]{12}", test_id)
    sim_link = panel.get_by_test_id("test-open-sim").get_attribute("href") or ""
    assert f"user={tester}" in sim_link and f"appid={app.appid}" in sim_link

    # --- the simulator, as the tester, in a second browser context ---
    sim_ctx = browser.new_context(**DESKTOP)
    sim = sim_ctx.new_page()
    sim.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(sim, live.url, developer, path=sim_link)
    expect(sim.get_by_test_id("sim-user")).to_have_value(tester)
    sim.get_by_test_id("sim-launch").click()
    analytics = sim.get_by_test_id("sim-analytics")
    expect(analytics).to_have_attribute("data-config", "test", timeout=LIVE_MS)
    expect(analytics).to_have_attribute("data-test", test_id)
    expect(sim.get_by_test_id("miniapp").locator("button.buy")).to_have_count(2, timeout=LIVE_MS)
    expect(sim.get_by_test_id("mp-greeting")).to_contain_text("prefetch")  # Oolong, Mooncake
    sim.get_by_test_id("miniapp").locator("#buy-t1").click()
    reported = sim.get_by_test_id("sim-analytics-log").locator("li[data-event=goods_click]")
    expect(reported).to_have_attribute("data-state", "accepted", timeout=LIVE_MS)
    expect(reported).to_contain_text("price=21")

    # the tap shows up in the console's test panel within seconds, with its field values
    row = panel.get_by_test_id("test-reports").locator("tr.accepted[data-event=goods_click]")
    expect(row).to_have_count(1, timeout=LIVE_MS)
    expect(row.locator("td.values")).to_contain_text("price 21")
    expect(row.locator("td.values")).to_contain_text("goods_name Oolong")
    expect(row).to_contain_text("pages/index/index")
    expect(row).to_contain_text("click")
    page.bring_to_front()
    shot(page, "analytics-test-panel")

    # sync the results into the reports
    panel.get_by_test_id("test-sync").click()
    # the click, and the simulator's built-in events of the test ($launch, $show, $pageview)
    expect(panel.get_by_test_id("test-note")).to_contain_text("4 event(s) synced")
    page.get_by_test_id("open-reports").click()
    expect(page).to_have_url(re.compile(r"/analytics/reports$"))

    # --- the report: a line chart by day and its table ---
    expect(page.locator("#reports-page")).to_have_attribute("data-ready", "true")
    report = page.get_by_test_id("report-form")
    expect(page.get_by_test_id("rep-table")).to_contain_text("Choose an event")
    report.get_by_test_id("rep-event").select_option("goods_click")
    expect(page.get_by_test_id("rep-table")).not_to_contain_text("Choose an event")
    report.get_by_role("button", name="Add a metric").click()
    report.get_by_test_id("rep-metrics").locator("select[name=metric]").nth(1).select_option(
        "sum:price")
    report.get_by_test_id("rep-run").click()
    table = page.get_by_test_id("rep-table")
    expect(table).to_have_attribute("data-rows", "1")
    today_row = table.locator("tbody tr").first
    expect(today_row.locator("td[data-col=count]")).to_have_text("1")
    expect(today_row.locator("td[data-col='sum:price']")).to_have_text("21")
    expect(page.get_by_test_id("rep-chart-box")).to_have_attribute("data-rendered", "true")
    assert page.evaluate("() => Chart.getChart('report-chart').config.type") == "line"
    assert page.evaluate(CANVAS_INK, "report-chart") > 500
    # counts next to a sum: not every metric counts, so no integer rule; lines stay straight
    assert page.evaluate("() => Chart.getChart('report-chart').data.datasets"
                         ".every((d) => d.tension === 0)")
    shot(page, "analytics-report")

    # grouped over the whole range: a bar chart
    report.get_by_role("button", name="Add a group-by").click()
    report.get_by_test_id("rep-groups").locator("select[name=group]").select_option("goods_name")
    report.get_by_test_id("rep-granularity").select_option("all")
    report.get_by_test_id("rep-run").click()
    grouped = table.locator("tbody tr[data-bucket=all] td[data-col=goods_name]")
    expect(grouped).to_have_text("Oolong")
    page.wait_for_function("() => Chart.getChart('report-chart')?.config.type === 'bar'")

    # a built-in event by a system property (issue 12): no definition needed
    report.get_by_test_id("rep-event").select_option("$pageview")
    report.get_by_role("button", name="Add a group-by").click()
    report.get_by_test_id("rep-groups").locator("select[name=group]").select_option("$platform")
    report.get_by_test_id("rep-run").click()
    platform = table.locator("tbody tr[data-bucket=all] td[data-col='$platform']")
    expect(platform).to_have_text(re.compile(r"^(web|windows|mac|android|ios)$"))
    expect(table.locator("tbody tr[data-bucket=all] td[data-col=count]")).to_have_text("1")
    report.get_by_test_id("rep-event").select_option("goods_click")

    # the funnel and the CSV export
    page.get_by_test_id("funnel-run").click()
    funnel = page.get_by_test_id("funnel-table")
    expect(funnel).to_have_attribute("data-rows", "2")
    expect(funnel.locator("tr[data-step='1'] td[data-col=users]")).to_have_text("1")
    expect(funnel.locator("th").last).to_have_text("Median time to next step")
    expect(funnel.locator("tr[data-step='2'] td[data-col=median_s]")).to_have_text("–")
    page.get_by_test_id("funnel-window").select_option("5m")
    page.get_by_test_id("funnel-order").select_option("any")
    page.get_by_test_id("funnel-run").click()
    expect(funnel.locator("tr[data-step='2'] td[data-col=drop_off]")).to_be_visible()
    expect(page.get_by_test_id("funnel-error")).to_have_text("")
    page.get_by_test_id("funnel-table").scroll_into_view_if_needed()
    shot(page, "analytics-funnel", full_page=False)
    funnel_chart = "() => Chart.getChart('funnel-chart')"
    assert page.evaluate(funnel_chart + ".options.scales.y.ticks.precision") == 0  # whole users
    ticks = page.evaluate(funnel_chart + ".scales.y.ticks.map((tick) => tick.value)")
    assert ticks and all(float(v).is_integer() for v in ticks), ticks
    assert page.evaluate(CANVAS_INK, "funnel-chart") > 500
    href = page.get_by_test_id("csv-link").get_attribute("href") or ""
    assert "/analytics/export?event=goods_click" in href
    csv = page.request.get(live.url + href)
    assert csv.ok and "text/csv" in csv.headers["content-type"]
    assert "21" in csv.text() and "Oolong" in csv.text()

    # --- stop the test and publish: the simulator follows live ---
    page.goto(f"{live.url}/console/apps/{app.appid}/analytics?test={test_id}")
    panel = page.get_by_test_id("test-panel")
    expect(panel).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    panel.get_by_test_id("test-stop").click()
    expect(panel).to_have_attribute("data-state", "stopped")
    expect(analytics).to_have_attribute("data-config", "none", timeout=LIVE_MS)
    page.get_by_test_id("ev-publish").click()
    expect(page.get_by_test_id("editor-result")).to_contain_text("Published version 1")
    expect(page.get_by_test_id("published-version")).to_have_attribute("data-version", "1")
    expect(page.get_by_test_id("events-table").locator("tr[data-event=goods_click]")).to_have_attribute(
        "data-status", "published")
    expect(analytics).to_have_attribute("data-config", "published", timeout=LIVE_MS)
    expect(analytics).to_have_attribute("data-version", "1")
    expect(analytics.get_by_test_id("sim-analytics-config")).to_have_text("published v1")

    # a draft change shows as such; "reset to published" throws it away
    page.get_by_test_id("edit-goods_click").click()
    page.get_by_test_id("ev-display").fill("商品点击（新）")
    page.get_by_test_id("ev-save").click()
    goods_row = page.get_by_test_id("events-table").locator("tr[data-event=goods_click]")
    expect(goods_row).to_have_attribute("data-status", "changed")
    expect(goods_row).to_contain_text("商品点击（新）")
    page.get_by_test_id("ev-reset").click()
    expect(goods_row).to_have_attribute("data-status", "published")
    expect(page.get_by_test_id("ev-display")).to_have_value("商品点击")

    # with the published configuration a tap is reported to everyone's reports at once
    sim.get_by_test_id("miniapp").locator("#buy-t2").click()
    expect(sim.get_by_test_id("sim-analytics-log").locator(
        "li[data-event=goods_click][data-state=accepted]")).to_have_count(2, timeout=LIVE_MS)
    expect(sim.get_by_test_id("sim-analytics-log").locator("li[data-builtin=false]").first).to_contain_text(
        "price=42")
    sim.bring_to_front()
    shot(sim, "simulator-analytics")
    assert live.run(live.platform.analytics.count(app.appid, "goods_click")) == 2
    assert errors == []
    sim_ctx.close()
    console_ctx.close()


def test_api_events_reported_from_code_show_refusals(live: LiveConsole, browser: Any) -> None:
    """wx.reportAnalytics from the sample app (cart checkout) with no such event defined: the
    simulator shows the platform's refusal, and nothing valid is lost."""
    developer = live.user("developer")
    app = live.app("Noodle bar")
    context = browser.new_context(**DESKTOP)
    sim = context.new_page()
    sign_in(sim, live.url, developer, path=f"/console/simulator?appid={app.appid}")
    sim.get_by_test_id("sim-user").fill("carol-" + developer.rsplit("-", 1)[1])
    sim.get_by_test_id("sim-prefetch").uncheck()
    sim.get_by_test_id("sim-launch").click()
    expect(sim.get_by_test_id("sim-analytics")).to_have_attribute("data-config", "none",
                                                                  timeout=LIVE_MS)
    app_screen = sim.get_by_test_id("miniapp")
    app_screen.locator("#buy-g1").click()
    sim.locator("#miniapp-tabs button[data-tab='pages/cart/cart']").click()
    app_screen.locator("#checkout").click()
    sim.get_by_test_id("sim-analytics-flush").click()
    refused = sim.get_by_test_id("sim-analytics-log").locator("li[data-event=checkout]")
    expect(refused).to_have_attribute("data-state", "refused", timeout=LIVE_MS)
    expect(refused).to_contain_text("unknown event 'checkout'")
    expect(sim.get_by_test_id("sim-analytics-counts")).to_contain_text("1 refused")
    # the runtime's built-in events are listed too, apart from the custom ones' counts
    log = sim.get_by_test_id("sim-analytics-log")
    expect(log.locator("li[data-event='$launch'][data-builtin=true]")).to_have_count(1)
    cart_view = log.locator("li[data-event='$pageview']", has_text="path=pages/cart/cart")
    expect(cart_view).to_have_count(1)
    expect(sim.get_by_test_id("sim-log")).to_contain_text("iPhone 15 · ios · 17.2")
    context.close()
