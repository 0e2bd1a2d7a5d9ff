"""Settings: one immutable value object, read from the environment (``MINIPORT_`` prefix) or built
directly in tests. Nothing reads the environment at import time: call ``Settings.from_env()``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .domain.origins import check_origin
from .errors import InvalidInput, Problem

ENV_PREFIX = "MINIPORT_"


class SettingsInvalid(InvalidInput, ValueError):
    """A setting's value cannot be used: each problem names the variable (or the option's
    setting) and what is wrong, so the CLI prints it as an error rather than a traceback."""


class Settings(BaseModel):
    """Each field is read from ``MINIPORT_<NAME>`` by :meth:`from_env` (a plain model:
    pydantic-settings cost a command ~80 ms of start-up for what ``from_env`` does)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    data_dir: Path = Field(
        default=Path("miniport-data"), description="Where SQLite, DuckDB and keys live"
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the state database; default sqlite:///DATA_DIR/miniport.db",
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL for event-stream fan-out across API nodes"
    )
    dev: bool = Field(
        default=False,
        description="Development mode: the fetcher may reach loopback/private addresses and "
        "http pre-fetch URLs are accepted",
    )
    periodic_interval_s: float = Field(default=43200, gt=0, description="Periodic fetch interval")
    active_days: float = Field(default=7, gt=0, description="Users active within this many days")
    fetch_timeout_s: float = Field(default=10, gt=0, description="Periodic fetch total timeout")
    prefetch_timeout_s: float = Field(default=5, gt=0, description="Pre-fetch total timeout")
    max_body_bytes: int = Field(default=256 * 1024, gt=0, description="Largest body accepted")
    max_request_bytes: int = Field(
        default=2 * 1024 * 1024, gt=0, description="Largest request body the API accepts"
    )
    max_redirects: int = Field(default=3, ge=0, description="Redirects followed per fetch")
    fetch_concurrency: int = Field(default=200, gt=0, description="Fetches in flight per worker")
    host_concurrency: int = Field(default=50, gt=0, description="Fetches in flight per dev host")
    retry_base_s: float = Field(default=60, gt=0, description="First retry delay after a failure")
    retry_max_s: float = Field(default=3600, gt=0, description="Longest retry delay")
    host_failure_threshold: int = Field(
        default=20, gt=0, description="Consecutive failures before a whole host is backed off"
    )
    host_backoff_s: float = Field(default=300, gt=0, description="How long a failing host rests")
    claim_lease_s: float = Field(
        default=120, gt=0, description="A claimed fetch is retried after this if its worker died"
    )
    claim_batch: int = Field(default=500, gt=0, description="Due fetches claimed per query")
    allow_hosts: tuple[str, ...] = Field(
        default=(),
        description="Comma-separated hosts/CIDRs the fetcher may reach despite the guard",
    )
    cors_origins: tuple[str, ...] = Field(
        default=(),
        description="Comma-separated origins (scheme://host[:port]) whose pages may load the "
        "JavaScript runtime and call the runtime API; none by default",
    )
    change_ttl_s: float = Field(default=600, gt=0, description="Lifetime of a confirmation code")
    two_person_rule: bool = Field(
        default=False,
        description="A URL change must be confirmed by someone other than who requested it",
    )
    signin_address_limit: int = Field(
        default=50,
        ge=0,
        description="Failed console sign-ins from one client address (an IPv6 /64) in ten "
        "minutes before that address is refused too; an IPv6 /48 may reach four times as many "
        "(0: no limit per address)",
    )
    smtp_host: str | None = Field(default=None, description="SMTP server for alert e-mails")
    smtp_port: int = Field(default=25, gt=0, lt=65536, description="SMTP server port")
    smtp_from: str = Field(default="miniport@localhost", description="Sender of alert e-mails")
    alert_check_s: float = Field(default=30, gt=0, description="How often alert rules are checked")
    login_code_ttl_s: float = Field(default=300, gt=0, description="Lifetime of a login code")
    public_url: str | None = Field(
        default=None, description="Base URL that confirmation links and QR codes point to"
    )
    analytics_retention_days: float = Field(default=30, gt=0, description="Analytics retention")
    backup_keep: int = Field(
        default=7,
        ge=0,
        description="Backups kept in <data dir>/backups: after each one, the oldest beyond this "
        "many are deleted (0: keep them all)",
    )
    analytics_url: str | None = Field(
        default=None,
        description="Event store on ClickHouse: clickhouse[s]://USER:PASSWORD@HOST:PORT/DATABASE "
        "(HTTP interface); default: DuckDB in the data directory",
    )
    analytics_ca_file: str | None = Field(
        default=None, description="CA file to trust for a clickhouses:// analytics URL"
    )
    start_scheduler: bool = Field(default=True, description="Run fetch workers inside `serve`")

    @field_validator("allow_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, (tuple, list)):
            for origin in value:
                check_origin(str(origin))
        return value

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """The environment's ``MINIPORT_*`` values (names in any case), then ``overrides``
        that are not None; strings are converted and checked by the fields."""
        environ = {k.upper(): v for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)}
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = environ.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = raw
        given = {k: v for k, v in overrides.items() if v is not None}
        values.update(given)
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                name = str(error["loc"][0]) if error["loc"] else ""
                where = name if name in given else ENV_PREFIX + name.upper()
                problems.append(Problem(where, f"{error['msg']} (setting {name})"))
            raise SettingsInvalid("; ".join(str(p) for p in problems), problems) from None

    @property
    def state_url(self) -> str:
        if self.database_url:
            return self.database_url
        # quoted: SQLAlchemy reads '?' in a path as the start of options and '%41' as 'A'
        return "sqlite:///" + quote(str((self.data_dir / "miniport.db").resolve()), safe="/")

    @property
    def events_path(self) -> Path:
        return self.data_dir / "events.duckdb"
