"""WeChat's server API for background-fetch settings, so existing WeChat back-end tooling works
against Miniport: ``/cgi-bin/token`` and ``/wxa/fetchdatasetting``.

Invariants: answers are in WeChat's shapes (errors as ``{"errcode", "errmsg"}``, never an HTTP
error); a set through this API is a URL change like any other — it waits for an admin's
confirmation unless an admin marked the app as trusted for API changes — and the answer says
which; an access token expires after 7200 s and dies when the app's secret is rotated."""

from __future__ import annotations

import secrets
from typing import Any

from ..clock import Clock
from ..domain.tokens import (
    ACCESS_TOKEN_TTL_S,
    access_token_claims,
    check_access_token,
    make_access_token,
)
from ..errors import InvalidInput, MiniportError, NotFound, Unavailable
from ..storage.db import Database
from ..storage.registry import App, RegistryStore
from .apps import AppService

API_ACTOR = "wechat-api"
_KINDS = {"set_pre_fetch": ("pre", "pre"), "set_period_fetch": ("periodic", "period")}


def wx_error(errcode: int, errmsg: str) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": errmsg}


def _trust_key(appid: str) -> str:
    return f"api_trusted:{appid}"


class WeChatSettingsAPI:
    def __init__(
        self, db: Database, registry: RegistryStore, apps: AppService, clock: Clock, key: bytes
    ) -> None:
        self.db, self.registry, self.apps, self.clock, self.key = db, registry, apps, clock, key

    async def _app(self, appid: str) -> App | None:
        try:
            return await self.db.read(self.registry.get_app, appid)
        except (NotFound, InvalidInput):  # InvalidInput: a NUL in it (PostgreSQL's refusal)
            return None

    # --- /cgi-bin/token ---
    async def token(self, grant_type: str, appid: str, secret: str) -> dict[str, Any]:
        if grant_type != "client_credential":
            return wx_error(40002, "invalid grant_type")
        if not appid:
            return wx_error(41002, "appid missing")
        if not secret:
            return wx_error(41004, "appsecret missing")
        app = await self._app(appid)
        if app is None:
            return wx_error(40013, "invalid appid")
        if not secrets.compare_digest(app.secret.encode(), secret.encode()):
            return wx_error(40125, "invalid appsecret")
        token = make_access_token(self.key, appid, app.secret, int(self.clock.now()))
        return {"access_token": token, "expires_in": ACCESS_TOKEN_TTL_S}

    async def app_for_token(self, token: str) -> App | dict[str, Any]:
        """The app an access token is for, or WeChat's error."""
        if not token:
            return wx_error(41001, "access_token missing")
        claims = access_token_claims(token)
        app = await self._app(claims[0]) if claims else None
        if claims is None or app is None or not check_access_token(self.key, token, app.secret):
            return wx_error(40001, "invalid credential, access_token is invalid or not latest")
        if self.clock.now() > claims[1] + ACCESS_TOKEN_TTL_S:
            return wx_error(42001, "access_token expired")
        return app

    # --- trust (an admin's act) ---
    async def set_trusted(self, appid: str, trusted: bool, actor: str) -> dict[str, Any]:
        await self.apps.get(appid)
        now = self.clock.now()
        await self.db.write(self.registry.kv_set, _trust_key(appid), "1" if trusted else "0")
        await self.db.write(
            self.registry.audit, now, actor, "app.api_trust", appid, trusted=trusted
        )
        return {"appid": appid, "api_changes_trusted": trusted}

    async def trusted(self, appid: str) -> bool:
        return await self.db.read(self.registry.kv_get, _trust_key(appid)) == "1"

    # --- /wxa/fetchdatasetting ---
    async def fetchdatasetting(self, token: str, body: Any) -> dict[str, Any]:
        app = await self.app_for_token(token)
        if isinstance(app, dict):
            return app
        if not isinstance(body, dict):
            return wx_error(47001, "data format error")
        action = body.get("action")
        if action == "get":
            return await self._get(app.appid)
        if isinstance(action, str) and action in _KINDS:  # (a list or object: unhashable)
            try:
                return await self._set(app.appid, action, body)
            except Unavailable as exc:  # WeChat's "system busy, try again later"
                return wx_error(-1, f"system busy: {exc.message}")
            except MiniportError as exc:
                return wx_error(40097, f"invalid args: {exc.message}")
        return wx_error(
            40097, "invalid args: action must be get, set_pre_fetch or set_period_fetch"
        )

    async def _get(self, appid: str) -> dict[str, Any]:
        urls = (await self.apps.settings(appid))["urls"]
        pre, period = urls["pre"], urls["periodic"]
        return {
            "errcode": 0,
            "errmsg": "ok",
            "is_pre_fetch_open": bool(pre["enabled"] and pre["url"]),
            "pre_fetch_type": 0,
            "pre_fetch_url": pre["url"] or "",
            "pre_env": "",
            "pre_function_name": "",
            "is_period_fetch_open": bool(period["enabled"] and period["url"]),
            "period_fetch_type": 0,
            "period_fetch_url": period["url"] or "",
            "period_env": "",
            "period_function_name": "",
        }

    async def _set(self, appid: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        kind, prefix = _KINDS[action]
        is_open = body.get(f"is_{prefix}_fetch_open")
        if not isinstance(is_open, bool):
            return wx_error(40097, f"invalid args: is_{prefix}_fetch_open must be true or false")
        if body.get(f"{prefix}_fetch_type", 0) != 0:
            return wx_error(40097, "invalid args: only a developer server (type 0) is supported")
        url = body.get(f"{prefix}_fetch_url") or (
            body.get("period_url") if kind == "periodic" else None
        )
        op = "disable" if not is_open else "set" if url else "enable"
        pending = await self.apps.request_change(appid, kind, op, url, API_ACTOR)
        out: dict[str, Any] = {"errcode": 0, "errmsg": "ok", "change_id": pending.change.id}
        if await self.trusted(appid):
            await self.apps.confirm(pending.code, f"{API_ACTOR} (trusted app)")
            return {**out, "status": "applied"}
        return {**out, "status": "pending", "confirm_url": pending.confirm_url}
