"""The web console (``/console``): server-rendered pages (Jinja2) with small vanilla JS modules,
the JavaScript runtime at ``/sdk/``, and the console session behind the admin API.

``install(app, platform)`` wires all of it into the main application:

- ``app.state.session_resolver``: the admin API (``/admin/v1/...``) accepts a console session
  cookie (with the CSRF header on state-changing calls) as well as an API key;
- ``/console``: a mounted sub-application with its own error pages (HTML, not JSON);
- ``/sdk``: the JavaScript runtime's ES modules (``/sdk/miniport-runtime.js``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ...domain.urls import shown_url
from ...platform import Platform
from . import members_page
from .auth import ConsoleAuth
from .routes import ConsoleState, create_console_app

SDK_DIR = Path(__file__).resolve().parent.parent / "sdk"
BASE = "/console"


def install(app: FastAPI, platform: Platform) -> ConsoleState:
    state = ConsoleState(platform, ConsoleAuth(platform))
    state.env.filters["shown_url"] = shown_url  # invisible and bidi characters made visible
    app.state.session_resolver = state.auth.resolve
    app.state.console = state
    console_app = create_console_app(platform, state)
    members_page.install(console_app)  # the members tab of an app
    app.mount(BASE, console_app, name="console")
    app.mount("/sdk", StaticFiles(directory=SDK_DIR), name="sdk")
    return state


__all__ = ["BASE", "ConsoleAuth", "ConsoleState", "install"]
