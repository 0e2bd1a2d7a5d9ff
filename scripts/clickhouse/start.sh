#!/usr/bin/env bash
# Start (or find running) Miniport's test ClickHouse server on 127.0.0.1 with its own config,
# data directory and pid file under MINIPORT_CH_DIR (default: a directory of its own on the
# memory file system /dev/shm when it has room, else .ci-clickhouse in the repo).
# Why not on disk by default: every insert writes a new part (a directory of files) and every
# merge deletes some, and after a few hundred thousand such files ext4's inode allocator
# (find_inode_bit / recently_deleted in a perf profile of the server) made each 800-row
# insert cost ~50 ms of the server's CPU instead of ~2.5 ms, for minutes and across server
# restarts: the tests crawled and the ingest benchmark's bare baseline swung 5x between runs.
# The test server's data is thrown away anyway.
# Prints the URL to export as MINIPORT_TEST_CLICKHOUSE_URL. Installs Debian's clickhouse-server
# when it is missing and we are root. Idempotent: a second run finds the running server.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# /dev/shm only when it has room (at least 4 GB free: a container's default is 64 MB, and the
# 10M-event report benchmark alone stores ~1 GB)
shm_free_kb="$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')"
if [ -z "${MINIPORT_CH_DIR:-}" ] && [ -w /dev/shm ] && [ "${shm_free_kb:-0}" -ge 4194304 ]; then
  MINIPORT_CH_DIR="/dev/shm/miniport-clickhouse-$(id -u)"
fi
dir="${MINIPORT_CH_DIR:-$here/../../.ci-clickhouse}"
http_port="${MINIPORT_CH_HTTP_PORT:-18123}"
tcp_port="${MINIPORT_CH_TCP_PORT:-19000}"
url="clickhouse://default:@127.0.0.1:${http_port}/miniport_test"

answers() {
  python3 -c "import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=2).read()" \
    "http://127.0.0.1:${http_port}/?query=SELECT%201" >/dev/null 2>&1
}

if answers; then echo "$url"; exit 0; fi

if ! command -v clickhouse-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server) >&2
  else
    echo "clickhouse-server is missing and cannot be installed here (not root)" >&2
    exit 1
  fi
fi

mkdir -p "$dir"/{data,tmp,log,user_files,format_schemas,etc}
dir="$(cd "$dir" && pwd)"
sed -e "s#@DIR@#$dir#g" -e "s#@HTTP_PORT@#$http_port#g" -e "s#@TCP_PORT@#$tcp_port#g" \
  "$here/config.xml" >"$dir/etc/config.xml"
cp "$here/users.xml" "$dir/etc/users.xml"
pidfile="$dir/clickhouse.pid"
if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then rm -f "$pidfile"; fi
if [ "$(id -u)" = 0 ] && id clickhouse >/dev/null 2>&1; then
  chown -R clickhouse: "$dir"
  runas=(setpriv --reuid=clickhouse --regid=clickhouse --init-groups)
else
  runas=()
fi
(cd "$dir" && "${runas[@]}" clickhouse-server --daemon --config-file="$dir/etc/config.xml" \
  --pid-file="$pidfile") >&2
for _ in $(seq 1 120); do
  if answers; then echo "$url"; exit 0; fi
  sleep 0.5
done
echo "ClickHouse did not answer on 127.0.0.1:${http_port}; see $dir/log/server.err.log" >&2
exit 1
