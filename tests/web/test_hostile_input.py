"""Hostile input through the real server: a lone surrogate in any JSON string field is a clean
422 (never a 500, never a reset connection), and a URL with bidirectional-control characters is
refused."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from miniport.domain import json_text
from miniport.errors import TokenNotSet
from tests.conftest import LiveServer

LONE = b'"\\ud800"'


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # one connection for the whole test: a reset after a refusal would show on the next call
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        yield s


async def _post(session: aiohttp.ClientSession, url: str, key: str, body: bytes
                ) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with session.post(url, data=body, headers=headers) as r:
        return r.status, await r.json()


async def test_a_lone_surrogate_in_any_json_string_is_a_clean_422(
    live_server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    p, base, key = live_server.platform, live_server.url, live_server.admin_key
    app = await p.apps.create("shop", "test")
    token = p.auth.runtime_token("alice")
    cases = [
        (f"/admin/v1/apps/{app.appid}/changes", key,
         b'{"kind": "pre", "url": "https://dev.example/' + LONE[1:-1] + b'"}'),
        (f"/runtime/v1/apps/{app.appid}/background-fetch/token", token,
         b'{"token": ' + LONE + b"}"),
        (f"/admin/v1/apps/{app.appid}/devtools/fetch", key,
         b'{"user_id": "alice", "path": ' + LONE + b"}"),
        ("/admin/v1/apps", key, b'{"name": ' + LONE + b"}"),
        (f"/runtime/v1/apps/{app.appid}/launch", token, b'{"path": ' + LONE + b"}"),
        (f"/runtime/v1/apps/{app.appid}/analytics/events", token,
         b'{"sent_at": 1, "events": [{"id": ' + LONE + b', "event": "e", "ts": 1}]}'),
    ]
    for path, bearer, body in cases:
        status, answer = await _post(session, base + path, bearer, body)
        assert status == 422, (path, answer)
        assert "JSON" in answer["message"], (path, answer)
        # the connection is still good: the next request on it is answered
        async with session.get(base + "/healthz") as r:
            assert r.status == 200
    # nothing was stored by the refused requests
    assert [a.name for a in await p.db.read(p.registry.list_apps)] == ["shop"]
    with pytest.raises(TokenNotSet):
        await p.background.get_token(app.appid, "alice")


def test_the_strict_reader_refuses_lone_surrogates_only() -> None:
    assert json_text.loads(b'{"a": "\\ud83d\\ude00", "b": "\\\\ud800"}') == {
        "a": "\U0001f600", "b": "\\ud800"}  # a pair, and an escaped backslash, are fine
    for bad in (b'"\\ud800"', b'{"\\udc00": 1}', b'[["x\\uDBFFy"]]', '"\\ud800"'):
        with pytest.raises(json.JSONDecodeError, match="surrogate"):
            json_text.loads(bad)


async def test_a_url_with_a_bidi_override_is_refused_before_any_admin_sees_it(
    live_server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    p = live_server.platform
    app = await p.apps.create("shop", "test")
    body = b'{"kind": "pre", "url": "https://evil.example/\\u202egpj.atad"}'
    status, answer = await _post(session, f"{live_server.url}/admin/v1/apps/{app.appid}/changes",
                                 live_server.admin_key, body)
    assert status == 422 and answer["error"] == "invalid_url", answer
    assert "U+202E" in answer["message"]
    assert await p.db.read(p.registry.list_changes, app.appid) == []


async def test_an_export_of_an_empty_or_invalid_event_name_is_422(
    live_server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    app = await live_server.platform.apps.create("shop", "test")
    headers = {"Authorization": f"Bearer {live_server.admin_key}"}
    for event in ("", "Bad-Name"):
        async with session.get(
            f"{live_server.url}/admin/v1/apps/{app.appid}/analytics/export",
            params={"event": event}, headers=headers,
        ) as r:
            assert r.status == 422, (event, await r.text())
            assert (await r.json())["message"]


async def test_report_windows_past_the_calendar_are_422_at_once(
    live_server: LiveServer, session: aiohttp.ClientSession,
) -> None:
    """An export to 9999-12-31 overflowed computing the day after (500); a report to 10^15 ms
    (year 33658) sampled time-zone offsets for over a minute, then overflowed (500)."""
    app = await live_server.platform.apps.create("shop", "test")
    headers = {"Authorization": f"Bearer {live_server.admin_key}"}
    base = f"{live_server.url}/admin/v1/apps/{app.appid}/analytics"
    async with session.get(
        base + "/export", params={"event": "purchase", "to": "9999-12-31"}, headers=headers
    ) as r:
        assert r.status == 422, await r.text()
        assert "invalid date" in (await r.json())["message"]
    body = {"event": "purchase", "from": 0, "to": 10**15, "tz": "Europe/Berlin"}
    async with session.post(base + "/report", json=body, headers=headers) as r:
        assert r.status == 422, await r.text()
        assert "out of range" in (await r.json())["message"]


async def test_a_stored_url_with_a_bidi_override_is_shown_escaped_in_the_console(
    live_server: LiveServer,
) -> None:
    """A URL stored before such characters were refused reads, on every console page that shows
    it, as what is fetched."""
    from sqlalchemy import update

    from miniport.storage import schema
    from tests.conftest import confirm_url
    from tests.web.console.test_console_http import PASSWORD, client, sign_in

    p, base = live_server.platform, live_server.url
    app = await p.apps.create("shop", "test")
    await confirm_url(p, app.appid, "pre", "https://evil.example/data")

    def tamper() -> None:
        with p.db.writing() as conn:
            conn.execute(
                update(schema.fetch_urls).values(
                    url="https://evil.example/\u202egpj",
                    grey_url="https://grey.example/\u202egpj",  # the grey column too
                    grey_ratio=10,
                )
            )

    await p.db.write(tamper)
    p.background.apps.invalidate(app.appid)
    await p.console_users.create_user("boss", "admin", PASSWORD)
    async with client() as s:
        (await sign_in(s, base, "boss")).release()
        for page in (f"/console/apps/{app.appid}", f"/console/apps/{app.appid}/urls"):
            async with s.get(base + page) as r:
                html = await r.text()
                assert "\u202e" not in html and "evil.example/&lt;U+202E&gt;gpj" in html, page
        async with s.get(f"{base}/console/apps/{app.appid}/urls") as r:
            assert "grey.example/&lt;U+202E&gt;gpj" in await r.text()


async def test_deeply_nested_json_to_the_developer_back_end_routes_is_no_server_error(
    live_server: LiveServer, session: aiohttp.ClientSession
) -> None:
    """/wxa/fetchdatasetting (read before its access token is checked, so by anyone) and the
    refresh API parse their bodies by hand: a body nested deeper than the parser recurses, or
    one with a lone surrogate, is WeChat's "data format error" / a 422, never a 500 with a
    traceback in the log per request."""
    p, base = live_server.platform, live_server.url
    app = await p.apps.create("deep", "test")
    token = (await p.wechat.token("client_credential", app.appid, app.secret))["access_token"]
    deep = b"[" * 100_000 + b"]" * 100_000
    for body in (deep, b'{"action": ' + LONE + b"}"):
        async with session.post(f"{base}/wxa/fetchdatasetting", params={"access_token": token},
                                data=body) as r:
            assert r.status == 200 and (await r.json())["errcode"] == 47001
        async with session.post(f"{base}/api/v1/apps/{app.appid}/background-fetch/refresh",
                                params={"secret": app.secret}, data=body) as r:
            assert r.status == 422, await r.text()


async def test_json_nested_past_the_parsers_depth_is_a_clean_422_on_api_routes(
    live_server: LiveServer, session: aiohttp.ClientSession
) -> None:
    """As malformed JSON: the API's error shape (``error``, ``message``), not the framework's
    bare 400."""
    p = live_server.platform
    app = await p.apps.create("deep", "test")
    deep = b"[" * 100_000 + b"]" * 100_000
    for path in [f"/admin/v1/apps/{app.appid}/analytics/events", "/admin/v1/apps",
                 f"/admin/v1/apps/{app.appid}/changes"]:
        status, body = await _post(session, live_server.url + path, live_server.admin_key, deep)
        assert status == 422 and body["error"] == "invalid_input", (path, body)
    token = p.auth.runtime_token("u")
    status, body = await _post(
        session, f"{live_server.url}/runtime/v1/apps/{app.appid}/background-fetch/token", token,
        deep)
    assert status == 422 and body["errMsg"].startswith("setBackgroundFetchToken:fail"), body


async def test_a_time_that_is_no_plain_number_or_date_is_a_clean_422(
    live_server: LiveServer, session: aiohttp.ClientSession
) -> None:
    """``from``/``to`` of reports and exports: a superscript digit (``str.isdigit`` says yes,
    ``int`` says no) or a number of ms no store holds is refused as an invalid date."""
    p = live_server.platform
    app = await p.apps.create("times", "test")
    await p.analytics.save_event(app.appid, {"name": "buy", "display_name": "Buy", "mode": "api"})
    headers = {"Authorization": f"Bearer {live_server.admin_key}"}
    base = f"{live_server.url}/admin/v1/apps/{app.appid}/analytics"
    for value in ("²", "9" * 30):
        async with session.get(f"{base}/export", params={"event": "buy", "from": value},
                               headers=headers) as r:
            assert r.status == 422 and "date" in (await r.json())["message"], value
        status, body = await _post(session, f"{base}/report", live_server.admin_key,
                                   json.dumps({"event": "buy", "from": value}).encode())
        assert status == 422, (value, body)
    for number in (10**30, -(10**30)):  # a JSON number as ms
        status, body = await _post(session, f"{base}/report", live_server.admin_key,
                                   json.dumps({"event": "buy", "from": number}).encode())
        assert status == 422, (number, body)


async def test_a_background_fetch_token_with_a_control_character_is_a_clean_422(
    live_server: LiveServer, session: aiohttp.ClientSession
) -> None:
    """A NUL in the token reached PostgreSQL, which refused it: a 500."""
    p = live_server.platform
    app = await p.apps.create("shop", "test")
    url = f"{live_server.url}/runtime/v1/apps/{app.appid}/background-fetch/token"
    for token in ("a\u0000b", "line\nbreak", "del\u007f"):
        status, answer = await _post(
            session, url, p.auth.runtime_token("alice"), json.dumps({"token": token}).encode()
        )
        assert status == 422 and "control characters" in answer["errMsg"], answer
    assert await p.db.read(p.fetches.get_user, app.appid, "alice") is None


async def test_an_analytics_batch_over_its_size_is_a_413_the_runtimes_split(
    live_server: LiveServer, session: aiohttp.ClientSession
) -> None:
    """Over 1,000,000 bytes (under the server's request limit) a batch was a 422, which the
    runtimes drop as a batch that can never be taken; as a 413 they send it in halves."""
    p = live_server.platform
    app = await p.apps.create("shop", "test")
    url = f"{live_server.url}/runtime/v1/apps/{app.appid}/analytics/events"
    events = [{"id": f"e{i}", "event": "view", "ts": 1, "data": {"x": "y" * 1000}}
              for i in range(1000)]
    headers = {"Authorization": f"Bearer {p.auth.runtime_token('alice')}"}
    body = io.BytesIO(json.dumps({"events": events}).encode())
    async with session.post(url, data=body, headers=headers) as r:
        status, answer = r.status, await r.json()
    assert status == 413 and "larger than 1000000 bytes" in answer["errMsg"], answer


async def test_values_at_the_edges_of_what_python_or_a_store_holds_are_422s(
    live_server: LiveServer, session: aiohttp.ClientSession
) -> None:
    """Each was a 500 (found by a review): nesting that the parser takes but ``repr`` or
    ``json.dumps`` of a message cannot (about 1,000 levels); a time zone that names a tzdata
    directory, or a name too long for a file; an int filter longer than Python converts; a
    user-events cursor past 64 bits; a pre-fetch report up to the last day of the calendar."""
    p, base, key = live_server.platform, live_server.url, live_server.admin_key
    app = await p.apps.create("edges", "test")
    await p.analytics.add_field(app.appid, {"name": "price", "type": "int"})
    await p.analytics.save_event(app.appid, {"name": "buy", "display_name": "Buy", "mode": "api",
                                             "fields": ["price"]})  # fmt: skip
    await p.analytics.publish(app.appid, "test")
    an = f"/admin/v1/apps/{app.appid}/analytics"
    deep = "[" * 1000 + "]" * 1000
    posts = [
        (f"{an}/events", '{"name": "x", "display_name": "y", "mode": ' + deep + "}"),
        (f"{an}/dashboards", '{"name": "d1", "last_days": ' + deep + "}"),
        (f"{an}/saved", '{"name": "r1", "kind": "report", "params": {"event": "buy", "x": '
         + deep + "}}"),
        (f"{an}/saved", '{"name": "r1", "kind": ' + deep + ', "params": {}}'),
        (f"{an}/report", json.dumps({"event": "buy", "from": "2026-01-01", "tz": "America"})),
        (f"{an}/report", json.dumps({"event": "buy", "from": "2026-01-01", "tz": "a" * 300})),
        (f"{an}/dashboards", json.dumps({"name": "d1", "last_days": 7, "tz": "America"})),
        (f"{an}/report", json.dumps({"event": "buy", "filters": ["price=" + "1" * 5000]})),
        (f"{an}/funnel", json.dumps({"steps": ["buy:price=" + "9" * 5000, "buy"]})),
    ]
    wrong = []  # every case that is no clean 422, not only the first
    for path, body in posts:
        async with session.post(base + path, data=body.encode(), headers={
                "Authorization": f"Bearer {key}", "Content-Type": "application/json"}) as r:
            answer = await r.json() if r.status < 500 else await r.text()
            if r.status != 422 or not answer["error"].startswith("invalid_"):
                wrong.append((path, body[:60], r.status, str(answer)[:100]))
    headers = {"Authorization": f"Bearer {key}"}
    gets = [
        (f"{an}/export", {"event": "buy", "from": "2026-01-01", "tz": "Europe"}),
        (f"{an}/users/events", {"user": "alice", "before": "9999999999999999999:x"}),
        (f"{an}/users/events", {"user": "alice", "before": "-9999999999999999999:x"}),
        (f"/admin/v1/apps/{app.appid}/prefetch-report", {"to": "9999-12-31"}),
        (f"/admin/v1/apps/{app.appid}/prefetch-report", {"from": "nan"}),
    ]
    for path, params in gets:
        async with session.get(base + path, params=params, headers=headers) as r:
            answer = await r.json() if r.status < 500 else await r.text()
            if r.status != 422 or answer["error"] != "invalid_input":
                wrong.append((path, str(params)[:60], r.status, str(answer)[:100]))
    assert not wrong, "\n".join(map(str, wrong))
