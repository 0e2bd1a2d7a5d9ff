"""Console and API-key roles. Pure: ``ROLES`` is ordered from the most to the least power, and a
role can do whatever any role after it can."""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("admin", "developer", "viewer")


@dataclass(frozen=True)
class Principal:
    """Who is calling an admin endpoint, and with which role."""

    name: str
    role: str

    def can(self, needed: str) -> bool:
        return ROLES.index(self.role) <= ROLES.index(needed)
