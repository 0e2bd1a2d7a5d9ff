"""What every CLI command shares: --data-dir, --json, building the platform, printing results
and errors, and finding a running server for commands that need one."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import aiohttp
import typer
from rich.console import Console

from ..config import Settings
from ..errors import MiniportError, ServerNotRunning
from ..platform import Platform, create_platform

T = TypeVar("T")
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", envvar="MINIPORT_DATA_DIR", help="Data directory [default: ./miniport-data]"
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object")]
SERVER_FILE = "server.json"

console = Console()
err_console = Console(stderr=True)


def settings_for(data_dir: Path | None, **overrides: Any) -> Settings:
    return Settings.from_env(data_dir=data_dir, **overrides)


def read_server_file(data_dir: Path) -> dict[str, Any] | None:
    path = data_dir / SERVER_FILE
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def write_server_file(data_dir: Path, info: dict[str, Any]) -> Path:
    path = data_dir / SERVER_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(info, handle)
    return path


def emit(as_json: bool, value: dict[str, Any], human: Callable[[], None] | None = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")
    elif human is not None:
        human()
    else:
        for key, item in value.items():
            console.print(f"[bold]{key}[/bold]: {item}")


def fail(as_json: bool, exc: MiniportError) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"error": exc.code, "message": exc.message}) + "\n")
    else:
        err_console.print(f"[red]error[/red]: {exc.message}")
    raise typer.Exit(1)


def run_with_platform(
    data_dir: Path | None, as_json: bool, work: Callable[[Platform], Awaitable[T]]
) -> T:
    """Build the platform on the data directory, run ``work``, close, and turn errors into a
    clear message and exit code 1."""
    settings = settings_for(data_dir)

    async def main() -> T:
        platform = create_platform(settings)
        info = read_server_file(settings.data_dir)
        if info and not settings.public_url:
            platform.public_url = str(info["url"])
        await platform.start()
        try:
            return await work(platform)
        finally:
            await platform.close()

    try:
        return asyncio.run(main())
    except MiniportError as exc:
        fail(as_json, exc)
        raise  # unreachable: fail() exits


def call_server(
    data_dir: Path | None, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Call the admin API of the server running on this data directory."""
    settings = settings_for(data_dir)
    info = read_server_file(settings.data_dir)
    if not info:
        raise ServerNotRunning(
            f"no server is running on {settings.data_dir} (start `miniport serve` first)"
        )

    async def go() -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {info['admin_key']}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            try:
                async with session.request(method, info["url"] + path, json=body) as resp:
                    data: dict[str, Any] = await resp.json(content_type=None)
                    if resp.status >= 400:
                        raise MiniportError(str(data.get("message") or data))
                    return data
            except aiohttp.ClientConnectionError as exc:
                raise ServerNotRunning(
                    f"the server at {info['url']} does not answer ({exc});"
                    " is `miniport serve` running?"
                ) from exc

    return asyncio.run(go())
