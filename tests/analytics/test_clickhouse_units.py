"""ClickHouse store pieces without a server: the analytics URL, literal rendering (the only
place values meet SQL text), and how transport failures are classified."""

from __future__ import annotations

import pytest

from miniport.analytics.clickhouse_transport import (
    ClickHouseError,
    HttpTransport,
    parse_clickhouse_url,
)
from miniport.analytics.sql_dialects import clickhouse_literal, render_clickhouse
from miniport.errors import AnalyticsUnavailable, InvalidInput
from tests.conftest import free_port


def test_url_forms() -> None:
    url = parse_clickhouse_url("clickhouse://bob:s%40cret@127.0.0.1:8123/analytics")
    assert (url.user, url.password, url.host, url.port, url.database, url.tls) == (
        "bob",
        "s@cret",
        "127.0.0.1",
        8123,
        "analytics",
        False,
    )
    url = parse_clickhouse_url("clickhouses://bob@ch.internal/db?ca_file=/etc/ca.pem")
    assert (url.port, url.tls, url.ca_file, url.password) == (8443, True, "/etc/ca.pem", "")
    assert parse_clickhouse_url("clickhouse://127.0.0.1").database == "default"
    assert "s@cret" not in parse_clickhouse_url("clickhouse://b:s%40cret@h/d").redacted()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8123/db", "must start with clickhouse"),
        ("clickhouse:///db", "no host"),
        ("clickhouse://h/db;DROP", "letters, digits"),
        ("clickhouse://h/d-b", "letters, digits"),
        ("clickhouse://h:99999/db", "invalid port"),
    ],
)
def test_bad_urls_are_refused_clearly(url: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        parse_clickhouse_url(url)


def test_literals_escape_and_type() -> None:
    assert clickhouse_literal("it's \\ fine", "String") == "'it\\'s \\\\ fine'"
    assert clickhouse_literal(-12, "Int64") == "toInt64(-12)"
    assert clickhouse_literal(2**31 - 1, "Int32") == "toInt32(2147483647)"
    with pytest.raises(ValueError, match="out of range"):
        clickhouse_literal(2**31, "Int32")
    with pytest.raises(TypeError):
        clickhouse_literal(True, "Int64")
    with pytest.raises(TypeError):
        clickhouse_literal(5, "String")


def test_placeholders_are_replaced_once() -> None:
    sql = "SELECT {p1:String}, {p2:Int64}, {p1:String}"
    # a value that looks like a placeholder stays a value
    assert render_clickhouse(sql, ["{p2:Int64}", 7]) == (
        "SELECT '{p2:Int64}', toInt64(7), '{p2:Int64}'"
    )
    with pytest.raises(ValueError, match="no parameter"):
        render_clickhouse("SELECT {p3:Int64}", [1])


def test_unreachable_server_is_unavailable_not_a_bug() -> None:
    url = parse_clickhouse_url(f"clickhouse://default@127.0.0.1:{free_port()}/db")
    transport = HttpTransport(url, connect_timeout_s=1)
    try:
        with pytest.raises(AnalyticsUnavailable) as caught:
            transport.execute("SELECT 1")
        assert caught.value.http_status == 503
    finally:
        transport.close()


def test_server_errors_are_classified() -> None:
    from miniport.analytics.clickhouse_transport import _server_error

    assert isinstance(
        _server_error(500, "Code: 252, e.displayText() = Too many parts"), AnalyticsUnavailable
    )
    assert isinstance(_server_error(503, "whatever"), AnalyticsUnavailable)
    bug = _server_error(404, "Code: 47, e.displayText() = DB::Exception: Unknown identifier")
    assert isinstance(bug, ClickHouseError) and "Unknown identifier" in str(bug)
