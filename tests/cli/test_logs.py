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


SERVER_LOG = """
import logging, sys, time
from miniport.cli import logs
logs.configure(sys.argv[1], "info")
fields = {"client": "127.0.0.1", "status": 200}
logging.getLogger("miniport.access").info("GET /x %d", 200, extra={"fields": fields})
logging.getLogger("uvicorn.error").warning("uvicorn says %s", "hi")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("miniport.web").exception("failed")
"""


def server_lines(fmt: str) -> list[str]:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SERVER_LOG, fmt], capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    return done.stderr.splitlines()


def test_configured_human_lines_are_whole() -> None:
    lines = server_lines("human")
    assert lines[0].endswith(" INFO    access GET /x 200")
    assert lines[1].endswith(" WARNING uvicorn.error uvicorn says hi")
    assert lines[2].endswith(" ERROR   miniport.web failed")
    assert lines[3] == "Traceback (most recent call last):" and "ZeroDivisionError" in lines[-1]
    time.strptime(lines[0][:19], "%Y-%m-%d %H:%M:%S")


def test_configured_json_lines_carry_their_fields() -> None:
    access, warning, error = (json.loads(line) for line in server_lines("json"))
    assert access["message"] == "GET /x 200" and access["logger"] == "miniport.access"
    assert (access["level"], access["client"], access["status"]) == ("info", "127.0.0.1", 200)
    assert warning["level"] == "warning" and warning["message"] == "uvicorn says hi"
    assert error["level"] == "error" and "ZeroDivisionError" in error["exc"]
