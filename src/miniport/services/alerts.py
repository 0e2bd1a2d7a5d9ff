"""Alerts when a developer's server fails: per app a webhook (the data URLs' address guard,
signed like fetch requests) and an optional e-mail, sent when a kind's success share over the
window falls under the threshold and again when it recovers — one alert per state change.

The webhook's signature covers the body: the signed request target carries ``timestamp`` and
``sha256`` (the body's hex digest) as query parameters, so a developer verifies it with the
same code as a fetch request, then checks the digest."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import smtplib
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from ..clock import Clock
from ..domain.address_guard import AddressPolicy
from ..domain.alerts import AlertRule, WindowStats, channels_to_retry, judge
from ..domain.fetch_settings import parse_duration
from ..domain.requests import merge_target
from ..domain.urls import validate_fetch_url
from ..errors import InvalidInput
from ..fetch.client import Fetcher, post_guarded
from ..storage.alerts import AlertStore
from ..storage.db import Database
from ..storage.registry import RegistryStore
from ..verify import APPID_HEADER, SIGNATURE_HEADER, sign

# the local part: no space, '@' or control character (a NUL or a line break in a header)
_EMAIL = re.compile(
    r"[^@\s\x00-\x1f\x7f]{1,64}@[A-Za-z0-9.-]{1,189}\.[A-Za-z]{2,}|[^@\s\x00-\x1f\x7f]{1,64}@localhost"
)
KINDS = ("periodic", "pre")
_DEFAULTS: dict[str, Any] = {
    "webhook_url": None,
    "email": None,
    "threshold": AlertRule.threshold,
    "window_s": AlertRule.window_s,
    "min_fetches": AlertRule.min_fetches,
}
log = logging.getLogger("miniport.alerts")


def _origin_only(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"


def signed_webhook(
    url: str, appid: str, secret: str, body: bytes, ts: int
) -> tuple[str, dict[str, str]]:
    params = [("timestamp", str(ts)), ("sha256", hashlib.sha256(body).hexdigest())]
    full, target = merge_target(url, params)
    headers = {
        APPID_HEADER: appid,
        SIGNATURE_HEADER: sign(secret, ts, "POST", target),
        "Content-Type": "application/json",
        "User-Agent": "Miniport-Alerts/0.1",
    }
    return full, headers


class AlertService:
    def __init__(
        self,
        db: Database,
        registry: RegistryStore,
        fetcher: Fetcher,
        clock: Clock,
        *,
        dev: bool,
        smtp: tuple[str | None, int, str],
        allow_hosts: tuple[str, ...] = (),
    ) -> None:
        self.db, self.registry, self.fetcher, self.clock = db, registry, fetcher, clock
        self.store = AlertStore(db)
        self.dev = dev
        self.address_policy = AddressPolicy.build(dev=dev, allow=allow_hosts)  # as the data URLs
        self.smtp_host, self.smtp_port, self.smtp_from = smtp

    # --- settings and history ---
    async def configure(
        self, appid: str, changes: dict[str, Any], actor: str = "cli"
    ) -> dict[str, Any]:
        """Change where an app's alerts go and when they fire; audited (``alerts.configure``,
        naming what changed and the webhook's host, never its path: it may be its credential)."""
        await self.db.read(self.registry.get_app, appid)
        update = self._changes(changes)

        def merged(current: dict[str, Any]) -> dict[str, Any]:
            values = {**current, **update}
            AlertRule(values["threshold"], values["window_s"], values["min_fetches"])  # checks
            return values

        # the settings as they are when written, not as read before (two changes at once, of
        # the e-mail and of the threshold, say, each kept only its own)
        await self.db.write(
            self.store.change_settings, appid, merged, _DEFAULTS, self.clock.now(), actor
        )
        return await self.shown(appid)

    def _changes(self, changes: dict[str, Any]) -> dict[str, Any]:
        """The settings ``changes`` sets, each checked on its own (no I/O)."""
        update: dict[str, Any] = {}
        if changes.get("webhook") is not None:
            webhook = changes["webhook"]
            update["webhook_url"] = (
                validate_fetch_url("periodic", webhook, dev=self.dev, policy=self.address_policy)
                if webhook
                else None
            )
        if changes.get("email") is not None:
            email = changes["email"].strip()
            if email and (len(email) > 254 or not _EMAIL.fullmatch(email)):  # RFC 5321's bound
                raise InvalidInput(f"{email!r} is not an e-mail address")
            update["email"] = email or None
        if changes.get("threshold") is not None:
            update["threshold"] = float(changes["threshold"]) / 100
        if changes.get("window") is not None:
            update["window_s"] = parse_duration(changes["window"], "m")
        if changes.get("min_fetches") is not None:
            update["min_fetches"] = changes["min_fetches"]
        return update

    async def shown(self, appid: str, whole: bool = True) -> dict[str, Any]:
        """The app's alert settings and states. ``whole=False`` (for a viewer): the webhook's
        scheme and host only, since a chat webhook's path and query are its credential."""
        await self.db.read(self.registry.get_app, appid)
        found = await self.db.read(self.store.settings, appid)
        row = found[0] if found else {}
        webhook = row.get("webhook_url")
        return {
            "appid": appid,
            "webhook": webhook if whole or not webhook else _origin_only(webhook),
            "email": row.get("email"),
            "threshold": round(row.get("threshold", AlertRule.threshold) * 100, 2),
            "window_s": row.get("window_s", AlertRule.window_s),
            "min_fetches": row.get("min_fetches", AlertRule.min_fetches),
            "states": await self.db.read(self.store.states, appid),
        }

    async def history(self, appid: str, limit: int = 100) -> dict[str, Any]:
        await self.db.read(self.registry.get_app, appid)
        return {"appid": appid, "alerts": await self.db.read(self.store.history, appid, limit)}

    # --- checking ---
    async def check(self) -> int:
        """Evaluate every configured app once; the number of alerts sent."""
        sent = 0
        for row in await self.db.read(self.store.settings):
            try:
                sent += await self._check_app(row)
            except Exception:  # one app's trouble does not stop the others
                log.exception("checking the alerts of %s failed", row["appid"])
        return sent

    async def _check_app(self, row: dict[str, Any]) -> int:
        appid = row["appid"]
        rule = AlertRule(row["threshold"], row["window_s"], row["min_fetches"])
        now = self.clock.now()
        windows = await self.db.read(self.store.window, appid, now - rule.window_s)
        states = await self.db.read(self.store.states, appid)
        sent = 0
        for kind in KINDS:
            stats = WindowStats(windows.get(kind, {}))
            change = judge(stats, rule, states.get(kind, False))
            if change is None:
                continue
            event = {
                "ts": now,
                "state": "failing" if change else "recovered",
                "success_rate": stats.success_rate(),
                "fetches": stats.total,
                "cause": stats.cause() if change else None,
            }
            if await self.db.write(self.store.record_change, appid, kind, change, event):
                await self._deliver(row, kind, rule, event)
                sent += 1
        return sent + await self._retry(row, rule, now)

    async def _retry(self, row: dict[str, Any], rule: AlertRule, now: float) -> int:
        """Send the app's newest alerts again where they were not delivered (a webhook that
        answered 503 or timed out, a node stopped between recording and sending): they were
        recorded once and never sent again, so a failing data server went unreported."""
        settings = (("webhook", "webhook_url"), ("email", "email"))
        configured = tuple(channel for channel, name in settings if row.get(name))
        retried = 0
        for event in await self.db.read(self.store.latest_events, row["appid"]):
            delivery = json.loads(event["delivery"])
            channels = channels_to_retry(delivery, configured, event["ts"], now)
            if not channels:
                continue
            attempts = int(delivery.get("attempts", 1)) + 1
            claimed = {**delivery, "attempts": attempts, "claimed_at": now}
            if not await self.db.write(
                self.store.claim_retry, event["id"], event["delivery"], json.dumps(claimed)
            ):
                continue  # another checker is sending it
            fields = ("ts", "state", "success_rate", "fetches", "cause")
            await self._deliver(
                row, event["kind"], rule, {k: event[k] for k in fields}, channels, claimed
            )
            retried += 1
        return retried

    async def _deliver(
        self,
        row: dict[str, Any],
        kind: str,
        rule: AlertRule,
        event: dict[str, Any],
        channels: tuple[str, ...] = ("webhook", "email"),
        previous: dict[str, Any] | None = None,
    ) -> None:
        appid = row["appid"]
        message = {"appid": appid, "kind": kind, "threshold": rule.threshold,
                   "window_s": rule.window_s, **event}  # fmt: skip
        delivery: dict[str, Any] = dict(previous or {})
        if row.get("webhook_url") and "webhook" in channels:
            app = await self.db.read(self.registry.get_app, appid)
            body = json.dumps(message, sort_keys=True).encode()
            # signed as sent (the body keeps the alert's time): a retry a day later must pass
            # the receiver's check of the signature's age like the first attempt
            url, headers = signed_webhook(
                row["webhook_url"], appid, app.secret, body, int(self.clock.now())
            )
            delivery["webhook"] = await post_guarded(self.fetcher, url, body, headers, 10.0)
        if row.get("email") and "email" in channels:
            delivery["email"] = await asyncio.to_thread(self._mail, row["email"], message)
        await self.db.write(self.store.set_delivery, appid, event["ts"], kind, delivery)

    def _mail(self, to: str, message: dict[str, Any]) -> str:
        if not self.smtp_host:
            return "not sent: no SMTP server is configured (MINIPORT_SMTP_HOST)"
        mail = EmailMessage()
        state = "is failing" if message["state"] == "failing" else "has recovered"
        mail["Subject"] = f"[Miniport] {message['appid']} {message['kind']} data server {state}"
        mail["From"], mail["To"] = self.smtp_from, to
        mail.set_content(json.dumps(message, indent=2, sort_keys=True))
        try:
            with smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=10) as smtp:
                smtp.send_message(mail)
            return "sent"
        except (OSError, smtplib.SMTPException) as exc:
            return f"error: {exc.__class__.__name__}"

    async def loop(self, stop: asyncio.Event, every_s: float) -> None:
        """``check`` every ``every_s`` seconds until ``stop``. A round that failed (the state
        database away) is logged and the next one tries again: it ended the loop, and no
        alert was sent again until a restart."""
        while not stop.is_set():
            try:
                await self.check()
            except Exception:  # the loop must outlive it
                log.exception("checking alerts failed; trying again in %.0f s", every_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
