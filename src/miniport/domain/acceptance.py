"""Accepting (or refusing) a developer server's response (pure).

The fetch client feeds the body in chunks as it streams; ``BodyLimit`` refuses it the moment it
passes the limit, so an oversized body is never held whole. Each outcome is a ``Verdict`` with a
distinct name that the fetch log, the devtools and the HTTP API show."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    CACHED = "cached"  # a 2xx text body, stored
    NOT_MODIFIED = "not_modified"  # 304 to a conditional GET; the cached body stays
    HTTP_ERROR = "http_error"  # a status other than 2xx / 304
    TIMEOUT = "timeout"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    BAD_REDIRECT = "bad_redirect"  # a redirect without a usable http(s) Location
    OVERSIZE = "oversize"
    BAD_ENCODING = "bad_encoding"  # not UTF-8 text
    BLOCKED_ADDRESS = "blocked_address"  # the SSRF guard refused the resolved address
    CONNECTION_ERROR = "connection_error"  # refused, reset, DNS failure, TLS failure
    TOKEN_NOT_SET = "token_not_set"
    NO_URL = "no_url"  # the kind's URL is not set or not enabled
    HOST_BACKOFF = "host_backoff"  # the whole host is resting after repeated failures

    @property
    def ok(self) -> bool:
        return self in (Verdict.CACHED, Verdict.NOT_MODIFIED)


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Collects a streamed body up to ``max_bytes``; raises BodyTooLarge past it."""

    __slots__ = ("_chunks", "max_bytes", "size")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._chunks: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self._chunks.clear()
            raise BodyTooLarge(f"body exceeds {self.max_bytes} bytes")
        self._chunks.append(chunk)

    def body(self) -> bytes:
        return b"".join(self._chunks)


_TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml")


@functools.lru_cache(maxsize=256)
def content_type_is_text(content_type: str | None) -> bool:
    """No Content-Type is taken as text; a declared binary type is refused as bad encoding."""
    if not content_type:
        return True
    main = content_type.split(";", 1)[0].strip().lower()
    return main.startswith(_TEXT_TYPES) or main.endswith(("+json", "+xml"))


@functools.lru_cache(maxsize=256)
def declared_charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset":
            return value.strip().strip('"').lower()
    return None


@dataclass(frozen=True)
class Decoded:
    text: str | None
    error: str | None


def decode_body(body: bytes, content_type: str | None) -> Decoded:
    """The body as UTF-8 text, or the reason it is not."""
    if not content_type_is_text(content_type):
        return Decoded(None, f"content type {content_type!r} is not text")
    charset = declared_charset(content_type)
    if charset not in (None, "utf-8", "utf8", "us-ascii", "ascii"):
        return Decoded(None, f"charset {charset!r} is not UTF-8")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Decoded(None, f"body is not valid UTF-8 (byte {exc.start})")
    if "\x00" in text:  # not text, and PostgreSQL cannot store it
        return Decoded(None, f"body contains a NUL character (byte {body.index(0)})")
    return Decoded(text, None)


def status_verdict(status: int, *, conditional: bool = True) -> Verdict | None:
    """None when the status is acceptable and the body should be read. A 304 only answers a
    conditional request; to any other it is an error (there is nothing cached to keep)."""
    if 200 <= status < 300:
        return None
    if status == 304 and conditional:
        return Verdict.NOT_MODIFIED
    return Verdict.HTTP_ERROR
