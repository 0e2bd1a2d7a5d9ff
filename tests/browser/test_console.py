"""The console in a real browser: sign-in and roles, the QR confirmation flow with a second
browser context as the admin's phone, devtools (fetch now), the simulator (pre-fetch at launch,
push refresh), users and languages. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
import qrcode
from PIL import Image
from playwright.sync_api import expect
from sqlalchemy import update

from miniport.storage import schema as t
from miniport.web.console.routes import QR_BORDER, QR_BOX
from tests.browser.conftest import PASSWORD, LiveConsole, shot, sign_in

pytestmark = pytest.mark.browser
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
         "device_scale_factor": 2}
DESKTOP = {"viewport": {"width": 1360, "height": 900}}


def csrf_fetch(page: Any, method: str, path: str, body: Any = None, *,
               csrf: bool = True) -> dict[str, Any]:
    """A fetch from the page, as the console's scripts make it; returns status and JSON."""
    return page.evaluate(
        """async ([method, path, body, csrf]) => {
            const headers = {'Content-Type': 'application/json'};
            const meta = document.querySelector('meta[name=csrf-token]');
            if (csrf) headers['X-CSRF-Token'] = meta.content;
            const payload = body === null ? undefined : JSON.stringify(body);
            const r = await fetch(path, {method, headers, body: payload});
            return {status: r.status, body: await r.json()};
        }""",
        [method, path, body, csrf],
    )


def decode_qr_matrix(png: bytes) -> list[list[bool]]:
    """Read the QR code's modules back from the PNG (dark = True), border excluded."""
    image = Image.open(io.BytesIO(png)).convert("L")
    modules = image.width // QR_BOX
    return [
        [image.getpixel((x * QR_BOX + QR_BOX // 2, y * QR_BOX + QR_BOX // 2)) < 128
         for x in range(QR_BORDER, modules - QR_BORDER)]
        for y in range(QR_BORDER, modules - QR_BORDER)
    ]


def qr_matrix_of(text: str) -> list[list[bool]]:
    qr = qrcode.QRCode(border=0, error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(text)
    qr.make(fit=True)
    return [[bool(cell) for cell in row] for row in qr.get_matrix()]


def test_sign_in_and_role_refusal(live: LiveConsole, browser: Any) -> None:
    viewer, developer = live.user("viewer"), live.user("developer")
    app = live.app("Roles", periodic="/data/periodic")
    context = browser.new_context(**DESKTOP)
    page = context.new_page()

    # a wrong password is refused with a clear message
    page.goto(f"{live.url}/console/apps")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.fill("input[name=name]", viewer)
    page.fill("input[name=password]", "not-the-password")
    page.click("form button[type=submit]")
    expect(page.get_by_test_id("login-error")).to_contain_text("Wrong user name or password")
    shot(page, "login")

    # the viewer signs in and lands where they were going
    page.fill("input[name=name]", viewer)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    expect(page).to_have_url(f"{live.url}/console/apps")
    expect(page.get_by_test_id("who")).to_contain_text(viewer)
    session = next(c for c in context.cookies() if c["name"] == "mp_session")
    assert session["httpOnly"] and session["sameSite"] == "Lax"

    # a viewer sees the data URLs but has no request form, and the server refuses anyway
    page.goto(f"{live.url}/console/apps/{app.appid}/urls")
    expect(page.get_by_test_id("urls-table")).to_contain_text("/data/periodic")
    expect(page.get_by_test_id("change-form-periodic")).to_have_count(0)
    refused = csrf_fetch(page, "POST", f"/admin/v1/apps/{app.appid}/changes",
                         {"kind": "periodic", "op": "disable"})
    assert refused["status"] == 403 and "developer" in refused["body"]["message"]
    form = page.request.post(f"{live.url}/console/apps/{app.appid}/changes", form={
        "kind": "periodic", "op": "disable",
        "csrf_token": page.get_attribute("meta[name=csrf-token]", "content")})
    assert form.status == 403 and "developer role" in form.text()
    # no CSRF token: refused before the role is even considered
    no_csrf = csrf_fetch(page, "POST", f"/admin/v1/apps/{app.appid}/changes",
                         {"kind": "periodic", "op": "disable"}, csrf=False)
    assert no_csrf["status"] == 403 and "CSRF" in no_csrf["body"]["message"]
    page.goto(f"{live.url}/console/apps/{app.appid}")
    expect(page.get_by_test_id("secret-hidden")).to_be_visible()
    shot(page, "app-overview-viewer")
    context.close()

    # a developer requests a change, but cannot confirm it
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    sign_in(page, live.url, developer, path=f"/console/apps/{app.appid}/urls")
    page.get_by_test_id("change-form-periodic").get_by_role(
        "button", name="Request: turn off").click()
    link = page.get_by_test_id("confirm-link").first.get_attribute("href")
    assert link and "/confirm/" in link
    page.goto(link)
    expect(page.get_by_test_id("confirm-refused")).to_contain_text(
        "Only an admin can confirm data URL changes")
    expect(page.get_by_test_id("confirm-button")).to_have_count(0)
    shot(page, "confirm-refused-developer")
    code = link.rsplit("/", 1)[1]
    api = csrf_fetch(page, "POST", "/admin/v1/changes/confirm", {"code": code})
    assert api["status"] == 403
    assert live.call("apps.change_for_code", code).status == "pending"
    context.close()


def test_qr_confirmation_flow(live: LiveConsole, browser: Any) -> None:
    admin, developer = live.user("admin"), live.user("developer")
    app = live.app("Tea House")
    desk = browser.new_context(**DESKTOP)
    page = desk.new_page()
    sign_in(page, live.url, developer, path=f"/console/apps/{app.appid}/urls")
    new_url = f"{live.dev.url}/data/periodic?shop=tea"
    form = page.get_by_test_id("change-form-periodic")
    form.locator("input[name=url]").fill(new_url)
    form.get_by_role("button", name="Request this URL").click()
    change = page.get_by_test_id("pending-change").first
    expect(change.get_by_test_id("change-status")).to_have_text("waiting for an admin")
    expect(change.get_by_test_id("qr")).to_be_visible()
    link = change.get_by_test_id("confirm-link").get_attribute("href")
    assert link and link.startswith(f"{live.url}/confirm/")

    # the QR image really encodes the link
    src = change.get_by_test_id("qr").get_attribute("src")
    png = page.request.get(live.url + str(src))
    assert png.status == 200 and png.headers["content-type"] == "image/png"
    assert decode_qr_matrix(png.body()) == qr_matrix_of(link)
    shot(page, "data-urls-pending-qr")

    # the admin's phone: a second browser context that scans the code (opens the link)
    phone = browser.new_context(**PHONE)
    mobile = phone.new_page()
    mobile.goto(link)
    expect(mobile).to_have_url(re.compile(r"/console/login\?next=%2Fconfirm%2F"))
    mobile.fill("input[name=name]", admin)
    mobile.fill("input[name=password]", PASSWORD)
    mobile.click("form button[type=submit]")
    expect(mobile).to_have_url(link)
    expect(mobile.get_by_test_id("confirm-card")).to_contain_text(new_url)
    shot(mobile, "confirm-phone")
    mobile.get_by_test_id("confirm-button").click()
    expect(mobile.get_by_test_id("confirm-result")).to_contain_text("The change is applied")
    shot(mobile, "confirm-phone-applied")

    # the page that shows the QR code updates by itself
    expect(change.get_by_test_id("change-status")).to_have_text("applied", timeout=10_000)
    expect(change.get_by_test_id("applied-note")).to_contain_text(admin)
    expect(page.locator("tr[data-kind=periodic] .url-cell")).to_contain_text(new_url)
    change_id = change.get_attribute("data-change-id")
    history = page.locator(f"tr[data-history-id='{change_id}']")
    expect(history.locator(".history-status")).to_have_text("applied")
    expect(history).to_contain_text(admin)
    shot(page, "data-urls-applied")

    urls = live.run(live.platform.db.read(live.platform.registry.fetch_urls, app.appid))
    assert urls["periodic"].url == new_url and urls["periodic"].enabled
    # the link works once
    mobile.goto(link)
    expect(mobile.get_by_test_id("confirm-button")).to_have_count(0)
    expect(mobile.get_by_test_id("confirm-status")).to_have_text("applied")

    page.goto(f"{live.url}/console/audit?appid={app.appid}")
    table = page.get_by_test_id("audit-table")
    expect(table).to_contain_text("change.confirm")
    expect(table).to_contain_text(admin)
    shot(page, "audit-log")
    phone.close()
    desk.close()


def test_fetch_now_shows_the_request_and_verdict(live: LiveConsole, browser: Any) -> None:
    developer = live.user("developer")
    app = live.app("Bakery", periodic="/data/periodic", pre="/data/prefetch")
    live.call("background.set_token", app.appid, "alice", "t-alice")
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    sign_in(page, live.url, developer, path=f"/console/apps/{app.appid}/health")
    tool = page.get_by_test_id("fetch-now-form")
    tool.locator("input[name=user_id]").fill("alice")
    tool.get_by_role("button", name="Fetch now").click()
    result = page.get_by_test_id("fetch-result")
    expect(result.get_by_test_id("verdict")).to_have_attribute("data-verdict", "cached")
    request = result.get_by_test_id("fetch-request")
    expect(request).to_contain_text(f"GET {live.dev.url}/data/periodic?")
    expect(request).to_contain_text(f"appid={app.appid}")
    expect(request).to_contain_text("token=t-alice")
    # the response: status, headers, the body (first KBs) with a download of the whole
    expect(result.get_by_test_id("fetch-response-headers")).to_contain_text("HTTP 200")
    expect(result.get_by_test_id("fetch-response-headers")).to_contain_text(
        "Content-Type: application/json")
    expect(result.get_by_test_id("fetch-response-body")).to_contain_text(
        "hello from the developer server")
    download = result.get_by_test_id("fetch-body-download")
    expect(download).to_be_visible()
    with page.expect_download() as got:
        download.click()
    assert "hello from the developer server" in got.value.path().read_text(encoding="utf-8")
    expect(page.get_by_test_id("fetch-log").locator("tr[data-verdict=cached]")).not_to_have_count(0)

    # a pre-fetch with launch parameters
    tool.locator("select[name=type]").select_option("pre")
    tool.locator("input[name=path]").fill("pages/detail/detail")
    tool.locator("input[name=scene]").fill("1011")
    tool.get_by_role("button", name="Fetch now").click()
    expect(request).to_contain_text("scene=1011")
    expect(request).to_contain_text("path=pages%2Fdetail%2Fdetail")

    # a failing developer server: the verdict says why
    pending = live.run(live.platform.apps.request_change(
        app.appid, "periodic", "set", f"{live.dev.url}/status/500", "test"))
    live.call("apps.confirm", pending.code, "test-admin")
    tool.locator("select[name=type]").select_option("periodic")
    tool.get_by_role("button", name="Fetch now").click()
    expect(result.get_by_test_id("verdict")).to_have_attribute("data-verdict", "http_error")
    expect(result).to_contain_text("500")
    expect(page.get_by_test_id("fetch-log").locator("tr[data-verdict=http_error]")).not_to_have_count(0)
    expect(page.locator("#health-page[data-charts-ready=true]")).to_have_count(1)
    stats = page.get_by_test_id("health-stats").locator(".stat[data-kind=periodic] .rate")
    expect(stats).not_to_have_text("–")

    # clear the cache for alice
    clear = page.get_by_test_id("clear-form")
    clear.locator("input[name=user_id]").fill("alice")
    clear.get_by_role("button", name="Clear for this user").click()
    expect(page.get_by_test_id("clear-result")).to_contain_text("for alice")
    shot(page, "health-devtools")
    context.close()


def test_simulator_prefetch_and_push(live: LiveConsole, browser: Any) -> None:
    developer = live.user("developer")
    app = live.app("Noodles", periodic="/data/periodic", pre="/data/prefetch")
    user = "sim-" + developer.rsplit("-", 1)[1]
    context = browser.new_context(**DESKTOP)
    sim = context.new_page()
    sign_in(sim, live.url, developer, path=f"/console/simulator?appid={app.appid}")
    sim.get_by_test_id("sim-user").fill(user)
    expect(sim.get_by_test_id("sim-prefetch")).to_be_checked()
    sim.get_by_test_id("sim-launch").click()

    pre = sim.get_by_test_id("sim-pre")
    expect(pre.locator(".data-body")).to_contain_text('"kind": "prefetch"', timeout=10_000)
    expect(pre.locator(".data-body")).to_contain_text('"path": "pages/index/index"')
    expect(pre.locator(".meta")).to_contain_text("scene=1001")
    # the sample mini-program rendered the pre-fetched data (wx.getBackgroundFetchData)
    expect(sim.get_by_test_id("mp-greeting")).to_contain_text("prefetch")
    expect(sim.get_by_test_id("miniapp").locator("button.buy")).to_have_count(2)
    expect(sim.get_by_test_id("sim-status")).to_contain_text(f"Running as {user}")

    # taps and tabs run through the page framework
    sim.get_by_test_id("miniapp").locator("#buy-t1").click()
    expect(sim.get_by_test_id("mp-source")).to_contain_text("cart: 1")
    expect(sim.get_by_test_id("sim-log")).to_contain_text("tap pages/index/index #buy-t1.buy")

    # set the token; then a push from the console reaches the simulator live
    sim.get_by_test_id("sim-set-token").click()
    expect(sim.get_by_test_id("sim-log")).to_contain_text("setBackgroundFetchToken:ok")
    console = context.new_page()
    console.goto(f"{live.url}/console/apps/{app.appid}/health")
    push = console.get_by_test_id("push-form")
    push.locator("input[name=user_id]").fill(user)
    push.get_by_role("button", name="Push a refresh").click()
    expect(console.get_by_test_id("push-result")).to_contain_text(
        "1 connected device(s): simulator")
    periodic = sim.get_by_test_id("sim-periodic")
    expect(periodic).to_have_attribute("data-state", "live", timeout=10_000)
    expect(periodic.locator(".data-body")).to_contain_text('"token": "t-alice"')
    expect(sim.get_by_test_id("sim-log").locator("li[data-kind=push]")).to_have_count(1)
    sim.bring_to_front()
    shot(sim, "simulator")

    # pre-fetch off locally: a launch reports no cold start, so nothing is pre-fetched
    fetched_before = live.dev.served.get("prefetch", 0)
    sim.get_by_test_id("sim-prefetch").uncheck()
    sim.get_by_test_id("sim-launch").click()
    expect(sim.get_by_test_id("sim-log")).to_contain_text("pre-fetch is off locally")
    expect(sim.get_by_test_id("sim-status")).to_contain_text(f"Running as {user}")
    assert live.dev.served.get("prefetch", 0) == fetched_before
    context.close()


def test_users_one_time_password_and_language(live: LiveConsole, browser: Any) -> None:
    admin = live.user("admin")
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    sign_in(page, live.url, admin, path="/console/users")
    name = "newdev-" + admin.rsplit("-", 1)[1]
    create = page.get_by_test_id("create-user")
    create.locator("input[name=name]").fill(name)
    create.locator("select[name=role]").select_option("developer")
    create.get_by_role("button", name="Add user").click()
    otp = page.get_by_test_id("otp").inner_text().strip()
    assert len(otp) >= 12
    expect(page.locator(f"tr[data-user='{name}']")).to_contain_text("one-time password")
    shot(page, "users")

    # the new user must choose a password before anything else
    other = browser.new_context(**DESKTOP)
    fresh = other.new_page()
    sign_in(fresh, live.url, name, otp)
    expect(fresh).to_have_url(re.compile(r"/console/account/password"))
    expect(fresh.get_by_test_id("must-change")).to_be_visible()
    fresh.goto(f"{live.url}/console/apps")
    expect(fresh).to_have_url(re.compile(r"/console/account/password"))
    fresh.fill("input[name=current]", otp)
    fresh.fill("input[name=new]", "my-own-password")
    fresh.fill("input[name=repeat]", "my-own-password")
    fresh.click("form.stack button[type=submit]")
    expect(fresh).to_have_url(f"{live.url}/console/apps")

    # Simplified Chinese, remembered in a cookie
    fresh.goto(f"{live.url}/console/apps?lang=zh-CN")
    expect(fresh.locator("nav.mainnav")).to_contain_text("应用")
    fresh.goto(f"{live.url}/console/audit")
    expect(fresh.locator("h1")).to_have_text("操作日志")
    shot(fresh, "audit-zh-CN")
    fresh.goto(f"{live.url}/console/apps?lang=en")
    expect(fresh.locator("h1")).to_have_text("Apps")

    # disabling a user ends their session at once
    page.goto(f"{live.url}/console/users")
    page.locator(f"tr[data-user='{name}']").get_by_role("button", name="Disable").click()
    expect(page.locator(f"tr[data-user='{name}']")).to_contain_text("disabled")
    fresh.goto(f"{live.url}/console/apps")
    expect(fresh).to_have_url(re.compile(r"/console/login"))
    other.close()
    context.close()


def test_apps_create_and_rotate_secret(live: LiveConsole, browser: Any) -> None:
    developer = live.user("developer")
    context = browser.new_context(**PHONE)
    page = context.new_page()
    sign_in(page, live.url, developer)
    create = page.get_by_test_id("create-app")
    create.locator("input[name=name]").fill("Phone Shop")
    create.get_by_role("button", name="Create app").click()
    appid = page.get_by_test_id("app-appid").inner_text()
    assert appid.startswith("mp")
    page.get_by_test_id("reveal-secret").click()
    before = page.get_by_test_id("app-secret").inner_text()
    assert re.fullmatch(r"[0-9a-f]{32}", before)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("rotate-secret").click()
    expect(page.locator(".flash")).to_contain_text("new AppSecret")
    page.get_by_test_id("reveal-secret").click()
    after = page.get_by_test_id("app-secret").inner_text()
    assert after != before and live.call("apps.get", appid).secret == after
    shot(page, "app-overview-phone")
    page.goto(f"{live.url}/console/apps")
    expect(page.get_by_test_id("apps-table")).to_contain_text("Phone Shop")
    shot(page, "apps")
    context.close()


def test_the_grey_release_table_updates_when_a_grey_change_is_applied(
    live: LiveConsole, browser: Any
) -> None:
    """The data URLs page follows its pending changes and, once one is applied, refreshes the
    URLs it shows: the main URLs only, so a grey change confirmed by an admin (by the QR code,
    elsewhere) left the grey release table showing no grey URL until a reload."""
    developer = live.user("developer")
    app = live.app("Grey Tea", periodic="/data/periodic")
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    sign_in(page, live.url, developer, path=f"/console/apps/{app.appid}/urls")
    grey_url = f"{live.dev.url}/data/periodic?grey=1"
    form = page.get_by_test_id("grey-form-periodic")
    form.locator("input[name=url]").fill(grey_url)
    form.locator("input[name=ratio]").first.fill("15")
    form.get_by_role("button", name="Request grey URL").click()
    change = page.get_by_test_id("pending-change").first
    expect(change.get_by_test_id("change-status")).to_have_text("waiting for an admin")
    # an admin confirms on their phone: the confirmation page names the ratio and grey URL
    link = str(change.get_by_test_id("confirm-link").get_attribute("href"))
    phone = browser.new_context(**PHONE)
    mobile = phone.new_page()
    sign_in(mobile, live.url, live.user("admin"), path=link.removeprefix(live.url))
    expect(mobile.get_by_test_id("confirm-ratio")).to_contain_text("15 %")
    expect(mobile.get_by_test_id("confirm-card")).to_contain_text(grey_url)
    shot(mobile, "confirm-phone-grey")
    mobile.get_by_test_id("confirm-button").click()
    expect(mobile.get_by_test_id("confirm-result")).to_contain_text("The change is applied")
    phone.close()
    expect(change.get_by_test_id("change-status")).to_have_text("applied", timeout=10_000)
    row = page.locator("tr[data-grey-kind=periodic]")
    expect(row).to_contain_text(grey_url)
    expect(row.locator(".grey-ratio")).to_have_text("15 %")
    shot(page, "data-urls-grey-applied")
    expect(page.get_by_test_id("waking")).to_have_count(0)  # its wake is done

    # the server stopped in the middle of the wake (after user u3), a while ago: the page says
    # so until the scheduler has resumed it
    change_id = str(change.get_attribute("data-change-id"))

    def cut_short() -> None:  # without its URL settings: this server's scheduler leaves it be
        with live.platform.db.writing() as conn:
            conn.execute(
                update(t.change_requests)
                .where(t.change_requests.c.id == change_id)
                .values(wake_from="u3", wake_at=0.0)
            )

    live.run(live.platform.db.write(cut_short))
    page.reload()
    waking = page.get_by_test_id("waking")
    expect(waking).to_have_attribute("data-stalled", "true")
    expect(waking).to_contain_text(f"“set grey URL” (Periodic update, change {change_id})")
    expect(waking).to_contain_text("the scheduler resumes it within a minute")
    shot(page, "data-urls-wake-stalled")
    context.close()
