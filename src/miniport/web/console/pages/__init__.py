"""The console's pages, one router per area. :data:`ROUTERS` is the one ordered list the
console application registers (``routes.create_console_app``); a new area adds its module here.

Every module's pages depend on one of the role aliases of :mod:`._common` and render through
:mod:`..render`; none keeps state of its own (the console's state is ``app.state.console``)."""

from __future__ import annotations

from fastapi import APIRouter

from . import (
    account,
    analytics,
    analytics_users,
    apps,
    audit,
    dashboards,
    data_urls,
    health,
    insights,
    members,
    reports,
    simulator,
    users,
)

ROUTERS: tuple[APIRouter, ...] = (
    account.router,  # /, /login, /logout, /account/password
    apps.router,  # /apps, /apps/{appid}, /apps/{appid}/secret
    data_urls.router,  # /apps/{appid}/urls, /apps/{appid}/changes...
    health.router,  # /apps/{appid}/health (charts and devtools)
    analytics.router,  # /apps/{appid}/analytics
    insights.router,  # /apps/{appid}/analytics/insights (overview, real time, retention, paths)
    reports.router,  # /apps/{appid}/analytics/reports
    dashboards.router,  # /apps/{appid}/analytics/dashboards
    analytics_users.router,  # /apps/{appid}/analytics/users (lookup and forget)
    members.router,  # /apps/{appid}/members
    audit.router,  # /audit
    users.router,  # /users...
    simulator.router,  # /simulator
)

__all__ = ["ROUTERS"]
