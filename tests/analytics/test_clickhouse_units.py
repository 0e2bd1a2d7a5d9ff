"""ClickHouse store pieces without a server: the analytics URL, literal rendering (the only
place values meet SQL text), how transport failures are classified, and the insert payload."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miniport.analytics.clickhouse_rows import rowbinary_rows
from miniport.analytics.clickhouse_store import _column_type, _tsv, tsv_rows
from miniport.analytics.clickhouse_transport import (
    ClickHouseError,
    HttpTransport,
    NotSent,
    parse_clickhouse_url,
)
from miniport.analytics.event_store import RowColumns, StoredEvent
from miniport.analytics.reports import CORE_COLUMNS
from miniport.analytics.sql_dialects import clickhouse_literal, render_clickhouse
from miniport.analytics.system_props import EXTRA_COLUMNS
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
    """Refused: every attempt failed before a connection, so the statement was NotSent."""
    url = parse_clickhouse_url(f"clickhouse://default@127.0.0.1:{free_port()}/db")
    transport = HttpTransport(url, connect_timeout_s=1)
    try:
        with pytest.raises(NotSent) as caught:
            transport.execute("INSERT INTO events FORMAT TabSeparated", b"x\n")
        assert isinstance(caught.value, AnalyticsUnavailable)
        assert caught.value.http_status == 503
    finally:
        transport.close()


def test_only_attempts_that_all_failed_to_connect_are_unsent() -> None:
    """A refused attempt followed by one that was sent (its connection then broken, or its
    answer undecodable) may have stored the rows: not NotSent."""
    import urllib3

    from miniport.analytics.clickhouse_transport import _Attempts

    refused = urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]
    broken = urllib3.exceptions.ProtocolError("connection reset after sending")

    def attempts(*errors: Exception) -> _Attempts:
        retry = _Attempts(total=5, connect=5, read=5, allowed_methods=None)
        retry.failures = []
        for error in errors:
            retry = retry.increment("POST", "/", error=error)
        return retry

    gave_up = urllib3.exceptions.MaxRetryError(None, "/", refused)  # type: ignore[arg-type]
    assert attempts(refused, refused).never_connected(gave_up)
    assert not attempts(refused, broken).never_connected(gave_up)
    assert not attempts(broken, refused).never_connected(gave_up)
    decode = urllib3.exceptions.DecodeError("bad gzip")  # raised past the retries, after a send
    assert not attempts(refused).never_connected(decode)
    assert not attempts().never_connected(gave_up)


@pytest.mark.parametrize(
    ("sql", "data", "sends"),
    [
        ("INSERT INTO events FORMAT TabSeparated", b"x\n", 1),
        ("  insert into event_dups (appid, uid) SELECT appid, uid FROM events", None, 1),
        ("ALTER TABLE events ATTACH PARTITION 202611 FROM events_replacing", None, 1),
        ("SELECT count() FROM events", None, 2),
        ("\n  with 1 AS x SELECT x", None, 2),
    ],
)
def test_a_connection_dropped_after_the_request_is_not_called_unsent(
    sql: str, data: bytes | None, sends: int
) -> None:
    """A server that takes the request and hangs up without answering may have stored it: the
    error is AnalyticsUnavailable, never NotSent (the store would release claims of rows that
    ClickHouse may hold). Only a read is sent again, once: a second copy of claimed ids would
    be counted twice, a second ATTACH would attach a month twice."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def serve() -> None:
        for _ in range(3):  # the first attempt and urllib3's retries
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                requests.append(conn.recv(65536))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    transport = HttpTransport(parse_clickhouse_url(f"clickhouse://default@127.0.0.1:{port}/db"))
    try:
        with pytest.raises(AnalyticsUnavailable) as caught:
            transport.execute(sql, data)
        assert not isinstance(caught.value, NotSent)
        assert len(requests) == sends
        assert all(request.startswith(b"POST ") for request in requests)
    finally:
        transport.close()
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept that waits for another attempt
        listener.close()
        thread.join(5)


def test_server_errors_are_classified() -> None:
    from miniport.analytics.clickhouse_transport import _server_error

    assert isinstance(
        _server_error(500, "Code: 252, e.displayText() = Too many parts"), AnalyticsUnavailable
    )
    assert isinstance(_server_error(503, "whatever"), AnalyticsUnavailable)
    bug = _server_error(404, "Code: 47, e.displayText() = DB::Exception: Unknown identifier")
    assert isinstance(bug, ClickHouseError) and "Unknown identifier" in str(bug)


# --- the insert payload: column by column, the same text as a value at a time ---------------

_texts = st.text(alphabet=st.sampled_from("ab\\\t\n\r\0é中 "), min_size=1, max_size=6)
_maybe = st.none() | _texts
_slots = st.integers(min_value=0, max_value=3)
_extra_values = {
    "string": _texts,
    "int": st.integers(min_value=1, max_value=2**31 - 1),
    "bigint": st.integers(min_value=0, max_value=2**53),
    "bool": st.booleans(),
}


@st.composite
def stored_events(draw: st.DrawFn) -> StoredEvent:
    extras = draw(st.lists(st.sampled_from(sorted(EXTRA_COLUMNS)), max_size=4, unique=True))
    return StoredEvent(
        draw(_texts),
        draw(_texts),
        draw(_texts),
        draw(_texts),
        draw(st.integers(min_value=-(2**62), max_value=2**62)),
        draw(st.integers(min_value=0, max_value=2**62)),
        draw(st.booleans()),
        draw(_maybe),
        draw(_maybe),
        draw(_maybe),
        draw(st.dictionaries(_slots, st.integers(min_value=-(2**31), max_value=2**31 - 1))),
        draw(st.dictionaries(_slots, _texts)),
        draw(_maybe),
        {c: draw(_extra_values[EXTRA_COLUMNS[c]]) for c in extras},
        draw(st.dictionaries(_slots, st.floats(allow_nan=False, allow_infinity=False))),
        draw(st.dictionaries(_slots, st.booleans())),
    )


def value_at_a_time(rows: list[StoredEvent], used: RowColumns, visible: list[bool] | None) -> bytes:
    """The payload as the store built it before: ``_tsv`` of each value, row by row."""
    lines = []
    for n, r in enumerate(rows):
        shown = r.test_id is None if visible is None else visible[n]
        values = [r.appid, r.uid, r.event, r.user, r.ts_ms, r.received_ms, r.time_estimated,
                  r.page, r.trigger, r.action, r.test_id, shown, *used.values(r)]  # fmt: skip
        lines.append("\t".join(_tsv(v) for v in values))
    return ("\n".join(lines) + "\n").encode()


@settings(max_examples=300, deadline=None)
@given(st.lists(stored_events(), min_size=1, max_size=8), st.booleans(), st.data())
def test_the_insert_payload_is_the_text_of_each_value(
    rows: list[StoredEvent], with_visible: bool, data: st.DataObject
) -> None:
    used = RowColumns.of(rows)
    visible = data.draw(st.lists(st.booleans(), min_size=len(rows), max_size=len(rows)))
    chosen = visible if with_visible else None
    payload = tsv_rows(rows, used, chosen)
    assert payload == value_at_a_time(rows, used, chosen)
    lines = payload.decode().split("\n")
    assert len(lines) == len(rows) + 1 and lines[-1] == ""
    assert all(line.count("\t") == len(CORE_COLUMNS) + len(used.names) - 1 for line in lines[:-1])


_FIXED = {"Int64": struct.Struct("<q"), "Int32": struct.Struct("<i"),
          "UInt8": struct.Struct("<B"), "Float64": struct.Struct("<d")}  # fmt: skip


def read_rowbinary(payload: bytes, types: list[str]) -> list[list[object]]:
    """RowBinary rows of ``types`` as ClickHouse reads them (a reader written from its
    format description, apart from the encoder)."""
    rows, pos = [], 0
    while pos < len(payload):
        row: list[object] = []
        for ch_type in types:
            base = ch_type.removeprefix("Nullable(").removesuffix(")")
            if base != ch_type:
                pos += 1
                if payload[pos - 1] == 1:
                    row.append(None)
                    continue
            if base == "String":
                size = shift = 0
                while True:
                    byte = payload[pos]
                    pos += 1
                    size |= (byte & 0x7F) << shift
                    shift += 7
                    if byte < 0x80:
                        break
                row.append(payload[pos : pos + size].decode())
                pos += size
            else:
                fixed = _FIXED[base]
                row.append(fixed.unpack_from(payload, pos)[0])
                pos += fixed.size
        rows.append(row)
    return rows


@settings(max_examples=300, deadline=None)
@given(st.lists(stored_events(), min_size=1, max_size=8), st.booleans(), st.data())
def test_the_binary_insert_payload_holds_each_value(
    rows: list[StoredEvent], with_visible: bool, data: st.DataObject
) -> None:
    used = RowColumns.of(rows)
    visible = data.draw(st.lists(st.booleans(), min_size=len(rows), max_size=len(rows)))
    chosen = visible if with_visible else None
    payload = rowbinary_rows(rows, used, chosen, extra_kinds=EXTRA_COLUMNS)
    core = ["String"] * 4 + ["Int64"] * 2 + ["UInt8"] + ["Nullable(String)"] * 4 + ["UInt8"]
    types = core + [_column_type(c) for c in used.names]
    expected = [
        [r.appid, r.uid, r.event, r.user, r.ts_ms, r.received_ms, r.time_estimated, r.page,
         r.trigger, r.action, r.test_id, r.test_id is None if chosen is None else chosen[n],
         *used.values(r)]
        for n, r in enumerate(rows)
    ]  # fmt: skip
    decoded = read_rowbinary(payload, types)
    assert decoded == expected
    # floats bit for bit (== takes -0.0 for 0.0)
    assert [[struct.pack("<d", v) for v in row if type(v) is float] for row in decoded] == [
        [struct.pack("<d", v) for v in row if type(v) is float] for row in expected
    ]


def test_long_strings_take_a_longer_length() -> None:
    row = StoredEvent("a" * 300, "u", "e", "us", 1, 2, False, "p" * 20_000, None, None, {}, {})
    payload = rowbinary_rows([row], RowColumns.of([row]), extra_kinds=EXTRA_COLUMNS)
    assert payload.startswith(b"\xac\x02" + b"a" * 300)  # 300 = 0b10_0101100
    types = ["String"] * 4 + ["Int64"] * 2 + ["UInt8"] + ["Nullable(String)"] * 4 + ["UInt8"]
    assert read_rowbinary(payload, types)[0][7] == "p" * 20_000


def test_the_insert_payload_escapes_and_marks_nulls() -> None:
    row = StoredEvent("a\tb", "u\\1", "e\nv", "us\r", 5, 6, True, None, "t", None, {0: -3},
                      {1: "x\0y"}, None, {"sys_scene": 1001, "sys_platform": "ios"},
                      {2: 1.5}, {3: False})  # fmt: skip
    plain = StoredEvent("a", "u2", "e", "us", 7, 8, False, "p", None, None, {}, {}, "t1")
    used = RowColumns.of([row, plain])
    assert tsv_rows([row, plain], used).decode().split("\n") == [
        "a\\tb\tu\\\\1\te\\nv\tus\\r\t5\t6\t1\t\\N\tt\t\\N\t\\N\t1\t-3\tx\\0y\t1.5\t0\tios\t1001",
        "a\tu2\te\tus\t7\t8\t0\tp\t\\N\t\\N\tt1\t0\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N",
        "",
    ]


def test_grouping_every_id_leaves_no_list_to_read() -> None:
    from miniport.analytics.sql_dialects import dedup_source, grouping_every_id, reads_listed

    source = dedup_source("events", "{p1:String}", ("{p2:Int64}", "{p3:Int64}"), ["s0"])
    sql = f"SELECT count() FROM {source} WHERE 1 UNION ALL SELECT count() FROM {source}"
    assert reads_listed(sql)
    grouped = grouping_every_id(sql)
    assert not reads_listed(grouped) and "event_dups" not in grouped
    assert grouped.count("AND 0") == 2 and grouped.count("AND 1 GROUP BY uid") == 2
    assert not reads_listed("SELECT uid FROM event_dups WHERE appid = 'a'")


def test_a_month_is_dropped_whole_only_when_no_event_in_it_can_be_newer_than_the_cutoff() -> None:
    """On a server at UTC-12, partition 202610 holds what was received until 2026-11-01
    12:00 UTC, with times up to a day later: 2026-11-02 12:00 UTC. The margin of one day
    dropped it at a cut-off of 2026-11-02 00:00 UTC, and that event with it."""
    from datetime import UTC, datetime

    from miniport.analytics.clickhouse_store import wholly_older

    def ms(*when: int) -> int:
        return int(datetime(*when, tzinfo=UTC).timestamp() * 1000)

    assert not wholly_older("202610", ms(2026, 11, 2))
    assert not wholly_older("202610", ms(2026, 11, 2, 23, 59))
    assert wholly_older("202610", ms(2026, 11, 3))
    assert wholly_older("202612", ms(2027, 1, 3))  # December ends with the year
    assert not wholly_older("202612", ms(2027, 1, 2))
    assert not wholly_older("tuple()", ms(2030, 1, 1))
