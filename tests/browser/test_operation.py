"""Daily operation in the console, in a real browser: an admin confirms or rejects a change
requested elsewhere (the CLI), under the two-person rule too; the audit log pages and filters;
the fetch log scrolls on a phone instead of clipping. Screenshots of each page touched."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import LiveConsole, shot, sign_in

pytestmark = pytest.mark.browser
DESKTOP = {"viewport": {"width": 1360, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def _cli_change(live: LiveConsole, appid: str, kind: str, path: str) -> str:
    pending = live.run(live.platform.apps.request_change(
        appid, kind, "set", f"{live.dev.url}{path}", "key:local-cli"))  # as the CLI asks
    return pending.change.id


def test_an_admin_confirms_or_rejects_a_change_requested_from_the_cli(
    live: LiveConsole, browser: Any
) -> None:
    admin = live.user("admin")
    app = live.app("Tea house")
    confirm_id = _cli_change(live, app.appid, "periodic", "/data/periodic")
    reject_id = _cli_change(live, app.appid, "pre", "/data/prefetch")
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    sign_in(page, live.url, admin, path=f"/console/apps/{app.appid}/urls")
    asked = page.locator(f"[data-change-id='{confirm_id}']")
    expect(asked).to_contain_text("key:local-cli")  # who asked
    shot(page, "urls-pending-for-admin")
    asked.get_by_test_id("confirm-change").click()
    expect(page.locator(".flash-ok")).to_be_visible()
    urls = live.run(live.platform.apps.settings(app.appid))["urls"]
    assert urls["periodic"]["url"] == f"{live.dev.url}/data/periodic"

    page.locator(f"[data-change-id='{reject_id}']").get_by_test_id("reject-change").click()
    expect(page.locator(".flash-ok")).to_be_visible()
    expect(page.get_by_test_id("no-pending")).to_be_visible()
    assert live.run(live.platform.apps.settings(app.appid))["urls"]["pre"]["url"] is None
    history = page.get_by_test_id("history")
    expect(history).to_contain_text(admin)

    # the two-person rule: one's own request cannot be confirmed, someone else's can
    live.platform.apps.two_person_rule = True
    try:
        own = live.run(live.platform.apps.request_change(
            app.appid, "pre", "set", f"{live.dev.url}/data/prefetch", admin)).change.id
        page.reload()
        mine = page.locator(f"[data-change-id='{own}']")
        expect(mine.get_by_test_id("confirm-change")).to_be_disabled()
        expect(mine.get_by_test_id("two-person-note")).to_be_visible()
        shot(page, "urls-two-person-rule")
        other = live.user("admin")
        second = browser.new_context(**DESKTOP)
        other_page = second.new_page()
        sign_in(other_page, live.url, other, path=f"/console/apps/{app.appid}/urls")
        other_page.locator(f"[data-change-id='{own}']").get_by_test_id("confirm-change").click()
        expect(other_page.locator(".flash-ok")).to_be_visible()
        second.close()
    finally:
        live.platform.apps.two_person_rule = False
    context.close()


def test_audit_log_pages_and_filters(live: LiveConsole, browser: Any) -> None:
    viewer = live.user("viewer")
    app = live.app("Audited")
    for n in range(55):  # more than one page of change requests by the CLI
        _cli_change(live, app.appid, "periodic", f"/data/periodic?n={n}")
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    sign_in(page, live.url, viewer, path=f"/console/audit?appid={app.appid}")
    rows = page.get_by_test_id("audit-table").locator("tbody tr")
    expect(rows).to_have_count(50)
    page.get_by_test_id("audit-older").click()
    p = live.platform
    total = len(live.run(p.db.read(p.registry.list_audit, app.appid, 1000)))
    assert total >= 56  # 55 requests, the app's creation (and its members' additions)
    expect(rows).to_have_count(total - 50)
    page.goto(f"{live.url}/console/audit?appid={app.appid}&action=app.")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("app.create")
    filters = page.get_by_test_id("audit-filter")
    filters.locator("input[name=action]").fill("change.request")
    filters.locator("select[name=actor]").select_option("key:local-cli")
    expect(rows).to_have_count(50)
    lines = rows.first.locator("code.action").evaluate("(code) => code.getClientRects().length")
    assert lines == 1  # one line: never broken mid-word
    shot(page, "audit-filtered")
    context.close()


def test_the_fetch_log_scrolls_on_a_phone(live: LiveConsole, browser: Any) -> None:
    developer = live.user("developer")
    app = live.app("Narrow", periodic="/data/periodic")
    live.call("background.set_token", app.appid, "alice", "t-alice")
    live.run(live.platform.background.fetch_now(app.appid, "alice", "periodic"))
    context = browser.new_context(**PHONE)
    page = context.new_page()
    sign_in(page, live.url, developer, path=f"/console/apps/{app.appid}/health")
    log = page.get_by_test_id("fetch-log")
    expect(log.locator("tr[data-verdict=cached]")).not_to_have_count(0)
    sizes = log.evaluate("""(table) => ({wrap: table.parentElement.clientWidth,
        table: table.scrollWidth, scroll: table.parentElement.scrollWidth,
        page: document.documentElement.scrollWidth, view: window.innerWidth,
        overflow: getComputedStyle(table.parentElement).overflowX})""")
    assert sizes["overflow"] == "auto"
    assert sizes["page"] <= sizes["view"], sizes  # the page itself does not widen
    assert sizes["scroll"] >= sizes["table"], sizes  # every column reachable by scrolling
    shot(page, "health-phone")
    context.close()


def test_empty_states_guide_a_new_app(live: LiveConsole, browser: Any) -> None:
    developer = live.user("developer")
    app = live.app("Fresh")
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    sign_in(page, live.url, developer, path=f"/console/apps/{app.appid}")
    steps = page.get_by_test_id("next-steps")
    expect(steps.locator("li")).to_have_count(3)
    for step, target in (("url", f"/apps/{app.appid}/urls"),
                         ("event", f"/apps/{app.appid}/analytics"),
                         ("simulator", f"/simulator?appid={app.appid}")):  # fmt: skip
        link = steps.locator(f"li[data-step={step}] a")
        assert (link.get_attribute("href") or "").endswith(target), step
    expect(steps.locator("li.done")).to_have_count(0)
    shot(page, "app-overview-new")

    page.goto(f"{live.url}/console/apps/{app.appid}/health")
    expect(page.locator("#health-page[data-charts-ready=true]")).to_have_count(1)
    notes = page.get_by_test_id("chart-empty")
    expect(notes).to_have_count(3)
    for n in range(3):
        expect(notes.nth(n)).to_be_visible()
        expect(notes.nth(n)).to_contain_text("No fetches")
    shot(page, "health-empty")

    pending = live.run(live.platform.apps.request_change(
        app.appid, "periodic", "set", f"{live.dev.url}/data/periodic", "test"))
    live.call("apps.confirm", pending.code, "test-admin")
    page.goto(f"{live.url}/console/apps/{app.appid}")
    expect(steps.locator("li.done[data-step=url]")).to_have_count(1)
    context.close()
