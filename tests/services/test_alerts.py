"""Alerts end to end: a failing data server sends one signed webhook and one e-mail (to a tiny
SMTP server on loopback), checking again sends nothing more, recovery sends one more, and the
history keeps both with their delivery; bad settings are refused."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp import web

from miniport.clock import FakeClock
from miniport.domain.requests import Launch
from miniport.errors import InvalidInput
from miniport.platform import Platform
from miniport.verify import SIGNATURE_HEADER, sign, verify_request
from tests.conftest import confirm_url
from tests.support.platforms import Counter, StartServer, eventually, run

Make = Callable[..., Awaitable[Platform]]


class TinySMTP:
    """Just enough SMTP on 127.0.0.1 to receive what smtplib sends."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 tiny ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250 tiny\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                data = (await reader.readuntil(b"\r\n.\r\n")).decode()
                self.messages.append(data)
                writer.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()


@pytest.fixture
async def smtp() -> AsyncIterator[TinySMTP]:
    server = TinySMTP()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


async def test_one_alert_per_state_change(
    platforms: Make,
    fake_clock: FakeClock,
    counter: Counter,
    loopback: StartServer,
    smtp: TinySMTP,
) -> None:
    received: list[tuple[web.Request, bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((request, await request.read()))
        return web.Response(text="ok")

    hooks = web.Application()
    hooks.router.add_post("/alerts", hook)
    hook_url = await loopback(hooks)
    p = await platforms(clock=fake_clock, smtp_host="127.0.0.1", smtp_port=smtp.port)
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "periodic", counter.url + "/periodic")
    shown = await p.alerts.configure(
        app.appid, {"webhook": hook_url + "/alerts?team=a", "email": "ops@example.com"}
    )
    assert (shown["threshold"], shown["window_s"], shown["min_fetches"]) == (80, 300, 20)
    for i in range(25):
        await p.background.launch(app.appid, f"u{i}", Launch())
        await p.background.set_token(app.appid, f"u{i}", f"t{i}")
    counter.status = 503
    assert await run(p) == 25
    assert await p.alerts.check() == 1
    assert await p.alerts.check() == 0  # still failing: nothing more

    ((request, body),) = received
    message = json.loads(body)
    assert (message["state"], message["kind"], message["cause"]) == (
        "failing",
        "periodic",
        "http_error 503",
    )
    assert message["success_rate"] == 0 and message["fetches"] == 25
    assert request.query["team"] == "a"
    assert request.query["sha256"] == hashlib.sha256(body).hexdigest()
    ts = int(request.query["timestamp"])
    assert request.headers[SIGNATURE_HEADER] == sign(app.secret, ts, "POST", request.path_qs)
    assert len(smtp.messages) == 1 and "is failing" in smtp.messages[0]

    counter.status = 200
    fake_clock.advance(301)  # the failures leave the window
    await p.db.write(p.fetches.wake_app, app.appid, fake_clock.now())
    assert await run(p) == 25
    assert await p.alerts.check() == 1
    assert json.loads(received[-1][1])["state"] == "recovered"
    history = (await p.alerts.history(app.appid))["alerts"]
    assert [h["state"] for h in history] == ["recovered", "failing"]
    assert history[1]["delivery"] == {"webhook": "sent", "email": "sent"}
    assert (await p.alerts.shown(app.appid))["states"] == {"periodic": False}


async def test_undeliverable_alerts_are_recorded_not_raised(
    platforms: Make, fake_clock: FakeClock, counter: Counter
) -> None:
    p = await platforms(clock=fake_clock, dev=False)  # the guard refuses loopback webhooks
    app = await p.apps.create("shop", "dev")
    p2: Any = p
    stored = {"webhook_url": "http://127.0.0.1:9/h", "email": "ops@example.com",
              "threshold": 0.8, "window_s": 300.0, "min_fetches": 1}  # fmt: skip
    await p2.alerts.db.write(
        p2.alerts.store.change_settings, app.appid, lambda _: stored, stored, fake_clock.now(),
        "test",
    )  # fmt: skip
    from miniport.storage.fetches import FetchRecord

    await p.db.write(
        p.fetches.record,
        [FetchRecord(app.appid, "u", "pre", "launch", fake_clock.now(), "x", "timeout")],
    )
    assert await p.alerts.check() == 1
    (alert,) = (await p.alerts.history(app.appid))["alerts"]
    assert alert["delivery"]["webhook"].startswith("blocked_address")
    assert alert["delivery"]["email"].startswith("not sent: no SMTP server")


@pytest.mark.parametrize(
    "changes",
    [{"webhook": "ftp://x.example/"}, {"email": "not-an-address"}, {"threshold": 0},
     {"threshold": 120}, {"window": "10s"}, {"window": "2d"}, {"min_fetches": 0},
     # longer than the column (254): PostgreSQL's 500, while SQLite stored it
     {"email": "a@" + "b" * 180 + "." + "c" * 100}, {"email": "a\x00b@example.com"}],
)  # fmt: skip
async def test_bad_alert_settings_are_refused(
    changes: dict[str, Any], platforms: Make, fake_clock: FakeClock
) -> None:
    p = await platforms(clock=fake_clock)
    app = await p.apps.create("shop", "dev")
    with pytest.raises(InvalidInput):
        await p.alerts.configure(app.appid, changes)
    assert (await p.alerts.shown(app.appid))["webhook"] is None


async def test_alert_changes_are_audited_without_the_webhook_credential(
    platforms: Callable[..., Awaitable[Platform]],
) -> None:
    """Who redirected an app's alerts, and where: the audit names the changed settings and the
    webhook's host, not its path and query (a chat webhook's credential)."""
    p = await platforms()
    app = await p.apps.create("shop", "dev")
    await p.alerts.configure(
        app.appid, {"webhook": "http://127.0.0.1:9/hook/SECRET-TOKEN", "threshold": 50}, "ana"
    )
    await p.alerts.configure(app.appid, {"email": "ops@example.com"}, "bo")
    entries = [e for e in await p.db.read(p.registry.list_audit, app.appid)
               if e.action == "alerts.configure"]
    assert sorted((e.actor, tuple(e.detail["changed"])) for e in entries) == [
        ("ana", ("threshold", "webhook_url")),
        ("bo", ("email",)),
    ]
    assert all(e.detail["webhook_host"] == "127.0.0.1:9" for e in entries)
    assert "SECRET-TOKEN" not in json.dumps([e.detail for e in entries])


_signatures: list[tuple[str, str]] = []  # (path?query, signature) of each webhook call


async def webhook(loopback: StartServer, status: Callable[[int], int]) -> tuple[str, list[bytes]]:
    """A loopback alert webhook: its URL, and the bodies it received; ``status`` gives the
    answer's status from the number of calls so far."""
    calls: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        calls.append(await request.read())
        _signatures.append((request.path_qs, request.headers[SIGNATURE_HEADER]))
        return web.Response(status=status(len(calls)))

    hooks = web.Application()
    hooks.router.add_post("/alerts", hook)
    return await loopback(hooks) + "/alerts", calls


async def failing_app(p: Platform, counter: Counter, alerts: dict[str, Any], users: int) -> str:
    """An app whose periodic data server answers 503 to each of ``users`` fetched once."""
    app = await p.apps.create("shop", "dev")
    await confirm_url(p, app.appid, "periodic", counter.url + "/periodic")
    await p.alerts.configure(app.appid, alerts)
    for i in range(users):
        await p.background.launch(app.appid, f"u{i}", Launch())
        await p.background.set_token(app.appid, f"u{i}", f"t{i}")
    counter.status = 503
    assert await run(p) == users
    return app.appid


async def test_an_alert_whose_webhook_failed_is_sent_again(
    platforms: Make, fake_clock: FakeClock, counter: Counter, loopback: StartServer
) -> None:
    """The state moved when the alert was recorded, so a webhook that answered 503 was
    never called again: the failing data server went unreported."""
    url, calls = await webhook(loopback, lambda n: 503 if n == 1 else 200)
    signed = _signatures
    signed.clear()
    p = await platforms(clock=fake_clock)
    appid = await failing_app(p, counter, {"webhook": url, "min_fetches": 5}, 6)
    assert await p.alerts.check() == 1
    assert await p.alerts.check() == 0  # its delivery may still be running
    fake_clock.advance(61)
    assert await p.alerts.check() == 1
    assert len(calls) == 2 and calls[0] == calls[1]  # the same alert, the same body
    # signed when sent: a receiver checking the signature's age (verify_request: 300 s) took
    # a retry signed with the alert's own time for a replay, a restart's retries all of them
    ((path_qs, signature),) = set(signed[1:])
    assert int(dict(parse_qsl(urlsplit(path_qs).query))["timestamp"]) == int(fake_clock.now())
    app = await p.apps.get(appid)
    assert verify_request(app.secret, signature, "POST", path_qs, now=fake_clock.now())
    fake_clock.advance(61)
    assert await p.alerts.check() == 0  # delivered now
    (alert,) = (await p.alerts.history(appid))["alerts"]
    assert alert["delivery"]["webhook"] == "sent" and alert["delivery"]["attempts"] == 2


async def test_the_alert_loop_outlives_a_failed_round(
    platforms: Make, fake_clock: FakeClock, counter: Counter, loopback: StartServer
) -> None:
    """A round whose database read failed (PostgreSQL restarting) ended the loop: a data
    server that failed afterwards was never reported. The next round tries again."""
    url, received = await webhook(loopback, lambda n: 200)
    p = await platforms(clock=fake_clock)
    await failing_app(p, counter, {"webhook": url}, 25)
    settings, failed = p.alerts.store.settings, []

    def away() -> Any:
        if not failed:
            failed.append(1)
            raise ConnectionError("the database went away")
        return settings()

    p.alerts.store.settings = away  # type: ignore[method-assign]
    stop = asyncio.Event()
    loop = asyncio.create_task(p.alerts.loop(stop, 0.01))

    async def alerted() -> bool:
        return len(received) == 1

    try:
        await eventually(alerted)
    finally:
        stop.set()
        await asyncio.wait_for(loop, 5)
    assert failed and json.loads(received[0])["state"] == "failing"
