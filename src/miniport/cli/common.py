"""What every CLI command shares: --data-dir, --json, building the platform, printing results
and errors, and finding a running server for commands that need one."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import aiohttp
import typer
from rich.console import Console

from ..config import Settings
from ..errors import MiniportError, Problem, ServerNotRunning
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


def fail(as_json: bool, exc: MiniportError) -> NoReturn:
    """The CLI's one error renderer. Exit 1 with ``{"error", "message"[, "problems"]}``
    (--json; the problems also as ``"errors"``, the name used first) or readable lines, one per
    ``path: message`` problem."""
    if as_json:
        body = exc.as_dict()
        if exc.problems:
            body["errors"] = body["problems"]
        sys.stdout.write(json.dumps(body, ensure_ascii=False) + "\n")
    elif exc.problems:
        err_console.print(f"[red]error[/red]: {_heading(exc)}:", highlight=False)
        for p in exc.problems:
            where = f"[bold]{p.path}[/bold]: " if p.path else ""
            err_console.print(f"  {where}{p.message}", highlight=False)
    else:
        err_console.print(f"[red]error[/red]: {exc.message}", highlight=False)
    raise typer.Exit(1)


def _heading(exc: MiniportError) -> str:
    if exc.code == "invalid_definition":
        return "the definition is invalid"
    return "the input is invalid"


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


class CommandError(MiniportError):
    """An error as the server (or the local service) gave it: its code, its message and, for
    definition errors, each ``path: message``."""

    def __init__(self, code: str, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message, [Problem(e["path"], e["message"]) for e in errors or []])
        self.code = code
        self.errors = errors or []


async def admin_request(
    url: str,
    admin_key: str,
    method: str,
    path: str,
    *,
    body: Any = None,
    params: dict[str, str] | None = None,
    text: bool = False,
) -> Any:
    """One call to a running server's admin API: the JSON answer (or text, for CSV), or a
    CommandError carrying the server's error code, message and definition errors."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    timeout = aiohttp.ClientTimeout(total=300)
    try:
        async with (
            aiohttp.ClientSession(headers=headers, timeout=timeout) as session,
            session.request(method, url + path, json=body, params=params or None) as resp,
        ):
            if resp.status < 400 and text:
                return await resp.text()
            try:
                data = await resp.json(content_type=None)
            except ValueError:
                data = {"message": (await resp.text())[:500]}
            if resp.status >= 400:
                if not isinstance(data, dict):
                    data = {"message": str(data)}
                raise CommandError(
                    str(data.get("error") or f"http_{resp.status}"),
                    str(data.get("message") or data.get("detail") or f"HTTP {resp.status}"),
                    data.get("errors"),
                )
            return data
    except aiohttp.ClientError as exc:
        raise ServerNotRunning(
            f"the server at {url} does not answer ({exc}); is `miniport serve` running?"
        ) from exc
    except TimeoutError as exc:
        raise CommandError(
            "timeout", f"the server at {url} did not answer within {timeout.total:.0f} s"
        ) from exc


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
    result: dict[str, Any] = asyncio.run(
        admin_request(str(info["url"]), str(info["admin_key"]), method, path, body=body)
    )
    return result
