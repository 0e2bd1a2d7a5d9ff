"""Turning a fetch result into what is stored: the log row, the accepted body and the next
schedule (pure)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ..domain.acceptance import Verdict
from ..domain.requests import redact_url
from ..domain.schedule import ScheduleRules
from ..storage.fetches import DueFetch, FetchRecord, ScheduleUpdate
from .client import FetchResult


def record_for(
    result: FetchResult,
    *,
    appid: str,
    user_id: str,
    kind: str,
    trigger: str,
    now: float,
    requested_url: str,
    path: str | None = None,
    query: str | None = None,
    scene: int | None = None,
    arrived_at: float | None = None,
    route: str | None = None,
    token: str | None = None,
) -> FetchRecord:
    """``now`` is when the request went out (the log's time); ``arrived_at`` when the answer
    came, which is the data's ``timeStamp``. ``token``: a periodic fetch's (its body is stored
    only while it is still the pair's token)."""
    cached = result.verdict is Verdict.CACHED
    return FetchRecord(
        appid=appid,
        user_id=user_id,
        kind=kind,
        trigger=trigger,
        ts=now,
        url=redact_url(requested_url),
        verdict=result.verdict.value,
        status=result.status,
        bytes=result.bytes,
        latency_ms=result.latency_ms,
        error=result.error,
        body=result.text if cached else None,
        fetched_at_ms=int((now if arrived_at is None else arrived_at) * 1000) if cached else None,
        path=path,
        query=query,
        scene=scene,
        route=route if requested_url else None,
        token=token,
    )


def schedule_after(
    due: DueFetch,
    verdict: Verdict,
    now: float,
    rules: ScheduleRules,
    rand: Callable[[], float],
    *,
    error: str | None,
    etag: str | None = None,
    last_modified: str | None = None,
    next_due_at: float | None = None,
) -> ScheduleUpdate:
    """The schedule row after an attempt. ``next_due_at`` overrides the rule (a resting host);
    the app's own interval, when it has one, replaces the platform's."""
    if due.interval_s is not None and due.interval_s != rules.interval_s:
        rules = dataclasses.replace(rules, interval_s=due.interval_s)
    if verdict.ok:
        return ScheduleUpdate(
            due.appid,
            due.user_id,
            next_due_at=rules.next_after_success(now),
            failures=0,
            last_attempt_at=now,
            last_error=None,
            last_success_at=now,
            etag=etag,
            last_modified=last_modified,
            new_validators=verdict is Verdict.CACHED,
            token=due.token,
            route=due.route,
            url=due.url,
        )
    if verdict is Verdict.TOKEN_NOT_SET:  # out of the due index until a token is set
        return ScheduleUpdate(
            due.appid,
            due.user_id,
            next_due_at=None,
            failures=due.failures,
            last_attempt_at=now,
            last_error=error,
            token=due.token,
            url=due.url,
        )
    failures = due.failures + 1
    when = (
        next_due_at
        if next_due_at is not None
        else rules.next_after_failure(now, failures, due.last_success_at, rand)
    )
    return ScheduleUpdate(
        due.appid,
        due.user_id,
        next_due_at=when,
        failures=failures,
        last_attempt_at=now,
        last_error=error,
        token=due.token,
        url=due.url,
    )
