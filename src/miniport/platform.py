"""The app factory: ``create_platform(settings, clock)`` builds every part of Miniport from one
Settings value. The server, the worker, the CLI and the tests all start here; nothing is built at
import time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .clock import Clock, SystemClock
from .config import Settings
from .domain.address_guard import AddressPolicy
from .domain.schedule import ScheduleRules
from .domain.sealed import HeaderSealer
from .events.broker import Broker, MemoryBroker, RedisBroker
from .fetch.client import Fetcher
from .fetch.engine import PeriodicEngine
from .metrics import Metrics
from .services.alerts import AlertService
from .services.apps import AppService
from .services.auth import AuthService
from .services.background import BackgroundService
from .services.console_guard import ConsoleStreamGuard
from .services.console_users import ConsoleUsers
from .services.live_feed import LiveFeed
from .services.members import MemberService
from .services.refresh import RefreshService
from .services.saved_reports import SavedReportService, analytics_runners
from .services.stream_guard import StreamGuard
from .services.wechat_api import WeChatSettingsAPI
from .storage import keyring, migrate
from .storage.analytics_defs import AnalyticsDefsStore
from .storage.db import Database
from .storage.fetches import FetchStore
from .storage.refreshes import RefreshStore
from .storage.registry import RegistryStore
from .storage.users import UserStore

if TYPE_CHECKING:
    from .services.analytics import AnalyticsService


@dataclass
class Platform:
    settings: Settings
    clock: Clock
    db: Database
    registry: RegistryStore
    fetches: FetchStore
    fetcher: Fetcher
    broker: Broker
    rules: ScheduleRules
    auth: AuthService
    apps: AppService
    background: BackgroundService
    make_analytics: Callable[[], AnalyticsService]  # built at first use: see ``analytics``
    console_users: ConsoleUsers
    metrics: Metrics
    members: MemberService
    wechat: WeChatSettingsAPI
    refresh: RefreshService
    alerts: AlertService
    saved: SavedReportService
    public_url: str = "http://127.0.0.1:8700"
    engine: PeriodicEngine | None = field(default=None)
    live: LiveFeed = field(init=False)
    """The console's real-time view, pushed over ``broker`` (built before any analytics:
    a node hears which apps are watched from its start)."""
    stream_guard: StreamGuard = field(init=False)
    """Ends the runtime streams whose token is revoked (on any node) or expires."""
    console_guard: ConsoleStreamGuard = field(init=False)
    """Ends the console streams whose key, session or membership is gone (on any node)."""
    _analytics: AnalyticsService | None = field(default=None, init=False, repr=False)
    _analytics_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    async def start(self, *, fetcher: bool = True) -> None:
        """Open the broker and (unless ``fetcher`` is false: a one-off CLI command, which
        may never fetch) the fetcher's session; the fetcher opens it at its first request."""
        if fetcher:
            await self.fetcher.start()
        await self.broker.start()

    async def close(self) -> None:
        await self.background.close()
        if self._analytics is not None:
            self._analytics.close()
        await self.live.close()
        await self.stream_guard.close()
        await self.console_guard.close()
        await self.fetcher.close()
        await self.broker.close()
        self.db.close()

    @property
    def analytics(self) -> AnalyticsService:
        """The analytics service, built at first use (once, whichever thread asks first): its
        modules (definitions, reports, the event stores) are slow to import and most CLI
        commands never touch analytics."""
        service = self._analytics
        if service is None:
            with self._analytics_lock:
                if self._analytics is None:
                    self._analytics = self.make_analytics()
                service = self._analytics
        return service

    def make_engine(self) -> PeriodicEngine:
        s = self.settings
        self.engine = PeriodicEngine(
            db=self.db,
            store=self.fetches,
            fetcher=self.fetcher,
            rules=self.rules,
            clock=self.clock,
            timeout_s=s.fetch_timeout_s,
            concurrency=s.fetch_concurrency,
            host_concurrency=s.host_concurrency,
            claim_batch=s.claim_batch,
            host_failure_threshold=s.host_failure_threshold,
            host_backoff_s=s.host_backoff_s,
            notify=self.background.notify,
        )
        return self.engine

    def __post_init__(self) -> None:
        self.live = LiveFeed(self.broker)
        self.stream_guard = StreamGuard(self.auth, self.broker, self.clock)
        self.console_guard = ConsoleStreamGuard(self.broker)
        for service in (self.auth, self.members, self.console_users):
            service.access_changed = self.console_guard.announce
        _watch_queues(self)

    def _wake_engine(self) -> None:
        if self.engine is not None:
            self.engine.wake()


def _make_fetcher(settings: Settings) -> Fetcher:
    return Fetcher(
        AddressPolicy.build(dev=settings.dev, allow=settings.allow_hosts),
        allowed_names=settings.allow_hosts,
        max_body_bytes=settings.max_body_bytes,
        max_redirects=settings.max_redirects,
        limit=max(100, settings.fetch_concurrency * 2),
    )


def _schedule_rules(settings: Settings) -> ScheduleRules:
    return ScheduleRules(
        interval_s=settings.periodic_interval_s,
        active_days=settings.active_days,
        retry_base_s=settings.retry_base_s,
        retry_max_s=settings.retry_max_s,
        lease_s=settings.claim_lease_s,
    )


def _developer_services(
    settings: Settings,
    db: Database,
    registry: RegistryStore,
    fetcher: Fetcher,
    apps: AppService,
    clock: Clock,
    key: bytes,
    wake: Callable[[], None],
) -> dict[str, Any]:
    """What a developer's back end talks to: WeChat's settings API, refreshes, alerts."""
    return {
        "wechat": WeChatSettingsAPI(db, registry, apps, clock, key),
        "refresh": RefreshService(
            db, registry, RefreshStore(db), clock, _schedule_rules(settings), wake
        ),
        "alerts": AlertService(
            db,
            registry,
            fetcher,
            clock,
            dev=settings.dev,
            smtp=(settings.smtp_host, settings.smtp_port, settings.smtp_from),
            allow_hosts=settings.allow_hosts,
        ),
    }


def _analytics(
    settings: Settings,
    db: Database,
    registry: RegistryStore,
    platform: Platform,
    clock: Clock,
    metrics: Metrics,
) -> AnalyticsService:
    from .services.analytics import AnalyticsService
    from .services.analytics_store import open_event_store

    return AnalyticsService(
        db=db,
        registry=registry,
        defs=AnalyticsDefsStore(db),
        broker=platform.broker,
        live=platform.live,
        clock=clock,
        retention_days=settings.analytics_retention_days,
        open_store=open_event_store(settings),
        metrics=metrics,
    )


def _console_users(
    settings: Settings, db: Database, registry: RegistryStore, clock: Clock
) -> ConsoleUsers:
    limit = settings.signin_address_limit  # failed sign-ins per client address
    return ConsoleUsers(db, UserStore(db), registry, clock, address_limit=limit)


def _open_state(settings: Settings) -> tuple[Database, keyring.KeyRing]:
    """The state database, migrated, and its key ring; the database away is one clear
    ``StateUnavailable`` naming it (serve prints it as its one-line refusal)."""
    db = Database(settings.state_url)
    with db.unavailable_as_503(say_where=True):
        migrate.upgrade(db.engine)
        return db, keyring.load(db)


def create_platform(
    settings: Settings, clock: Clock | None = None, *, broker: Broker | None = None
) -> Platform:
    clock = clock or SystemClock()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db, ring = _open_state(settings)
    registry = RegistryStore(db)
    key = ring.current
    fetcher = _make_fetcher(settings)
    if broker is None:
        broker = RedisBroker(settings.redis_url) if settings.redis_url else MemoryBroker()
    rules = _schedule_rules(settings)
    auth = AuthService(db, registry, clock, key, settings.login_code_ttl_s, ring=ring)
    fetches = FetchStore(db, auth.openid, (sealer := HeaderSealer(key, ring.previous)).open)
    holder: dict[str, Platform] = {}
    metrics = Metrics()

    def public_url() -> str:
        return settings.public_url or holder["p"].public_url

    def wake() -> None:
        holder["p"]._wake_engine()

    def urls_changed(appid: str) -> None:
        holder["p"].background.apps.invalidate(appid)
        wake()

    apps = AppService(
        db,
        registry,
        fetches,
        clock,
        dev=settings.dev,
        allow_hosts=settings.allow_hosts,
        change_ttl_s=settings.change_ttl_s,
        two_person_rule=settings.two_person_rule,
        public_url=public_url,
        on_urls_changed=urls_changed,
        sealer=sealer,
        rules=rules,
    )
    background = BackgroundService(
        db=db,
        registry=registry,
        fetches=fetches,
        auth=auth,
        fetcher=fetcher,
        broker=broker,
        clock=clock,
        rules=rules,
        fetch_timeout_s=settings.fetch_timeout_s,
        prefetch_timeout_s=settings.prefetch_timeout_s,
        wake_engine=wake,
        metrics=metrics,
        open_headers=sealer.open,
    )
    platform = Platform(
        settings=settings,
        clock=clock,
        db=db,
        registry=registry,
        fetches=fetches,
        fetcher=fetcher,
        broker=broker,
        rules=rules,
        auth=auth,
        apps=apps,
        background=background,
        make_analytics=lambda: _analytics(settings, db, registry, holder["p"], clock, metrics),
        saved=SavedReportService(
            db, registry, clock, analytics_runners(lambda: holder["p"].analytics)
        ),
        console_users=_console_users(settings, db, registry, clock),
        metrics=metrics,
        members=MemberService(db, registry, clock),
        **_developer_services(settings, db, registry, fetcher, apps, clock, key, wake),
    )
    holder["p"] = platform
    return platform


def _watch_queues(platform: Platform) -> None:
    """Gauges read at each scrape of /metrics: open device streams and queue depths."""
    m, background = platform.metrics, platform.background
    m.watch(
        "miniport_device_connections", "Runtime event streams open on this node",
        lambda: platform.broker.open_connections(),
    )  # fmt: skip
    m.watch(
        "miniport_realtime_viewers", "Console real-time streams open on this node",
        lambda: platform.live.viewers(),
    )  # fmt: skip
    m.watch(
        "miniport_prefetch_in_flight", "Pre-fetches running now",
        lambda: background.prefetch.in_flight_count(),
    )  # fmt: skip
    m.watch(
        "miniport_write_queue_depth", "Launches and fetch results waiting to be stored",
        lambda: background.pending.depth(),
    )  # fmt: skip
    m.watch(
        "miniport_engine_in_flight", "Periodic fetches claimed and not yet recorded",
        lambda: platform.engine.in_flight() if platform.engine is not None else 0,
    )  # fmt: skip
    m.watch_count(
        "miniport_state_unavailable", "Calls that found the state database away (503s, retries)",
        lambda: platform.db.unavailable_count,
    )  # fmt: skip
    m.watch_count(
        "miniport_state_write_retries", "Writes run again after losing to another transaction",
        lambda: platform.db.retried_count,
    )  # fmt: skip
