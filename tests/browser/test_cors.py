"""A container page on another origin (another port of 127.0.0.1) loads the JavaScript runtime
from Miniport and calls the runtime API, because its origin is in MINIPORT_CORS_ORIGINS; a page on
an origin not listed can do neither."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import LiveConsole
from tests.conftest import free_port

PAGE = """<!doctype html><meta charset="utf-8"><title>container</title>
<script>
window.result = import(%(sdk)s).then(async (m) => {
  const runtime = m.createRuntime({ appid: %(appid)s, token: %(token)s, baseUrl: %(base)s });
  await runtime.launch({ path: 'pages/index/index', query: 'id=7', scene: 1001 });
  const res = await runtime.wx.getBackgroundFetchData({ fetchType: 'pre', waitMs: 5000 });
  return { ok: true, data: JSON.parse(res.fetchedData) };
}).catch((e) => ({ ok: false, error: String(e) }));
</script>"""


class PageServer:
    """A container page served from its own origin (127.0.0.1 on another port)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.html = ""
        page = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = page.html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def open(self, live: LiveConsole, appid: str, token: str) -> None:
        self.html = PAGE % {k: json.dumps(v) for k, v in {
            "sdk": f"{live.url}/sdk/miniport-runtime.js", "appid": appid, "token": token,
            "base": live.url}.items()}


@pytest.fixture(scope="module")
def pages() -> Iterator[tuple[PageServer, PageServer]]:
    listed, other = PageServer(), PageServer()
    for server in (listed, other):
        server.thread.start()
    try:
        yield listed, other
    finally:
        for server in (listed, other):
            server.httpd.shutdown()
            server.httpd.server_close()


@pytest.fixture(scope="module")
def cors_live(tmp_path_factory: pytest.TempPathFactory,
              pages: tuple[PageServer, PageServer]) -> Iterator[LiveConsole]:
    server = LiveConsole(tmp_path_factory.mktemp("cors") / "data", cors_origins=pages[0].origin)
    server.start()
    try:
        yield server
    finally:
        server.stop()


CALL = """([url, token]) => fetch(url, { method: 'POST', body: '{}', headers: {
  Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' } })
  .then((r) => 'status ' + r.status, (e) => 'blocked: ' + e)"""


def _run_page(browser: Any, page_server: PageServer, live: LiveConsole) -> dict[str, Any]:
    """The page's import-and-read result, and what a direct runtime call from it gets."""
    app = live.app("Container", pre="/data/pre")
    token = live.platform.auth.runtime_token("alice")
    page_server.open(live, app.appid, token)
    page = browser.new_page()
    try:
        page.goto(page_server.origin + "/")
        result: dict[str, Any] = page.evaluate("window.result")
        launch = f"{live.url}/runtime/v1/apps/{app.appid}/launch"
        result["call"] = page.evaluate(CALL, [launch, token])
        return result
    finally:
        page.close()


def test_a_container_page_on_a_listed_origin_loads_the_runtime_and_reads_data(
    cors_live: LiveConsole, browser: Any, pages: tuple[PageServer, PageServer],
) -> None:
    result = _run_page(browser, pages[0], cors_live)
    assert result["ok"], result
    assert result["data"]["kind"] == "pre" and result["data"]["path"] == "pages/index/index"
    assert result["call"] == "status 200"


def test_a_page_on_an_origin_not_listed_can_neither_load_nor_call(
    cors_live: LiveConsole, browser: Any, pages: tuple[PageServer, PageServer],
) -> None:
    result = _run_page(browser, pages[1], cors_live)
    assert not result["ok"] and "import" in result["error"].lower(), result
    assert result["call"].startswith("blocked: TypeError"), result
