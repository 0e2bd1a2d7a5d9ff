"""Console: the data URLs page shows and requests the grey release; the health page shows the
pre-fetch effectiveness report and the alert history."""

from __future__ import annotations

from miniport.storage.fetches import FetchRecord
from tests.conftest import LiveServer, confirm_url
from tests.web.console.test_console_http import PASSWORD, client, csrf_of, sign_in


async def test_grey_on_the_urls_page_and_reports_on_the_health_page(
    live_server: LiveServer,
) -> None:
    p = live_server.platform
    base = live_server.url
    await p.console_users.create_user("gwen", "developer", PASSWORD)
    app = await p.apps.create("shop", "dev")
    await p.members.add(app.appid, "gwen", "developer", "test")  # per-app access
    await p.apps.set_tester(app.appid, "tess", True, "dev")
    async with client() as s:
        (await sign_in(s, base, "gwen")).release()
        async with s.get(f"{base}/console/apps/{app.appid}/urls") as r:
            page = await r.text()
        assert 'data-testid="grey-form-periodic"' in page and "<code>tess</code>" in page
        form = {"csrf_token": csrf_of(page), "kind": "periodic", "op": "grey_set",
                "url": "https://dev.example/grey", "ratio": "15"}  # fmt: skip
        async with s.post(f"{base}/console/apps/{app.appid}/changes", data=form) as r:
            assert r.status == 200
            page = await r.text()
        assert "https://dev.example/grey" in page and "15 %" in page  # the pending change
        bad = {**form, "ratio": "lots"}
        async with s.post(f"{base}/console/apps/{app.appid}/changes", data=bad) as r:
            assert r.status == 422
            assert 'data-testid="error-grey-periodic"' in await r.text()

        await p.alerts.configure(app.appid, {"webhook": "http://127.0.0.1:9/hook",
                                             "min_fetches": 1})  # fmt: skip
        now = p.clock.now()
        await p.db.write(p.fetches.record, [FetchRecord(app.appid, "u", "pre", "launch", now,
                                                        "x", "timeout")])  # fmt: skip
        assert await p.alerts.check() == 1
        async with s.get(f"{base}/console/apps/{app.appid}/health") as r:
            page = await r.text()
        assert 'data-testid="prefetch-report"' in page
        assert 'data-alert-state="failing"' in page and "timeout" in page


async def test_fetch_settings_on_the_urls_page(live_server: LiveServer) -> None:
    p = live_server.platform
    base = live_server.url
    await p.console_users.create_user("hal", "developer", PASSWORD)
    app = await p.apps.create("shop", "dev")
    await p.members.add(app.appid, "hal", "developer", "test")  # per-app access
    url = f"{base}/console/apps/{app.appid}"
    async with client() as s:
        (await sign_in(s, base, "hal")).release()
        async with s.get(f"{url}/urls") as r:
            page = await r.text()
        assert 'data-testid="fetch-settings"' in page
        form = {"csrf_token": csrf_of(page), "interval": "6h", "timeout": "5s",
                "header": "X-Api-Key: sk-live-0123456789"}  # fmt: skip
        async with s.post(f"{url}/fetch-settings", data=form) as r:
            page = await r.text()
        assert "6 h" in page and "X-Api-Key: sk…89" in page and "sk-live" not in page
        assert (await p.apps.fetch_settings(app.appid))["timeout_s"] == 5
        async with s.post(f"{url}/fetch-settings", data={**form, "interval": "30m"}) as r:
            assert r.status == 422
            assert 'data-testid="error-settings"' in await r.text()


async def test_a_superscript_digit_in_a_number_field_is_a_form_error_not_a_500(
    live_server: LiveServer,
) -> None:
    """``str.isdigit`` takes "²", which ``int`` refuses: the grey ratio and the active days are
    shown back at their field, like any other wrong number."""
    p, base = live_server.platform, live_server.url
    await p.console_users.create_user("ida", "developer", PASSWORD)
    app = await p.apps.create("shop", "dev")
    await p.members.add(app.appid, "ida", "developer", "test")
    url = f"{base}/console/apps/{app.appid}"
    async with client() as s:
        (await sign_in(s, base, "ida")).release()
        async with s.get(f"{url}/urls") as r:
            token = csrf_of(await r.text())
        form = {"csrf_token": token, "kind": "periodic", "op": "grey_set",
                "url": "https://dev.example/grey", "ratio": "1²"}  # fmt: skip
        async with s.post(f"{url}/changes", data=form) as r:
            assert r.status == 422 and 'data-testid="error-grey-periodic"' in await r.text()
        async with s.post(f"{url}/fetch-settings",
                          data={"csrf_token": token, "active_days": "²"}) as r:
            assert r.status == 422 and 'data-testid="error-settings"' in await r.text()


async def test_the_confirmation_page_of_a_grey_change_shows_its_ratio_and_grey_url(
    live_server: LiveServer,
) -> None:
    """The QR code of a grey change leads the admin to the confirmation page, the only thing
    the admin sees before confirming: it named the op and the main URL, but neither the ratio
    asked for (1 % or 100 %: confirmed blind) nor the grey URL a ratio or a promote applies to."""
    p, base = live_server.platform, live_server.url
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "periodic", "https://dev.example/main")
    grey = await p.apps.request_change(
        app.appid, "periodic", "grey_set", "https://dev.example/grey-v2", "dev", 5
    )
    await p.apps.confirm(grey.code, "admin")
    ratio = await p.apps.request_change(app.appid, "periodic", "grey_ratio", None, "dev", 100)
    await p.console_users.create_user("ada", "admin", PASSWORD)
    async with client() as s:
        assert (await sign_in(s, base, "ada")).status == 303
        async with s.get(f"{base}/confirm/{ratio.code}") as r:
            page = await r.text()
        assert r.status == 200 and 'data-testid="confirm-button"' in page
        assert 'data-testid="confirm-ratio">100 %' in page  # what is asked
        assert "dev.example/grey-v2" in page and 'data-testid="confirm-grey-ratio">5 %' in page
        promote = await p.apps.request_change(app.appid, "periodic", "grey_promote", None, "dev")
        async with s.get(f"{base}/confirm/{promote.code}") as r:
            page = await r.text()
        assert "dev.example/grey-v2" in page  # the URL that becomes the main one
