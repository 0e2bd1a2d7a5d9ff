"""State-database bytes per user for fetched bodies, stored once by content hash: 100,000 users
all given the same 100 KB body, and all given distinct 2 KB bodies, on SQLite and PostgreSQL.

    python bench/body_storage.py [--users 100000] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Each user gets an app_users row (inserted in bulk, as a launch would leave it, token included)
and its fetch result through the real write path (``FetchStore.record``: a fetch-log row and the
body), in batches of 2,000. Bytes per user = growth of
the whole state database (SQLite: file pages after a WAL checkpoint; PostgreSQL: every table's
pg_total_relation_size, TOAST and indexes included) divided by the users. Distinct bodies are
random base64 (the worst case for compression). The bare baseline, measured in the same run on
1,000 users: one plain row per user holding its own copy of the body (what was stored before).
Targets: same body well under 1 KB per user, distinct 2 KB bodies under 3 KB.
Last line: one JSON object."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from miniport.storage import migrate
from miniport.storage import schema as t
from miniport.storage.db import Database
from miniport.storage.fetches import FetchRecord, FetchStore
from miniport.storage.registry import App, RegistryStore

BATCH = 2000
SAME = base64.b64encode(os.urandom(75_000)).decode()  # 100,000 characters


def distinct_body(i: int) -> str:
    return base64.b64encode(os.urandom(1536)).decode()  # 2,048 characters


def same_body(i: int) -> str:
    return SAME


@contextlib.contextmanager
def pg_database(admin_url: str) -> Iterator[str]:
    admin = psycopg.connect(admin_url, autocommit=True)
    name = "miniport_bench_" + secrets.token_hex(4)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def db_bytes(db: Database) -> int:
    with db.engine.connect() as conn:
        if db.is_sqlite:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
            free = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
            size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
            return int((pages - free) * size)
        return int(
            conn.execute(
                text(
                    "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE c.relkind = 'r' AND n.nspname = 'public'"
                )
            ).scalar_one()
        )


def fill(db: Database, users: int, body: Callable[[int], str]) -> float:
    """Bytes per user after writing ``users`` users' launches, log rows and bodies."""
    migrate.upgrade(db.engine)
    RegistryStore(db).create_app(App("mpbench", "bench", "s" * 32, 0.0), "bench")
    store = FetchStore(db)
    before = db_bytes(db)
    for start in range(0, users, BATCH):
        ids = range(start, min(users, start + BATCH))
        with db.engine.begin() as conn:  # the users' rows in bulk (a launch writes one each)
            conn.execute(
                insert(t.app_users),
                [
                    {
                        "appid": "mpbench",
                        "user_id": f"user-{i:07d}",
                        "last_launch_at": 1.0,
                        "next_due_at": 9.0,
                        "token": "t" * 32,
                        "failures": 0,
                    }
                    for i in ids
                ],
            )
        records = [
            FetchRecord(
                "mpbench",
                f"user-{i:07d}",
                "periodic",
                "schedule",
                2.0,
                "https://dev.example/data?appid=mpbench&token=***",
                "cached",
                status=200,
                bytes=len(b),
                latency_ms=12.5,
                body=b,
                fetched_at_ms=2000,
            )
            for i in ids
            for b in (body(i),)
        ]
        store.record(records)
    return (db_bytes(db) - before) / users


def bare(db: Database, users: int, body: Callable[[int], str]) -> float:
    """Bytes per user of one plain row per user holding its own copy of the body."""
    with db.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE bare (user_id VARCHAR(128) PRIMARY KEY, body TEXT)")
    before = db_bytes(db)
    with db.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO bare VALUES (:u, :b)"),
            [{"u": f"user-{i:07d}", "b": body(i)} for i in range(users)],
        )
    return (db_bytes(db) - before) / users


def measure(url: str, users: int, body: Callable[[int], str], baseline: bool) -> float:
    db = Database(url)
    try:
        return bare(db, users, body) if baseline else fill(db, users, body)
    finally:
        db.close()


def run(dialect: str, users: int, bare_users: int, pg: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for case, body in (("same", same_body), ("distinct", distinct_body)):
        for baseline in (False, True):
            with contextlib.ExitStack() as stack:
                if dialect == "sqlite":
                    tmp = stack.enter_context(tempfile.TemporaryDirectory())
                    url = f"sqlite:///{tmp}/state.db"
                else:
                    url = stack.enter_context(pg_database(pg))
                started = time.perf_counter()
                n = bare_users if baseline else users
                value = measure(url, n, body, baseline)
                key = f"{dialect}_{case}_{'bare_' if baseline else ''}bytes_per_user"
                out[key] = round(value, 1)
                print(f"{key}: {value:,.0f} B ({n:,} users, {time.perf_counter() - started:.1f} s)")
        prefix = f"{dialect}_{case}"
        ratio = out[f"{prefix}_bytes_per_user"] / out[f"{prefix}_bare_bytes_per_user"]
        out[f"{dialect}_{case}_ratio"] = round(ratio, 4)
        print(f"{dialect} {case}: {ratio:.4f} of a per-user copy")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--bare-users", type=int, default=1_000)
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "MINIPORT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    figures = {"bench": "body_storage", "users": args.users}
    figures.update(run("sqlite", args.users, args.bare_users, args.pg))
    figures.update(run("pg", args.users, args.bare_users, args.pg))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
