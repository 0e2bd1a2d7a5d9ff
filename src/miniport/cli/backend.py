"""Where a CLI command runs: the admin API of the server running on the data directory, or the
service layer of a platform opened here. Chosen in one place, :func:`choose_backend`.

Why two: DuckDB (the events store) lets one process open it, and devices connect to the
server, so while ``miniport serve`` runs on the data directory (its ``server.json`` present and
the server answering) commands are calls to its admin API, with the key it wrote for the CLI;
when none runs, the same operation runs here. Both sides of each operation live in one table
(:mod:`.operations`) and return the same value. aiohttp, the platform and DuckDB are imported
only when a backend needs them, so ``miniport --help`` stays quick."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import InvalidInput, MiniportError, Problem, ServerNotRunning
from .common import err_console, fail, is_utf8, read_server_file, settings_for
from .wording import reworded

if TYPE_CHECKING:
    from .operations import Operation


class CommandError(MiniportError):
    """An error as the server gave it: its code, its message and its ``path: message``
    problems (errors raised here locally reach ``fail`` as they are)."""

    def __init__(
        self, code: str, message: str, problems: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message, [Problem(e["path"], e["message"]) for e in problems or []])
        self.code = code


class Backend(Protocol):
    async def call(self, op: Operation, params: dict[str, Any]) -> Any: ...


@dataclass(frozen=True)
class Server:
    url: str
    admin_key: str
    dev: bool | None = None  # None: a server too old to say


@dataclass(frozen=True)
class HttpBackend:
    """The running server's admin API."""

    server: Server

    async def call(self, op: Operation, params: dict[str, Any]) -> Any:
        assert op.route is not None
        route = op.route(params)
        return await admin_request(
            self.server.url,
            self.server.admin_key,
            route.method,
            route.path,
            body=route.body,
            params=route.query,
            text=route.text,
        )


@dataclass(frozen=True)
class LocalBackend:
    """A platform opened here on the data directory, for one operation."""

    data_dir: Path | None

    async def call(self, op: Operation, params: dict[str, Any]) -> Any:
        from sqlalchemy.exc import DBAPIError

        from ..platform import create_platform

        assert op.local is not None
        settings = settings_for(self.data_dir)
        try:
            platform = create_platform(settings)
        except DBAPIError as exc:  # not a database, unreadable (its migration at the start)
            raise _state_error(settings.state_url, exc) from exc
        info = read_server_file(settings.data_dir)
        if info and not settings.public_url:
            platform.public_url = str(info["url"])
        await platform.start(fetcher=False)  # opened at a first fetch: aiohttp is slow to import
        try:
            return await op.local(platform, params)
        except DBAPIError as exc:  # a file made read-only, damaged: not a traceback
            raise _state_error(settings.state_url, exc) from exc
        except Exception as exc:
            if _is_duckdb_error(exc):  # e.g. the events file locked by another process
                raise CommandError("events_store", f"events database: {exc}") from exc
            raise
        finally:
            await platform.close()


def _state_error(url: str, exc: Exception) -> CommandError:
    """The state database refused the work (a file that is not a database, made read-only):
    where it is and the driver's reason, on one line."""
    from sqlalchemy import make_url

    reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["?"])[0]
    parsed = make_url(url)
    # SQLite: the file's path as the user typed it (the URL quotes ' ', '#', non-ASCII...)
    shown = parsed.database if parsed.get_backend_name() == "sqlite" else None
    shown = shown or parsed.render_as_string(hide_password=True)
    return CommandError("state_store", f"state database {shown}: {reason}")


def _is_duckdb_error(exc: Exception) -> bool:
    """Whether ``exc`` is DuckDB's, without importing DuckDB (heavy) for the commands that
    never open the events file: none of its errors can have been raised unless it is loaded."""
    duckdb = sys.modules.get("duckdb")
    return duckdb is not None and isinstance(exc, duckdb.Error)


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
    import aiohttp

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
                message = str(data.get("message") or data.get("detail") or f"HTTP {resp.status}")
                raise CommandError(
                    str(data.get("error") or f"http_{resp.status}"),
                    reworded(message) if data.get("error") == "invalid_input" else message,
                    _reworded_problems(data) if data.get("error") == "invalid_input" else
                    data.get("problems") or data.get("errors"),
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


def _reworded_problems(data: dict[str, Any]) -> list[dict[str, str]]:
    """The server's request-validation problems in the CLI's words (not the validator's)."""
    out = []
    for p in data.get("problems") or data.get("errors") or []:
        path, message = str(p.get("path", "")), str(p.get("message", ""))
        if not path:
            out.append({"path": "", "message": reworded(message)})
            continue
        flag, _, text = reworded(f"{path}: {message}").partition(": ")
        out.append({"path": flag, "message": text})
    return out


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _answers(url: str) -> bool:
    import aiohttp

    try:
        timeout = aiohttp.ClientTimeout(total=3)
        async with aiohttp.ClientSession(timeout=timeout) as s, s.get(url + "/healthz") as r:
            return r.status < 500
    except (aiohttp.ClientError, TimeoutError):
        return False


def _held_by_a_server(data_dir: Path) -> bool | None:
    """Whether a server holds the data directory's lock (``serve.lock``, which ``serve`` takes
    before it writes ``server.json`` and holds while it runs); None when this process cannot
    tell (the lock file cannot be opened: a read-only directory, another user's file)."""
    from ..storage.data_dir import holding

    class _Held(Exception):
        pass

    try:
        with holding(data_dir, _Held, wait_s=0):  # a probe: no waiting
            return False
    except _Held:
        return True
    except OSError:
        return None


def running_server(data_dir: Path | None) -> Server | None:
    """The server running on this data directory, or None. A ``server.json`` left by a server
    that is gone (its process gone, or no server holding the data directory's lock: its pid
    reused by another process) is ignored, whatever answers at its address now (another
    server, another program: its answers were taken for this server's); one whose process
    lives, holding the lock, but does not answer is an error (opening the events file here
    would fail on its lock)."""
    settings = settings_for(data_dir)
    info = read_server_file(settings.data_dir)
    if not info or "url" not in info or "admin_key" not in info:
        return None
    if "pid" in info and not _alive(info["pid"]):
        return None
    if _held_by_a_server(settings.data_dir) is False:
        return None
    url = str(info["url"]).rstrip("/")
    import asyncio  # here, not at the top: ``miniport --help`` never needs it

    if asyncio.run(_answers(url)):
        dev = info.get("dev")
        return Server(url, str(info["admin_key"]), dev if isinstance(dev, bool) else None)
    if _alive(info.get("pid")):
        raise ServerNotRunning(
            f"a server (pid {info.get('pid')}) is registered on {settings.data_dir} at {url}"
            " but does not answer; wait for it or stop it"
        )
    return None


def choose_backend(data_dir: Path | None, op: Operation) -> Backend:
    """The one switch: the running server's admin API for every operation it has a route for,
    the local platform otherwise. An operation without a route (``why_local``) runs here even
    beside a server; one without a local side (``why_server``) needs the server."""
    if op.route is None:
        return LocalBackend(data_dir)
    server = running_server(data_dir)
    if server is not None:
        _note_mode(data_dir, server)
        return HttpBackend(server)
    if op.local is None:
        settings = settings_for(data_dir)
        command = "miniport " + op.name.replace(".", " ")  # as typed: `miniport devtools push`
        raise ServerNotRunning(
            f"no server is running on {settings.data_dir}: `{command}` needs one ({op.why_server})"
        )
    return LocalBackend(data_dir)


def _note_mode(data_dir: Path | None, server: Server) -> None:
    """The server decides the mode (it runs the command); say so when this shell asked for
    another (``--dev`` or ``MINIPORT_DEV``)."""
    asked = settings_for(data_dir).dev
    if server.dev is None or server.dev == asked:
        return
    mode = "dev mode" if server.dev else "production mode (not dev mode)"
    err_console.print(
        f"note: the server at {server.url} runs in {mode}; this command follows it",
        highlight=False,
        soft_wrap=True,
    )


def call(data_dir: Path | None, as_json: bool, op_name: str, /, **params: Any) -> Any:
    """Run operation ``op_name`` on the chosen backend; any error exits 1 with a clear
    message."""
    import asyncio  # here, not at the top: ``miniport --help`` never needs them

    from .operations import OPERATIONS

    op = OPERATIONS[op_name]
    try:
        for name, value in params.items():  # not UTF-8: a traceback from deep down, else
            texts = value if isinstance(value, list | tuple) else [value]
            if any(isinstance(t, str) and not is_utf8(t) for t in texts):
                raise InvalidInput(f"{name} is not valid UTF-8 text: {value!r}")
        backend = choose_backend(data_dir, op)
        return asyncio.run(backend.call(op, params))
    except MiniportError as exc:
        fail(as_json, exc)
