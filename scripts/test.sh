#!/usr/bin/env bash
# Install everything the test suite needs, then run all of it: lint, types, the JavaScript
# runtime's tests, and pytest (PostgreSQL, Redis, ClickHouse and browser tests included).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

# Debian's Chromium drives the console's browser tests (Playwright never downloads a browser).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: /usr/bin/chromium is missing and cannot be installed here; browser tests will skip" >&2
  fi
fi

# Debian's clickhouse-server (18.16, the oldest ClickHouse we support) on 127.0.0.1 with its own
# config, data directory and pid file (on /dev/shm: see the script); found again when running.
if ch_url="$(bash scripts/clickhouse/start.sh)"; then
  export MINIPORT_TEST_CLICKHOUSE_URL="$ch_url"
else
  echo "note: ClickHouse could not be started; its tests skip here and fail under CI=true" >&2
fi

if [ -f js/package-lock.json ]; then
  (cd js && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "== ruff"; .venv/bin/ruff check src tests bench
echo "== mypy"; .venv/bin/mypy
echo "== JavaScript runtime"; (cd js && npm test --silent)
# One worker per core (at most 4), a test file per worker at a time: a file's shared fixtures
# (a ClickHouse database, a server) are made once. Pass -n 0 to run in one process.
echo "== pytest"; .venv/bin/pytest -q --numprocesses auto --maxprocesses 4 --dist loadfile "$@"
