"""Web origins for the CORS allow-list (pure). An origin is compared exactly, as browsers send it
in the Origin header: ``scheme://host[:port]``, lower-case, no path, no default port, no
wildcard. A malformed entry is refused when the settings are read, not silently never matched."""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def check_origin(origin: str) -> str:
    """Return ``origin`` if it is one exact web origin, else raise ValueError saying why."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"CORS origin {origin!r} cannot be parsed: {exc}") from exc
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"CORS origin {origin!r} must be http(s)://host[:port]")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"CORS origin {origin!r} must be only scheme://host[:port], no path")
    if "*" in origin or origin != origin.lower():
        raise ValueError(f"CORS origin {origin!r} must be exact and lower-case (no wildcard)")
    if port == DEFAULT_PORTS[parts.scheme]:
        raise ValueError(f"CORS origin {origin!r}: leave out the default port, as browsers do")
    return origin
