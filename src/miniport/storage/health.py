"""Fetch-log aggregates over time for the console's health charts (success rate, latency and
body size per time bucket). Read-only; works on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Float, Integer, and_, bindparam, case, cast, func, select

from . import schema as t
from .db import Database

OK_VERDICTS = ("cached", "not_modified")


def health_series(db: Database, appid: str, since: float, bucket_s: float) -> list[dict[str, Any]]:
    """One row per (kind, bucket) with fetches since ``since``; a bucket starts at a multiple
    of ``bucket_s`` (Unix seconds)."""
    c = t.fetch_log.c
    scaled = c.ts / bindparam("bucket_s", bucket_s, type_=Float)
    # SQLite's CAST truncates (ts is positive); PostgreSQL's would round, so floor first
    index = (cast(scaled, Integer) if db.is_sqlite
             else cast(func.floor(scaled), BigInteger)).label("bucket")
    ok = func.sum(case((c.verdict.in_(OK_VERDICTS), 1), else_=0))
    # which URL served: the grey release's share of the bucket and its successes
    grey = func.sum(case((c.route == "grey", 1), else_=0))
    grey_ok = func.sum(case((and_(c.route == "grey", c.verdict.in_(OK_VERDICTS)), 1), else_=0))
    with db.reading() as conn:
        rows = conn.execute(
            select(c.kind, index, func.count(), ok, func.avg(c.latency_ms),
                   func.max(c.latency_ms), func.avg(c.bytes), grey, grey_ok)
            .where(and_(c.appid == appid, c.ts >= since))
            .group_by(c.kind, index)
            .order_by(index)
        ).all()
    return [
        {"kind": kind, "t": int(bucket) * bucket_s, "total": int(total), "ok": int(good or 0),
         "avg_latency_ms": float(latency) if latency is not None else None,
         "max_latency_ms": float(top) if top is not None else None,
         "avg_bytes": float(size) if size is not None else None,
         "grey_total": int(grey_total or 0), "grey_ok": int(grey_good or 0)}
        for kind, bucket, total, good, latency, top, size, grey_total, grey_good in rows
    ]
