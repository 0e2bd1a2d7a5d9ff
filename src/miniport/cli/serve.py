"""``miniport serve`` (API, console, scheduler and fetch workers in one process) and
``miniport worker`` (fetch workers alone, for scale-out). Both run only here, on the data
directory (never through a server's admin API). uvicorn, aiohttp and the platform are imported
when a command runs, not when the CLI starts.

Invariant of ``serve``'s start: the data directory is locked and every port is bound BEFORE
anything is written or printed as serving; a held data directory, a port in use, an events
database held by another process (or damaged), or a database a newer version made ends at once
with one line on stderr and exit status 2."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.markup import escape

from ..errors import SchemaTooNew, StateUnavailable
from ..storage.data_dir import holding as data_dir_lock
from ..storage.data_dir import working
from . import logs
from .common import (
    DataDir,
    console,
    err_console,
    read_server_file,
    settings_for,
    write_server_file,
)

log = logging.getLogger("miniport.serve")

if TYPE_CHECKING:
    import uvicorn

    from ..config import Settings
    from ..gc_tuning import PauseTimer
    from ..platform import Platform

DEMO_USER = "alice"
DEMO_PORT = 8701
CLI_KEY_FILE = "cli.key"


class StartRefused(Exception):
    """The server cannot start; the message says what to do."""


def holding(data_dir: Path) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock on the data directory for the life of this server (released by the
    OS when the process ends, however it ends)."""

    def refused() -> StartRefused:
        info = read_server_file(data_dir) or {}
        who = f" (pid {info['pid']}, {info.get('url')})" if "pid" in info else ""
        return StartRefused(
            f"another server{who} holds the data directory {data_dir.resolve()}: "
            "stop it, or give this one its own --data-dir"
        )

    return data_dir_lock(data_dir, refused)


def listening(host: str, port: int, what: str, flag: str) -> socket.socket:
    """A socket bound and listening on host:port, or StartRefused naming the flag to change
    (``--host`` when the address is at fault: a name that does not resolve, not this host's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except (OSError, OverflowError) as exc:  # OverflowError: a port beyond 0-65535
        sock.close()
        raise StartRefused(f"cannot listen on {host}:{port} for {what} {_why(exc, flag)}") from None
    sock.set_inheritable(True)
    return sock


def _why(exc: OSError | OverflowError, flag: str) -> str:
    """Why a bind failed, and what to change."""
    if isinstance(exc, socket.gaierror):
        return f"({exc.strerror or exc}): give --host an address, or a name that resolves"
    if isinstance(exc, OverflowError):
        return f"(a port is 0 to 65535): choose another {flag}"
    if exc.errno == errno.EADDRINUSE:
        return f"(in use): stop what uses it, or choose another {flag}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"({exc.strerror}): --host must be an address of this machine"
    return f"({exc.strerror or exc}): check --host and {flag}"


def _uvicorn_server(config: uvicorn.Config) -> uvicorn.Server:
    import uvicorn

    from ..web.event_stream import end_open_streams

    class _Server(uvicorn.Server):
        """uvicorn re-raises a caught SIGTERM after its shutdown, which kills the process
        before ``_serve`` cleans up (demo server, server.json); ``_serve`` handles the signals
        instead.

        At shutdown the open event streams end as soon as the server stops accepting: uvicorn
        would wait for them (they never end by themselves) for its whole graceful timeout,
        then cancel each with a traceback in the log, and the devices would reconnect only
        then. Ended before, they would reconnect to this node while it is stopping.

        A second Ctrl-C (uvicorn's forced exit) stops waiting for open requests, but the
        application's shutdown still runs: uvicorn would skip it, leaving the engine's claims
        held, the fetcher's session open and a traceback of the cancelled lifespan in the
        log. It takes at most the engine's stop grace (2 s)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for server in self.servers:  # stop accepting (uvicorn's first step, done twice)
                server.close()
            ended = end_open_streams()
            if ended:
                log.info("stopping: %d open event streams ended", ended)
            await super().shutdown(sockets)
            if self.force_exit:  # uvicorn skipped it
                await self.lifespan.shutdown()

    return _Server(config)


def _install_uvloop() -> None:
    import asyncio  # here: ``miniport --help`` never needs it

    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _setup_demo(platform: Platform, sock: socket.socket) -> dict[str, Any]:
    """A sample developer server on loopback (on ``sock``, bound at start) and a demo app
    wired to it."""
    from aiohttp import web

    from ..demo import make_demo_app

    secrets_of: dict[str, str] = {}
    runner = web.AppRunner(make_demo_app(secrets_of, platform.public_url), access_log=None)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    dev_port = sock.getsockname()[1]
    appid = await platform.db.write(platform.registry.kv_get_or_set, "demo_appid", "")
    if not appid:
        created = await platform.apps.create("Demo", "demo")
        appid = created.appid
        await platform.db.write(platform.registry.kv_set, "demo_appid", appid)
    app = await platform.apps.get(appid)
    secrets_of[appid] = app.secret
    for kind, route in (("periodic", "periodic"), ("pre", "prefetch")):
        pending = await platform.apps.request_change(
            appid, kind, "set", f"http://127.0.0.1:{dev_port}/{route}", "demo"
        )
        await platform.apps.confirm(pending.code, "demo (auto-confirmed by --demo)")
    token = platform.auth.runtime_token(DEMO_USER, "demo-device")
    return {
        "appid": appid,
        "secret": app.secret,
        "runner": runner,
        "dev_url": f"http://127.0.0.1:{dev_port}",
        "token": token,
        "console_admin": await _demo_console_admin(platform),
    }


async def _demo_console_admin(platform: Platform) -> tuple[str, str] | None:
    """With no console user yet, the demo makes an admin with a one-time password."""
    auth = platform.console_users
    if await auth.list_users():
        return None
    user, password = await auth.create_user("admin", "admin", None, actor="demo")
    return (user.name, password or "")


def _print_demo(demo: dict[str, Any], base: str) -> None:
    appid, token = demo["appid"], demo["token"]
    auth = f"-H 'Authorization: Bearer {token}'"
    console.print(
        f"\n[bold green]Demo ready[/bold green]: app [bold]{appid}[/bold] "
        f"(secret {demo['secret']}), sample developer server {demo['dev_url']}"
    )
    base_rt = f"{base}/runtime/v1/apps/{appid}"
    json_h = "-H 'Content-Type: application/json'"
    launch = '{"path":"pages/index/index","query":"id=1","scene":1001}'
    lines = [
        f"curl -s -X POST {auth} {json_h} -d '{launch}' {base_rt}/launch",
        f"curl -s {auth} '{base_rt}/background-fetch/data?fetchType=pre&waitMs=2000'",
        f'curl -s -X POST {auth} {json_h} -d \'{{"token":"t-alice"}}\' '
        f"{base_rt}/background-fetch/token",
        f"curl -s {auth} '{base_rt}/background-fetch/data?fetchType=periodic'",
        f"miniport devtools log {appid}",
        f"console: {base}/console",
    ]
    console.print("Try, as host user 'alice':", highlight=False)
    for line in lines:
        console.print("  " + line, highlight=False, markup=False, soft_wrap=True)
    if demo.get("console_admin"):
        name, password = demo["console_admin"]
        console.print(
            f"Console sign-in: {name} / one-time password {password} "
            f"(you choose your own at first sign-in)",
            highlight=False,
            markup=False,
        )
    else:
        console.print("Console users: `miniport admin create NAME` adds one.", highlight=False)


async def _serve(settings: Settings, sock: socket.socket, demo_sock: socket.socket | None) -> None:
    import asyncio

    import uvicorn

    from ..platform import create_platform
    from ..web.app import create_app
    from ..web.lean_http import LeanHttpToolsProtocol

    host, port = sock.getsockname()[:2]
    platform = create_platform(settings)
    await _open_events(platform)
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    platform.public_url = settings.public_url or f"http://{shown_host}:{port}"
    admin = await _cli_key(platform)
    app = create_app(platform)
    config = uvicorn.Config(
        app, log_config=None, log_level="warning", loop="none", access_log=False,
        lifespan="on", timeout_graceful_shutdown=3,
        http=LeanHttpToolsProtocol,  # less memory per open connection (device streams)
    )  # fmt: skip
    server = _uvicorn_server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C forces the exit
        loop.add_signal_handler(sig, server.handle_exit, sig, None)
    info = {
        "url": platform.public_url, "pid": os.getpid(), "admin_key": admin, "dev": settings.dev,
    }  # fmt: skip
    info_path = write_server_file(settings.data_dir, info)
    demo_info: dict[str, Any] | None = None
    pauses: PauseTimer | None = None
    try:
        serve_task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if serve_task.done():
                with contextlib.suppress(SystemExit):
                    await serve_task
                raise StartRefused("the server did not start (the log above says why)")
            await asyncio.sleep(0.05)
        mode = "dev mode" if settings.dev else "production mode"
        console.print(  # one line whatever the width (a log collector greps it)
            f"Miniport serving on [bold]{platform.public_url}[/bold] "
            f"(data: {settings.data_dir.resolve()}, {mode})",
            soft_wrap=True,
        )
        if demo_sock is not None:
            demo_info = await _setup_demo(platform, demo_sock)
            _print_demo(demo_info, platform.public_url)
        else:
            await _first_run_hint(platform, settings.data_dir)
        from ..gc_tuning import PauseTimer, end_serving, tune_for_serving
        from ..web.app import warm_routes

        warm_routes(app.router.routes)  # not at the first request through each router
        tune_for_serving()  # after start-up: what it built is never scanned again
        pauses = PauseTimer(platform.metrics.gc_paused).install()  # GET /metrics shows them
        await serve_task
    finally:
        if pauses is not None:
            pauses.remove()
            end_serving()
        if demo_info is not None:
            await demo_info["runner"].cleanup()
        with contextlib.suppress(OSError):
            info_path.unlink()


async def _first_run_hint(platform: Platform, data_dir: Path) -> None:
    """A data directory with no console user yet: how to make the first one (the console's
    sign-in page cannot)."""
    if await platform.console_users.list_users():
        return
    console.print(
        "no console user yet: `miniport admin create NAME --data-dir "
        f"{data_dir}` makes an admin (it prints a one-time password)",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )


async def _open_events(platform: Platform) -> None:
    """Open the events database now: held by another process, damaged, or made by a newer
    version, the start ends here."""
    import asyncio

    import duckdb

    try:
        await asyncio.to_thread(lambda: platform.analytics.store)
    except (duckdb.Error, SchemaTooNew) as exc:
        await platform.close()
        raise StartRefused(events_refusal(platform.settings.events_path, exc)) from None


def events_refusal(path: Path, exc: Exception) -> str:
    """Why the events database cannot be opened: DuckDB's lock held by another process (the
    one case where waiting helps), or its own reason (a damaged file, one it cannot read)."""
    if isinstance(exc, SchemaTooNew):
        return exc.message
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if "Could not set lock" in reason or "Conflicting lock" in reason:
        return (
            f"the events database {path} is held by another process "
            "(a `miniport` command still running?): wait for it, or stop it"
        )
    return f"the events database {path} is damaged or unreadable: {reason}"


def cli_key_id(data_dir: Path) -> str:
    """The id of the CLI key of one node: one per host and data directory, so that nodes
    sharing one PostgreSQL do not replace (and so revoke) each other's key."""
    import hashlib

    node = f"{socket.gethostname()}:{data_dir.resolve()}"
    return "local-" + hashlib.sha256(node.encode()).hexdigest()[:12]


async def _cli_key(platform: Platform) -> str:
    """The CLI's key to this server: created once per data directory (kept in ``cli.key``,
    readable by its owner only) and reused at every start, so starts add no audit entries."""
    from ..errors import Unauthorized

    path = platform.settings.data_dir / CLI_KEY_FILE
    with contextlib.suppress(OSError, Unauthorized):
        kept = path.read_text().strip()
        if (await platform.auth.api_principal(kept)).name == "key:local-cli":
            return kept
    key_id = cli_key_id(platform.settings.data_dir)
    made = await platform.auth.create_key("api", "local-cli", "admin", key_id=key_id)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(str(made["key"]))
    return str(made["key"])


async def _worker(settings: Settings) -> None:
    import asyncio

    from ..platform import create_platform

    platform = create_platform(settings)
    await platform.start()
    engine = platform.make_engine()
    from ..gc_tuning import end_serving, tune_for_serving

    tune_for_serving()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    console.print(f"Miniport worker fetching for {settings.state_url.split('@')[-1]}")
    wakes = asyncio.create_task(platform.apps.wake_loop(stop))
    try:
        await engine.run(stop)
    finally:
        stop.set()
        await wakes
        await platform.close()
        end_serving()


class LogFormat(StrEnum):
    human = "human"
    json = "json"


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


LogFormatOption = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        help="Log lines: human (readable) or json (one object per line, for log shippers)",
    ),
]
LogLevelOption = Annotated[
    LogLevel,
    typer.Option("--log-level", help="Least severe level logged (info: every request and fetch)"),
]


def _start(settings: Settings, host: str, port: int, demo_port: int | None) -> None:
    """Lock the data directory, bind the ports, then serve; a refusal is one line, exit 2."""
    import asyncio  # here: ``miniport --help`` never needs it

    try:
        with contextlib.ExitStack() as held:
            held.enter_context(holding(settings.data_dir))
            sock = held.enter_context(listening(host, port, "the server", "--port"))
            demo_sock = None
            if demo_port is not None:
                demo_sock = held.enter_context(
                    listening("127.0.0.1", demo_port, "the demo's developer server", "--demo-port")
                )
            _install_uvloop()
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(_serve(settings, sock, demo_sock))
    except (StartRefused, StateUnavailable, SchemaTooNew) as exc:
        refuse(exc)


def refuse(exc: Exception) -> NoReturn:
    """A start refused: one line on stderr, exit status 2."""
    err_console.print(f"[red]error[/red]: {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        host: Annotated[str, typer.Option("--host", help="Address to listen on")] = "127.0.0.1",
        port: Annotated[
            int, typer.Option("--port", min=0, max=65535, help="Port to listen on")
        ] = 8700,
        dev: Annotated[
            bool,
            typer.Option(
                "--dev",
                envvar="MINIPORT_DEV",
                help="Let the fetcher reach loopback; accept http data URLs",
            ),
        ] = False,
        demo: Annotated[
            bool,
            typer.Option(
                "--demo", help="Also run a sample developer server and a demo app (implies --dev)"
            ),
        ] = False,
        demo_port: Annotated[
            int,
            typer.Option(
                "--demo-port", min=0, max=65535,
                help="Port of the demo's developer server (loopback)",
            ),
        ] = DEMO_PORT,
        log_format: LogFormatOption = LogFormat.human,
        log_level: LogLevelOption = LogLevel.info,
        data_dir: DataDir = None,
    ) -> None:
        """Run the API, console, scheduler and fetch workers in one process."""
        logs.configure(log_format, log_level)
        settings = settings_for(data_dir, dev=True if (dev or demo) else None)
        _start(settings, host, port, demo_port if demo else None)

    @app.command("worker")
    def worker(
        dev: Annotated[
            bool,
            typer.Option("--dev", envvar="MINIPORT_DEV", help="Let the fetcher reach loopback"),
        ] = False,
        log_format: LogFormatOption = LogFormat.human,
        log_level: LogLevelOption = LogLevel.info,
        data_dir: DataDir = None,
    ) -> None:
        """Run periodic fetch workers alone (several may share one PostgreSQL database)."""
        import asyncio  # here: ``miniport --help`` never needs it

        logs.configure(log_format, log_level)
        settings = settings_for(data_dir, dev=True if dev else None)
        _install_uvloop()
        try:
            with _worker_lock(settings):
                asyncio.run(_worker(settings))
        except (StartRefused, SchemaTooNew) as exc:
            refuse(exc)


def _worker_lock(settings: Settings) -> contextlib.AbstractContextManager[None]:
    """On SQLite, the data directory's workers' lock (shared: workers and a server run side by
    side), which a restore takes exclusively: it replaced the files under a running worker,
    whose writes then went to the deleted ones. On PostgreSQL, none: nothing to restore."""
    if settings.database_url:
        return contextlib.nullcontext()

    def refused() -> StartRefused:
        return StartRefused(
            f"a restore is replacing the files of {settings.data_dir.resolve()}: start the"
            " worker once it is done"
        )

    return working(settings.data_dir, refused)
