"""A small sample developer server for ``miniport serve --demo``: it answers the periodic and
pre-fetch requests, verifies Miniport's signature header, and exchanges login codes at the
platform's jscode2session, the way a real developer backend would."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
from aiohttp import web

from .verify import SIGNATURE_HEADER, verify_request


def make_demo_app(secret_of: dict[str, str], platform_url: str) -> web.Application:
    """``secret_of`` maps appid to secret (filled once the demo app exists)."""

    async def answer(request: web.Request, kind: str) -> web.Response:
        q = request.query
        appid = q.get("appid", "")
        secret = secret_of.get(appid)
        signed = bool(secret) and verify_request(
            secret or "", request.headers.get(SIGNATURE_HEADER), "GET", request.path_qs
        )
        if not signed:
            return web.json_response({"error": "bad signature"}, status=401)
        body: dict[str, Any] = {
            "kind": kind,
            "served_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "timestamp": q.get("timestamp"),
            "goods": [
                {"name": "Tea", "price": 12},
                {"name": "Cake", "price": 30},
            ],
        }
        if kind == "pre":
            body.update(path=q.get("path"), query=q.get("query"), scene=q.get("scene"))
        if "token" in q:
            body["greeting"] = f"hello, token {q['token'][:16]}"
        elif "code" in q:
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    f"{platform_url}/sns/jscode2session",
                    params={
                        "appid": appid,
                        "secret": secret or "",
                        "js_code": q["code"],
                        "grant_type": "authorization_code",
                    },
                ) as resp,
            ):
                session_info = await resp.json()
            body["openid"] = session_info.get("openid")
            body["greeting"] = "hello, openid " + str(session_info.get("openid"))
        return web.Response(
            text=json.dumps(body, ensure_ascii=False), content_type="application/json"
        )

    async def periodic(request: web.Request) -> web.Response:
        return await answer(request, "periodic")

    async def prefetch(request: web.Request) -> web.Response:
        return await answer(request, "pre")

    app = web.Application()
    app.router.add_get("/periodic", periodic)
    app.router.add_get("/prefetch", prefetch)
    return app
