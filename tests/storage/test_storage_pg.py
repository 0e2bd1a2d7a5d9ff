"""The same flow on the real PostgreSQL, and due fetches claimed so that concurrent workers
(PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: one writer) never fetch a pair twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from miniport.clock import FakeClock
from miniport.domain.requests import Launch
from miniport.errors import NoData
from miniport.platform import Platform
from tests.conftest import confirm_url
from tests.support.platforms import Counter, eventually, run

Make = Callable[..., Awaitable[Platform]]
H = 3600.0


@pytest.mark.postgres
async def test_the_whole_flow_on_postgres(
    pg_url: str,
    platforms: Make,
    fake_clock: FakeClock,
    counter: Counter,
) -> None:
    p = await platforms(clock=fake_clock, database_url=pg_url)
    assert p.db.engine.dialect.name == "postgresql"
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "periodic", counter.url + "/periodic?lang=en")
    await confirm_url(p, app.appid, "pre", counter.url + "/pre")

    # pre-fetch at launch, without a token: a login code the server can exchange
    await p.background.launch(app.appid, "alice", Launch("pages/i", "a=1", 1001))
    pre = await p.background.get_data(app.appid, "alice", "pre", wait_ms=5000)
    assert pre["fetchedData"] == "data for ?" and pre["path"] == "pages/i"
    code = counter.requests[0].query["code"]
    session = await p.auth.jscode2session(app.appid, app.secret, code, "authorization_code")
    assert session["openid"] == p.auth.openid(app.appid, "alice")
    assert (await p.auth.jscode2session(app.appid, app.secret, code, "authorization_code"))[
        "errcode"
    ] == 40163

    # periodic: no token, then a token, then due 12 h after the success
    assert await run(p) == 1
    assert (await p.background.log(app.appid, limit=1))[0]["verdict"] == "token_not_set"
    await p.background.set_token(app.appid, "alice", "tok")
    assert await p.background.get_token(app.appid, "alice") == "tok"
    assert await run(p) == 1
    periodic = await p.background.get_data(app.appid, "alice", "periodic")
    assert periodic["fetchedData"] == "data for tok"
    assert periodic["timeStamp"] == int(fake_clock.now() * 1000)
    fake_clock.advance(12 * H - 1)
    assert await run(p) == 0
    fake_clock.advance(1)
    assert await run(p) == 1

    # inactive after 7 days
    fake_clock.advance(8 * 24 * H)
    assert await run(p) == 0

    # devtools, audit, health, clear
    shown = await p.background.fetch_now(app.appid, "alice", "periodic")
    assert shown["verdict"] == "cached"
    health = await p.background.health(app.appid, fake_clock.now() - 30 * 24 * H)
    assert health["periodic"]["ok"] >= 3
    audit = await p.db.read(p.registry.list_audit, app.appid)
    assert [e.action for e in reversed(audit)] == [
        "app.create",
        "change.request",
        "change.confirm",
        "change.request",
        "change.confirm",
    ]
    assert await p.background.clear(app.appid, None) == 2
    with pytest.raises(NoData):
        await p.background.get_data(app.appid, "alice", "periodic")


@pytest.mark.postgres
async def test_two_workers_on_postgres_never_fetch_the_same_pair_twice(
    pg_url: str,
    platforms: Make,
    fake_clock: FakeClock,
    counter: Counter,
) -> None:
    counter.delay_s = 0.002
    settings = {
        "database_url": pg_url,
        "claim_batch": 25,
        "fetch_concurrency": 25,
        "host_concurrency": 25,
    }
    setup = await platforms(clock=fake_clock, **settings)
    app = await setup.apps.create("shop", "dev")
    await confirm_url(setup, app.appid, "periodic", counter.url)
    pairs = 300
    for i in range(pairs):
        await setup.db.write(setup.fetches.record_launch, app.appid, f"u{i}", fake_clock.now())
        await setup.db.write(setup.fetches.set_token, app.appid, f"u{i}", f"t{i}", fake_clock.now())

    first = await platforms(clock=fake_clock, **settings)
    second = await platforms(clock=fake_clock, **settings)
    done = await asyncio.gather(run(first), run(second))
    assert sum(done) == pairs
    assert all(done), done  # both workers took a share
    counts = counter.by_token()
    assert len(counter.requests) == pairs
    assert counts == {f"t{i}": 1 for i in range(pairs)}
    assert await run(first) == 0 and await run(second) == 0


MINIPORT = str(Path(sys.executable).parent / "miniport")


def start_worker(data_dir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [MINIPORT, "worker", "--dev", "--data-dir", str(data_dir)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_two_worker_processes_never_fetch_the_same_pair_twice(
    request: pytest.FixtureRequest,
    platforms: Make,
    counter: Counter,
    tmp_path: Path,
    backend: str,
) -> None:
    env = {"MINIPORT_CLAIM_BATCH": "20", "MINIPORT_FETCH_CONCURRENCY": "20"}
    overrides: dict[str, object] = {}
    if backend == "postgres":
        pg_url = request.getfixturevalue("pg_url")
        env["MINIPORT_DATABASE_URL"] = overrides["database_url"] = pg_url
    counter.delay_s = 0.002
    setup = await platforms(**overrides)
    app = await setup.apps.create("shop", "dev")
    await confirm_url(setup, app.appid, "periodic", counter.url)
    pairs = 200
    now = setup.clock.now()
    for i in range(pairs):
        await setup.db.write(setup.fetches.record_launch, app.appid, f"u{i}", now)
        await setup.db.write(setup.fetches.set_token, app.appid, f"u{i}", f"t{i}", now)

    data_dir = setup.settings.data_dir
    workers = [start_worker(data_dir, env), start_worker(data_dir, env)]
    try:

        async def all_fetched() -> bool:
            for worker in workers:
                assert worker.poll() is None, worker.communicate()[1].decode()[-2000:]
            return len(counter.requests) >= pairs

        await eventually(all_fetched, timeout_s=60)
        await asyncio.sleep(1.0)  # a duplicate would arrive now
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [await asyncio.to_thread(w.communicate, timeout=30) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err.decode()[-2000:]
    assert counter.by_token() == {f"t{i}": 1 for i in range(pairs)}

    log = await setup.background.log(app.appid, limit=1000)
    assert len(log) == pairs and {e["verdict"] for e in log} == {"cached"}


@pytest.mark.postgres
async def test_concurrent_confirmations_on_postgres_apply_a_change_once(
    pg_url: str, platforms: Make
) -> None:
    from miniport.errors import ChangeNotConfirmable

    p = await platforms(database_url=pg_url)
    app = await p.apps.create("race", "test")
    for attempt in range(5):  # several rounds: the race is real only when both run together
        pending = await p.apps.request_change(
            app.appid, "periodic", "set", f"https://dev.example/{attempt}", "dev"
        )
        results = await asyncio.gather(
            *(p.apps.confirm(pending.code, f"admin{i}") for i in range(4)), return_exceptions=True
        )
        applied = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, ChangeNotConfirmable)]
        assert len(applied) == 1 and len(refused) == 3
    entries = await p.db.read(p.registry.list_audit, app.appid, 100)
    assert sum(e.action == "change.confirm" for e in entries) == 5


@pytest.mark.postgres
async def test_a_claim_skips_a_row_locked_by_another_writer_and_takes_its_new_version_later(
    pg_url: str, platforms: Make, fake_clock: FakeClock, counter: Counter
) -> None:
    """The claim's update finds the rows it locked by their address: a row another transaction
    holds is skipped (not waited for), and once that transaction has committed a new version of
    it, the next claim leases the new version, with the values it committed; nothing twice."""
    import psycopg

    p = await platforms(clock=fake_clock, database_url=pg_url)
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "periodic", counter.url)
    now = fake_clock.now()
    for i in range(10):
        await p.db.write(p.fetches.record_launch, app.appid, f"u{i}", now)
        await p.db.write(p.fetches.set_token, app.appid, f"u{i}", f"t{i}", now)
    active, lease = p.rules.active_since(now), p.rules.lease_until(now)

    other = psycopg.connect(pg_url.replace("+psycopg", ""))
    try:
        other.execute(  # a launch of u3 in flight: its row locked, a new version not committed
            "UPDATE app_users SET version = 'v2' WHERE appid = %s AND user_id = 'u3'",
            (app.appid,),
        )
        first = await p.db.write(p.fetches.claim_due, now, active, lease, 100)
        assert sorted(d.user_id for d in first) == sorted(f"u{i}" for i in range(10) if i != 3)
        other.commit()
    finally:
        other.close()
    second = await p.db.write(p.fetches.claim_due, now, active, lease, 100)
    assert [(d.user_id, d.token, d.version) for d in second] == [("u3", "t3", "v2")]
    assert await p.db.write(p.fetches.claim_due, now, active, lease, 100) == []
    row = await p.db.read(p.fetches.get_user, app.appid, "u3")
    assert row is not None and row["lease_until"] == lease and row["version"] == "v2"
