"""The relational state: SQLAlchemy Core tables. Alembic migrations (storage/migrations) create
them; a test checks that the migrated database matches these definitions.

Times are Unix seconds as floats (REAL / double precision), which keeps comparisons identical on
SQLite and PostgreSQL and needs no time-zone handling in the database."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

kv = Table(
    "kv",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

apps = Table(
    "apps",
    metadata,
    Column("appid", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("secret", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
)

fetch_urls = Table(
    "fetch_urls",
    metadata,
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("url", Text, nullable=True),
    Column("enabled", Boolean, nullable=False, default=False),
    Column("updated_at", Float, nullable=False),
    # grey release: a second URL serving grey_ratio % of the users (None/0: the testers only)
    Column("grey_url", Text, nullable=True),
    Column("grey_ratio", Integer, nullable=True),
)

# Per-app fetch settings; a None column means the platform's setting. ``headers`` is the JSON
# object of request headers sealed with the server key (domain/sealed.py), never stored plain.
app_settings = Table(
    "app_settings",
    metadata,
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), primary_key=True),
    Column("interval_s", Float, nullable=True),
    Column("active_days", Integer, nullable=True),
    Column("timeout_s", Float, nullable=True),
    Column("headers", Text, nullable=True),
    Column("updated_at", Float, nullable=False),
)

# Alerts when a developer's server fails: the app's rule and where to send, each kind's current
# state (one alert per change), and the history of alerts sent.
alert_settings = Table(
    "alert_settings",
    metadata,
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), primary_key=True),
    Column("webhook_url", Text, nullable=True),
    Column("email", String(254), nullable=True),
    Column("threshold", Float, nullable=False),
    Column("window_s", Float, nullable=False),
    Column("min_fetches", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)

alert_states = Table(
    "alert_states",
    metadata,
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("failing", Boolean, nullable=False),
    Column("since", Float, nullable=False),
)

alert_events = Table(
    "alert_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("ts", Float, nullable=False),
    Column("state", String(16), nullable=False),  # failing | recovered
    Column("success_rate", Float, nullable=True),
    Column("fetches", Integer, nullable=False),
    Column("cause", Text, nullable=True),
    Column("delivery", Text, nullable=False),  # JSON: per channel, "sent" or the error
    Index("ix_alert_events_appid_ts", "appid", "ts"),
)

# One row per launch whose pre-fetched data a device read: how effective pre-fetch is.
prefetch_launches = Table(
    "prefetch_launches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), nullable=False),
    Column("ts", Float, nullable=False),  # the launch
    Column("scene", Integer, nullable=False),
    Column("path", Text, nullable=False),
    Column("platform", String(16), nullable=False),
    Column("ready", Boolean, nullable=False),
    Column("ready_ms", Float, nullable=True),
    Column("wait_ms", Integer, nullable=False),
    Column("waited_ms", Float, nullable=False),
    Index("ix_prefetch_launches_appid_ts", "appid", "ts"),
)

# Users named on an app as testers: always served by a kind's grey URL.
app_testers = Table(
    "app_testers",
    metadata,
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(128), primary_key=True),
    Column("added_by", String(128), nullable=False),
    Column("added_at", Float, nullable=False),
)

change_requests = Table(
    "change_requests",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    # set | enable | disable | grey_set | grey_ratio | grey_promote | grey_clear
    Column("op", String(16), nullable=False),
    Column("url", Text, nullable=True),
    Column("ratio", Integer, nullable=True),  # grey_set and grey_ratio
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("status", String(16), nullable=False),  # pending | applied | superseded
    Column("requested_by", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("decided_by", String(128), nullable=True),
    Column("decided_at", Float, nullable=True),
    # a periodic change's wake still owed (see RegistryStore.owed_wakes): the last user id
    # woken ("" before the first; NULL once done or never owed), when it last moved on, and
    # the URL settings it moved users between ({"before": {...}, "after": {...}})
    Column("wake_from", String(128), nullable=True),
    Column("wake_at", Float, nullable=True),
    Column("wake_urls", Text, nullable=True),
    Index("ix_change_requests_appid_status", "appid", "status"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("appid", String(32), nullable=True, index=True),
    Column("detail", Text, nullable=False, default="{}"),
)

# One row per (app, user): the periodic schedule, the background-fetch token and validators.
app_users = Table(
    "app_users",
    metadata,
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(128), primary_key=True),
    Column("token", Text, nullable=True),
    Column("last_launch_at", Float, nullable=True),
    Column("next_due_at", Float, nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("last_success_at", Float, nullable=True),
    Column("last_attempt_at", Float, nullable=True),
    Column("failures", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("etag", Text, nullable=True),
    Column("last_modified", Text, nullable=True),
    # which of the kind's URLs (main | grey) etag and last_modified came from: a fetch sends them
    # only to that one (NULL: not known, stored before migration 0013; sent to neither)
    Column("validators_route", String(8), nullable=True),
    # the mini-program's version and environment at the user's last launch that said them
    Column("version", String(64), nullable=True),
    Column("env_version", String(16), nullable=True),
    # the due index: parked pairs (no due time) are not in it. The predicate
    # (``WHERE next_due_at IS NOT NULL``) is migration 0011's, checked on both databases by
    # tests/storage/test_migrations.py; it is not repeated here as ``postgresql_where``, which
    # would load SQLAlchemy's PostgreSQL dialect into every SQLite command at import.
    Index("ix_app_users_next_due_at", "next_due_at"),
)

# Each distinct fetched body once, by the SHA-256 of its text, zlib-compressed. ``refs`` counts
# the fetched_data rows naming it: a writer adds its references when it upserts the body, and
# database triggers (migration 0002) take one away when a row's body_hash is replaced or the row
# is deleted, deleting the body at zero. No foreign key: SQLite would scan fetched_data for
# children on every body deletion.
bodies = Table(
    "bodies",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("body", LargeBinary, nullable=False),
    Column("refs", Integer, nullable=False),
)

fetched_data = Table(
    "fetched_data",
    metadata,
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(128), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("body_hash", String(64), nullable=False),  # bodies.hash (no FK: see bodies)
    Column("fetched_at_ms", BigInteger, nullable=False),
    Column("path", Text, nullable=True),
    Column("query", Text, nullable=True),
    Column("scene", Integer, nullable=True),
)

fetch_log = Table(
    "fetch_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("appid", String(32), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("trigger", String(16), nullable=False),  # schedule | launch | devtools
    Column("ts", Float, nullable=False),
    Column("url", Text, nullable=True),
    Column("route", String(8), nullable=True),  # main | grey: which of the kind's URLs served
    Column("verdict", String(32), nullable=False),
    Column("status", Integer, nullable=True),
    Column("bytes", Integer, nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_fetch_log_appid_ts", "appid", "ts"),
)

login_codes = Table(
    "login_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
)

host_keys = Table(
    "host_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)

console_users = Table(
    "console_users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    # set for a generated one-time password: the user must choose their own at first sign-in
    Column("must_change_password", Boolean, nullable=False, default=False),
    # when the password was last set (created, reset, changed): a one-time password expires
    # ``ONE_TIME_PASSWORD_TTL_S`` after it. Rows from before 0014 have none (created_at counts)
    Column("password_set_at", Float, nullable=True),
)

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_name", String(64), ForeignKey("console_users.name", ondelete="CASCADE")),
    Column("csrf", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

# --- analytics definitions (the events themselves live in DuckDB) ---
analytics_fields = Table(
    "analytics_fields",
    metadata,
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), primary_key=True),
    Column("name", String(32), primary_key=True),
    Column("type", String(8), nullable=False),
    Column("slot", Integer, nullable=False),
    Column("published", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    # a type change waiting for the next publish (analytics.field_history)
    Column("pending_type", String(8), nullable=True),
    Column("pending_slot", Integer, nullable=True),
)

analytics_field_parts = Table(
    "analytics_field_parts",
    metadata,
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), primary_key=True),
    Column("name", String(32), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("type", String(8), nullable=False),
    Column("slot", Integer, nullable=False),
    Column("since_ms", BigInteger, nullable=True),
    Column("version", Integer, nullable=True),
)

analytics_events = Table(
    "analytics_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), nullable=False),
    Column("name", String(32), nullable=False),
    Column("draft", Text, nullable=True),  # JSON EventDef, None when deleted in the draft
    Column("published", Text, nullable=True),  # JSON EventDef of the published version
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("appid", "name"),
    # an id is never given twice (app code reports by id): AUTOINCREMENT on SQLite too
    sqlite_autoincrement=True,
)

analytics_versions = Table(
    "analytics_versions",
    metadata,
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("config", Text, nullable=False),  # runtime JSON of that version
    Column("published_by", String(128), nullable=False),
    Column("published_at", Float, nullable=False),
)

analytics_tests = Table(
    "analytics_tests",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("config", Text, nullable=False),  # runtime JSON of the draft under test
    Column("status", String(16), nullable=False),  # running | stopped
    Column("started_by", String(128), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("stopped_at", Float, nullable=True),
    Column("synced_at", Float, nullable=True),
    Index("ix_analytics_tests_appid_user_status", "appid", "user_id", "status"),
)

# Per-app analytics settings: built-in events ($launch, $show...) on or off (no row: on).
analytics_settings = Table(
    "analytics_settings",
    metadata,
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), primary_key=True),
    Column("builtin_events", Boolean, nullable=False),
    Column("updated_by", String(160), nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Runtime-token revocations, append-only: a user's tokens issued before ``before`` are refused.
# API nodes read the rows past the last ``seq`` they saw, so a revocation reaches every node.
runtime_revocations = Table(
    "runtime_revocations",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(128), nullable=False),
    Column("before", Float, nullable=False),
    Column("revoked_at", Float, nullable=False),
    Column("actor", String(160), nullable=False),
)

# A pending change's confirmation code, sealed with the server key, so any API node can show its
# QR code until it expires (the change row keeps only the code's hash, for confirming).
sealed_codes = Table(
    "sealed_codes",
    metadata,
    Column(
        "change_id",
        String(32),
        ForeignKey("change_requests.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("sealed", Text, nullable=False),
    Column("expires_at", Float, nullable=False),
)

# Failed console sign-ins per account (its normalized name), shared by every API node.
signin_failures = Table(
    "signin_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name_key", String(160), nullable=False),
    Column("ts", Float, nullable=False),
    Index("ix_signin_failures_name_key_ts", "name_key", "ts"),
)

# Per-app members: a developer or viewer (console user name, or ``key:NAME`` for an API key)
# reaches only the apps it is a member of, with at most the member role; admins reach all.
app_members = Table(
    "app_members",
    metadata,
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), primary_key=True),
    Column("principal", String(160), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("added_at", Float, nullable=False),
    Column("added_by", String(160), nullable=False),
    Index("ix_app_members_principal", "principal"),
)

# --- saved reports and dashboards (analytics) ---
# A report's kind and parameters as validated JSON (domain/saved_reports.py), by name per app.
saved_reports = Table(
    "saved_reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("params", Text, nullable=False),
    Column("created_by", String(160), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("appid", "name"),
)

# A dashboard: a named grid of saved reports sharing one date range (the last N days, or
# from/to dates) in one time zone.
dashboards = Table(
    "dashboards",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("last_days", Integer, nullable=True),
    Column("date_from", String(10), nullable=True),
    Column("date_to", String(10), nullable=True),
    Column("tz", String(64), nullable=False),
    Column("created_by", String(160), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("appid", "name"),
)

# The reports on a dashboard in grid order (position 0, 1, ...), each 1 or 2 columns wide;
# deleting a saved report takes it off every dashboard.
dashboard_items = Table(
    "dashboard_items",
    metadata,
    Column(
        "dashboard_id",
        Integer,
        ForeignKey("dashboards.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "report_id",
        Integer,
        ForeignKey("saved_reports.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("position", Integer, nullable=False),
    Column("width", Integer, nullable=False),
)

# The ClickHouse event store's index of stored event ids (storage/event_keys.py): one row per
# (appid, uid), as a 64-bit hash of both, claimed before the event is inserted into ClickHouse
# so that the check for a repeated id is a point lookup here instead of a scan there.
# ``ts_ms`` is the claiming event's time: retention drops the rows ClickHouse drops.
event_keys = Table(
    "event_keys",
    metadata,
    Column("key", BigInteger, primary_key=True, autoincrement=False),
    Column("ts_ms", BigInteger, nullable=False),
)

# Refreshes asked for by a developer's back end (services/refresh.py, storage/refreshes.py),
# in the database so that every API node sees them and a restart keeps them. ``total`` users
# were made due at ``started_at``; a running refresh's progress is counted from their last
# attempt times, ``done`` is stored when it finishes (done or cancelled, at ``finished_at``).
# At most one runs per app: ``ix_refreshes_one_running`` is UNIQUE ``WHERE state = 'running'``
# (migration 0016's predicate, checked on both databases by tests/storage/test_migrations.py;
# not repeated here, for the reason given at ix_app_users_next_due_at).
refreshes = Table(
    "refreshes",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("appid", String(32), ForeignKey("apps.appid", ondelete="CASCADE"), nullable=False),
    Column("state", String(16), nullable=False),  # running | done | cancelled
    Column("started_at", Float, nullable=False),
    Column("total", Integer, nullable=False),
    Column("done", Integer, nullable=False),
    Column("finished_at", Float, nullable=True),
    Index("ix_refreshes_one_running", "appid", unique=True),
    Index("ix_refreshes_appid_started_at", "appid", "started_at"),
    Index("ix_refreshes_finished_at", "finished_at"),
)

# The users of each RUNNING refresh (a finished one's are deleted with the state change): a
# table rather than a JSON list in the row, so that progress and cancel are one statement
# joined with app_users whatever the size (an "all" refresh of a large app names every active
# user), and the rows are made from app_users by INSERT ... SELECT, never read into a node.
refresh_users = Table(
    "refresh_users",
    metadata,
    Column(
        "refresh_id",
        String(32),
        ForeignKey("refreshes.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("user_id", String(128), primary_key=True),
)
