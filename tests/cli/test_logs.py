"""The server's log lines carry each record's own time, to the second, in both formats
(the formatted second is reused for the records that share it)."""

from __future__ import annotations

import json
import logging
import time

from miniport.cli.logs import HumanFormatter, JsonFormatter


def record(created: float) -> logging.LogRecord:
    r = logging.LogRecord("miniport.access", logging.INFO, __file__, 1, "GET /x", None, None)
    r.created, r.msecs = created, (created % 1) * 1000
    return r


# the same second twice, the next second, a second far back, then the first again
TIMES = [1_795_000_000.25, 1_795_000_000.75, 1_795_000_001.5, 1_600_000_000.0, 1_795_000_000.9]


def test_human_lines_show_each_records_local_second() -> None:
    fmt = HumanFormatter()
    for t in TIMES:
        expected = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
        assert fmt.format(record(t)) == f"{expected} INFO    access GET /x"


def test_json_lines_show_each_records_utc_time_to_the_millisecond() -> None:
    fmt = JsonFormatter()
    for t in TIMES:
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
        assert json.loads(fmt.format(record(t)))["ts"] == f"{expected}.{int(t % 1 * 1000):03d}Z"
