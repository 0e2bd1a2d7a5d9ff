"""How the ClickHouse event store talks to ClickHouse: over the HTTP interface, or in-process
through chDB (tests and tools).

Client choice: ``urllib3`` straight against the HTTP interface. ``clickhouse-connect`` (the
usual Python client) was tried first and does not work against the oldest server we
support: its connection start-up reads ``system.settings.readonly``, a column ClickHouse
18.16 does not have, so ``get_client`` fails before any query. urllib3 is the well-kept
HTTP library under ``requests`` (thread-safe connection pools, keep-alive, TLS with a CA
file, retries); the formats we use (``JSONCompact`` out, ``TabSeparated`` in) exist
unchanged from 18.16 to the current engine. Values are rendered as escaped literals by
:func:`miniport.analytics.sql_dialects.render_clickhouse` (18.16 has no server-side query
parameters). Long lists of values (the event ids of an ingest's dedup checks) go as
external data instead (:class:`ExternalTable`: a TabSeparated table sent with the query in a
``multipart/form-data`` body, which 18.16 reads as a temporary table): no SQL literal to
render on our side nor to parse on the server's.

Errors: a server that cannot be reached (refused, reset, timed out) or that answers that it
is overloaded raises :class:`~miniport.errors.AnalyticsUnavailable` (HTTP 503 at the API);
any other server error raises :class:`ClickHouseError` with the server's message. A
connection that could not be made is tried again; a statement that went out and whose
answer never came back (connection reset, read timeout) is sent again only when it only
reads (``SELECT``, ``WITH``, ``SHOW``, ``DESCRIBE``, ``EXISTS``): ClickHouse may have run the
first one. A second insert of a new batch would be counted twice until a merge (its ids are
claimed, not listed for read-time deduplication; 18.16 has no insert deduplication outside
replicated tables), a second ``ATTACH PARTITION ... FROM`` would attach a month twice. Such a
statement fails instead (the client's retry of an insert finds its ids claimed and looks them
up), including in the rare case of a pooled connection that the server closed just as the
statement went out. When no attempt got as far as a
connection (refused, or the connect timed out), the error is :class:`NotSent`: the statement
certainly never reached the server, which lets the store release the ids it claimed for an
insert (see ``clickhouse_store``) instead of looking them up and listing them on the retry.

URL: ``clickhouse://USER:PASSWORD@HOST:PORT/DATABASE`` (``clickhouses://`` for TLS; query
``?ca_file=PATH`` to trust a private CA; default ports 8123 / 8443; database ``default``).
"""

from __future__ import annotations

import importlib
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Protocol
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import urllib3

from ..errors import AnalyticsUnavailable, InvalidInput

__all__ = [
    "ChdbTransport",
    "ClickHouseError",
    "ClickHouseURL",
    "ExternalTable",
    "HttpTransport",
    "NotSent",
    "Transport",
    "parse_clickhouse_url",
]

# Server error codes that mean "try again later", not "your query is wrong".
_UNAVAILABLE_CODES: Final = frozenset({159, 202, 209, 210, 241, 252, 394})
_MAX_QUERY_SIZE: Final = 64 * 1024 * 1024


class ClickHouseError(RuntimeError):
    """ClickHouse refused a statement (a bug or a schema problem, not an outage)."""


class NotSent(AnalyticsUnavailable):
    """ClickHouse could not be reached, and no attempt got as far as a connection: the
    statement certainly never reached the server (nothing of an insert was stored)."""


class _Attempts(urllib3.Retry):
    """urllib3's retries of one request, keeping the error of each failed attempt (urllib3
    makes a new Retry per attempt through ``new``: they share the list)."""

    failures: list[Exception | None]

    def new(self, **kw: Any) -> _Attempts:
        retry = super().new(**kw)
        retry.failures = self.failures
        return retry

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: TracebackType | None = None,
    ) -> _Attempts:
        self.failures.append(error)
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def never_connected(self, raised: Exception) -> bool:
        """Whether every attempt failed before a connection was made (refused, no route, a
        connect timeout: urllib3's NewConnectionError is a ConnectTimeoutError), ``raised``
        (what urlopen raised) included: some errors after a send (a body that does not
        decode) leave urlopen without being counted as an attempt."""
        connect = urllib3.exceptions.ConnectTimeoutError
        last = raised.reason if isinstance(raised, urllib3.exceptions.MaxRetryError) else raised
        return (
            isinstance(last, connect)
            and bool(self.failures)
            and all(isinstance(e, connect) for e in self.failures)
        )


@dataclass(frozen=True, slots=True)
class ClickHouseURL:
    host: str
    port: int
    user: str
    password: str
    database: str
    tls: bool
    ca_file: str | None

    def redacted(self) -> str:
        scheme = "clickhouses" if self.tls else "clickhouse"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{self.database}"


def parse_clickhouse_url(url: str, ca_file: str | None = None) -> ClickHouseURL:
    """Parse ``clickhouse[s]://USER:PASSWORD@HOST:PORT/DATABASE[?ca_file=PATH]``; ``ca_file``
    (the settings' ``MINIPORT_ANALYTICS_CA_FILE``) applies unless the URL names one."""
    parts = urlsplit(url)
    if parts.scheme not in ("clickhouse", "clickhouses"):
        raise InvalidInput(
            f"analytics URL must start with clickhouse:// or clickhouses://: {url!r}"
        )
    tls = parts.scheme == "clickhouses"
    if not parts.hostname:
        raise InvalidInput("analytics URL has no host")
    database = unquote(parts.path.lstrip("/")) or "default"
    if not database.replace("_", "").isalnum() or not database.isascii():
        raise InvalidInput(f"analytics database name {database!r}: letters, digits and _ only")
    query = parse_qs(parts.query)
    try:
        port = parts.port or (8443 if tls else 8123)
    except ValueError as exc:
        raise InvalidInput(f"analytics URL has an invalid port: {exc}") from exc
    return ClickHouseURL(
        host=parts.hostname,
        port=port,
        user=unquote(parts.username or "default"),
        password=unquote(parts.password or ""),
        database=database,
        tls=tls,
        ca_file=query.get("ca_file", [ca_file])[0],
    )


@dataclass(frozen=True, slots=True)
class ExternalTable:
    """A table sent along with a query (ClickHouse's "external data"): ``name`` is how the
    query reads it, ``structure`` its columns (``"appid String, uid String"``), ``data`` its
    rows as TabSeparated text."""

    name: str
    structure: str
    data: bytes


class Transport(Protocol):
    """Runs one statement; ``data`` is the body of an ``INSERT ... FORMAT`` statement.
    ``in_database=False`` runs it outside the store's database (to create it); ``tables``
    are read by the statement (a SELECT) as temporary tables of those names.
    ``binary_inserts``: whether ``data`` may be binary (RowBinary), not only text."""

    database: str
    binary_inserts: bool

    def execute(
        self,
        sql: str,
        data: bytes | None = None,
        *,
        in_database: bool = True,
        tables: Sequence[ExternalTable] = (),
    ) -> bytes: ...

    def close(self) -> None: ...


class HttpTransport:
    """ClickHouse's HTTP interface through one urllib3 connection pool (thread-safe)."""

    binary_inserts = True  # the body goes as it is

    def __init__(
        self,
        url: ClickHouseURL,
        *,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 300.0,
        pool_size: int = 32,
    ) -> None:
        self.url = url
        self.database = url.database
        kwargs: dict[str, Any] = {
            "maxsize": pool_size,
            "block": False,
            "timeout": urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            "headers": urllib3.make_headers(basic_auth=f"{url.user}:{url.password}"),
        }
        if url.tls:
            self._pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
                url.host, url.port, cert_reqs="CERT_REQUIRED", ca_certs=url.ca_file, **kwargs
            )
        else:
            self._pool = urllib3.HTTPConnectionPool(url.host, url.port, **kwargs)

    def execute(
        self,
        sql: str,
        data: bytes | None = None,
        *,
        in_database: bool = True,
        tables: Sequence[ExternalTable] = (),
    ) -> bytes:
        fields: dict[str, str] = {"max_query_size": str(_MAX_QUERY_SIZE)}
        if in_database:
            fields["database"] = self.database
        headers = None
        if tables:
            if data is not None:
                raise ValueError("external tables go with a query, not with an insert's data")
            fields["query"] = sql
            body, content_type = _multipart(tables, fields)
            headers = {**self._pool.headers, "Content-Type": content_type}
        elif data is None:
            body = sql.encode()
        else:
            fields["query"] = sql
            body = data
        attempts = _Attempts(
            total=2, connect=2, read=1 if _only_reads(sql) else 0, status=0, redirect=0,
            allowed_methods=None, backoff_factor=0.05,
        )  # fmt: skip
        attempts.failures = []
        try:
            response = self._pool.urlopen(
                "POST", "/?" + urlencode(fields), body=body, headers=headers, retries=attempts
            )
        except urllib3.exceptions.HTTPError as exc:
            error = NotSent if attempts.never_connected(exc) else AnalyticsUnavailable
            raise error(
                f"ClickHouse at {self.url.host}:{self.url.port} is unreachable: "
                f"{type(exc).__name__}"
            ) from exc
        if response.status != 200:
            raise _server_error(response.status, response.data.decode(errors="replace"))
        return bytes(response.data)

    def close(self) -> None:
        self._pool.close()


_READS: Final = ("SELECT", "WITH", "SHOW", "DESCRIBE", "EXISTS")


def _only_reads(sql: str) -> bool:
    """Whether ``sql`` only reads (safe to send twice). Anything else (``INSERT``, ``ALTER``,
    ``ATTACH``, ``RENAME`` ...) is never sent again once it went out."""
    first = sql.lstrip().split(None, 1)
    return bool(first) and first[0].upper() in _READS


def _multipart(tables: Sequence[ExternalTable], fields: dict[str, str]) -> tuple[bytes, str]:
    """The ``multipart/form-data`` body of external tables (one file part each, described by
    the ``NAME_structure`` / ``NAME_format`` URL parameters added to ``fields``), and its
    content type. The boundary is random and checked against the data."""
    while True:
        boundary = secrets.token_hex(16)
        marker = boundary.encode()
        if not any(marker in table.data for table in tables):
            break
    parts: list[bytes] = []
    for table in tables:
        fields[f"{table.name}_structure"] = table.structure
        fields[f"{table.name}_format"] = "TabSeparated"
        parts.append(
            b"--" + marker + b"\r\nContent-Disposition: form-data; name=\"" + table.name.encode()
            + b"\"; filename=\"" + table.name.encode() + b"\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + table.data + b"\r\n"
        )  # fmt: skip
    parts.append(b"--" + marker + b"--\r\n")
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _server_error(status: int, text: str) -> Exception:
    message = text.strip()[:2000]
    code = None
    if message.startswith("Code: "):
        digits = message[6:].split(",", 1)[0].split(".", 1)[0]
        code = int(digits) if digits.isdigit() else None
    if status in (502, 503, 504) or code in _UNAVAILABLE_CODES:
        return AnalyticsUnavailable(f"ClickHouse is overloaded or restarting: {message[:200]}")
    return ClickHouseError(f"ClickHouse answered {status}: {message}")


class ChdbTransport:
    """The current ClickHouse engine in-process (chDB), on a directory of its own. chDB
    sessions are not thread-safe: statements run one at a time."""

    binary_inserts = False  # its data is appended to the statement's text

    def __init__(self, path: str, database: str = "miniport") -> None:
        # optional dependency (tests and tools); chdb has no type hints
        session: Any = importlib.import_module("chdb.session")
        self.database = database
        self._lock = threading.Lock()
        self._session: Any = session.Session(path)
        self._session.query(f"SET max_query_size = {_MAX_QUERY_SIZE}")

    def execute(
        self,
        sql: str,
        data: bytes | None = None,
        *,
        in_database: bool = True,
        tables: Sequence[ExternalTable] = (),
    ) -> bytes:
        text = sql if data is None else sql + "\n" + data.decode()
        with self._lock:
            if in_database:
                self._session.query(f"USE {self.database}")
            else:
                self._session.query("USE default")
            try:
                for table in tables:  # external data: a temporary table of the session
                    self._session.query(f"DROP TEMPORARY TABLE IF EXISTS {table.name}")
                    self._session.query(f"CREATE TEMPORARY TABLE {table.name} ({table.structure})")
                    self._session.query(
                        f"INSERT INTO {table.name} FORMAT TabSeparated\n" + table.data.decode()
                    )
                try:
                    result = self._session.query(text, "JSONCompact")
                finally:
                    for table in tables:
                        self._session.query(f"DROP TEMPORARY TABLE IF EXISTS {table.name}")
            except Exception as exc:  # chdb raises its own error types
                raise ClickHouseError(str(exc)) from exc
        return bytes(result.bytes()) if result is not None else b""

    def close(self) -> None:
        with self._lock:
            self._session.close()
