"""``miniport serve`` (API, console, scheduler and fetch workers in one process) and
``miniport worker`` (fetch workers alone, for scale-out). Both run only here, on the data
directory (never through a server's admin API). uvicorn, aiohttp and the platform are imported
when a command runs, not when the CLI starts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import DataDir, console, settings_for, write_server_file

if TYPE_CHECKING:
    import uvicorn

    from ..config import Settings
    from ..platform import Platform

DEMO_USER = "alice"


def _uvicorn_server(config: uvicorn.Config) -> uvicorn.Server:
    import uvicorn

    class _Server(uvicorn.Server):
        """uvicorn re-raises a caught SIGTERM after its shutdown, which kills the process
        before ``_serve`` cleans up (demo server, server.json); ``_serve`` handles the signals
        instead."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return _Server(config)


def _install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _setup_demo(platform: Platform, host: str, port: int) -> dict[str, Any]:
    """A sample developer server on loopback and a demo app wired to it."""
    from aiohttp import web

    from ..demo import make_demo_app

    secrets_of: dict[str, str] = {}
    runner = web.AppRunner(make_demo_app(secrets_of, platform.public_url), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    dev_port = runner.addresses[0][1]
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


async def _serve(settings: Settings, host: str, port: int, demo: bool) -> None:
    import uvicorn

    from ..platform import create_platform
    from ..web.app import create_app

    platform = create_platform(settings)
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    platform.public_url = settings.public_url or f"http://{shown_host}:{port}"
    # the CLI's key to this server; a fixed id, so each start replaces the last one
    admin = await platform.auth.create_key("api", "local-cli", "admin", key_id="local")
    app = create_app(platform)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        loop="none",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    server = _uvicorn_server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C forces the exit
        loop.add_signal_handler(sig, server.handle_exit, sig, None)
    info_path = write_server_file(
        settings.data_dir,
        {
            "url": platform.public_url,
            "pid": os.getpid(),
            "admin_key": admin["key"],
        },
    )
    demo_info: dict[str, Any] | None = None
    try:
        serve_task = asyncio.create_task(server.serve())
        while not server.started:
            if serve_task.done():
                with contextlib.suppress(SystemExit):
                    await serve_task
                console.print(
                    f"[red]error[/red]: could not listen on {host}:{port} "
                    "(is another server using that port?)"
                )
                raise typer.Exit(1)
            await asyncio.sleep(0.05)
        console.print(
            f"Miniport serving on [bold]{platform.public_url}[/bold] "
            f"(data: {settings.data_dir.resolve()}, dev mode: {settings.dev})"
        )
        if demo:
            demo_info = await _setup_demo(platform, host, port)
            _print_demo(demo_info, platform.public_url)
        from ..gc_tuning import tune_for_serving

        tune_for_serving()  # after start-up: what it built is never scanned again
        await serve_task
    finally:
        if demo_info is not None:
            await demo_info["runner"].cleanup()
        with contextlib.suppress(OSError):
            info_path.unlink()


async def _worker(settings: Settings) -> None:
    from ..platform import create_platform

    platform = create_platform(settings)
    await platform.start()
    engine = platform.make_engine()
    from ..gc_tuning import tune_for_serving

    tune_for_serving()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    console.print(f"Miniport worker fetching for {settings.state_url.split('@')[-1]}")
    try:
        await engine.run(stop)
    finally:
        await platform.close()


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations: quiet unless wrong


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port")] = 8700,
        dev: Annotated[
            bool,
            typer.Option(
                "--dev",
                envvar="MINIPORT_DEV",
                help="Let the fetcher reach loopback; accept http pre-fetch URLs",
            ),
        ] = False,
        demo: Annotated[
            bool,
            typer.Option(
                "--demo", help="Also run a sample developer server and a demo app (implies --dev)"
            ),
        ] = False,
        data_dir: DataDir = None,
    ) -> None:
        """Run the API, console, scheduler and fetch workers in one process."""
        _logging()
        settings = settings_for(data_dir, dev=True if (dev or demo) else None)
        _install_uvloop()
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(settings, host, port, demo))

    @app.command("worker")
    def worker(
        dev: Annotated[bool, typer.Option("--dev", envvar="MINIPORT_DEV")] = False,
        data_dir: DataDir = None,
    ) -> None:
        """Run periodic fetch workers alone (several may share one PostgreSQL database)."""
        _logging()
        settings = settings_for(data_dir, dev=True if dev else None)
        _install_uvloop()
        asyncio.run(_worker(settings))
