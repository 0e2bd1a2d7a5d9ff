"""Which runtime-token revocations a node has read (pure: no I/O).

A node reads the revocations numbered past the highest it has read. PostgreSQL numbers a row
when it is inserted, not when its transaction commits, so a revocation may commit after one
numbered later has been read: the numbers below the mark not read yet are kept as gaps and
read again, until found or for ``REVOCATION_GAP_S`` (then the number was rolled back)."""

from __future__ import annotations

from typing import Final

REVOCATION_GAP_S: Final = 120.0  # a number missing this long was rolled back: no longer looked for
MAX_REVOCATION_GAPS: Final = 1000


def next_revocation_marks(
    mark: int, gaps: dict[int, float], read: list[int], now: float
) -> tuple[int, dict[int, float]]:
    """The highest revocation number read and the numbers below it still missing (with when
    each was first missed), after reading the rows numbered ``read`` (past ``mark``, or among
    ``gaps``). A revocation numbered below one already read may commit after it: the
    "highest seen" mark alone passed it for good, and the revoked token went on working on
    every node that had read the later one."""
    seen = set(read)
    top = max([mark, *read])
    kept = {n: at for n, at in gaps.items() if n not in seen and now - at < REVOCATION_GAP_S}
    for n in range(max(mark + 1, top - MAX_REVOCATION_GAPS), top):
        if n not in seen:
            kept.setdefault(n, now)
    if len(kept) > MAX_REVOCATION_GAPS:
        kept = dict(sorted(kept.items())[-MAX_REVOCATION_GAPS:])
    return top, kept
