"""A funnel computed over fetched columns with numpy (pure: no I/O).

The DuckDB store runs SQL that filters an app's events to those matching some step and
fetches three columns (user hash, time, step bitmask); this module puts them in the funnel
order and follows the rules of :func:`miniport.analytics.reports.compile_funnel`:

* :func:`user_codes` maps each row's 64-bit user hash to a dense code (the store checks that
  no two users of the range share a hash, so a code is a user);
* :func:`order_rows` sorts the rows by (user, time, first step matched) as ONE packed
  ``uint64`` (a value sort, far cheaper than an argsort) and returns the runs of rows whose
  order the event id decides (same user, ms and first step, different steps matched);
  :func:`apply_tie_order` reorders them once the store has fetched their ids;
* :func:`funnel_users` follows every anchor's chain at once: per step, the next row matching
  it (a gather in that step's running count of rows, then in its sorted positions), strict
  or any order, within the window; per user the deepest level and the earliest anchor
  reaching it, whose chain (only those, one per user) gives the completion times;
* :func:`funnel_rows` counts users per level and group and takes the median time per step:
  rows ``(g, n1..nK, m1..m(K-1))`` (medians in ms), as the report's shape expects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import numpy.typing as npt

from .reports import CompiledFunnelScan

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "Fetch",
    "HashCollision",
    "OrderedRows",
    "UserPaths",
    "apply_tie_order",
    "duckdb_fetch",
    "funnel_rows",
    "funnel_users",
    "order_rows",
    "run_scan",
    "user_codes",
]

I32 = npt.NDArray[np.int32]
Pos = npt.NDArray[np.intp]  # row positions: numpy indexes with intp (an int32 index is converted)
I64 = npt.NDArray[np.int64]
Times = npt.NDArray[np.int64] | npt.NDArray[np.uint32]  # ms since the scan's base
U64 = npt.NDArray[np.uint64]
Mask = npt.NDArray[np.uint16]

_BUCKET_BITS = 20  # user-code lookup table: 2^20 int32 entries (4 MB)


def user_codes(row_hashes: U64, user_hashes: U64) -> I32:
    """Dense codes (0..len(user_hashes)-1, in sorted hash order) of each row's user hash.

    ``user_hashes``: sorted, the distinct hashes of the users of the rows (distinct users
    have distinct hashes: the caller checks; the rows and users come from one snapshot). A
    lookup table on the top bits of the hash answers most rows; rows whose bucket holds two
    users' hashes take a binary search. (numpy asks for huge pages on its large arrays: a
    fresh 80 MB one filled cost ~0.015 CPU s on the quiet VM, ~0.03 in 4 KB pages.)"""
    users = user_hashes
    shift = np.uint64(64 - _BUCKET_BITS)
    buckets = (users >> shift).astype(np.int64)
    table = np.full(1 << _BUCKET_BITS, -1, dtype=np.int32)
    table[buckets] = np.arange(len(users), dtype=np.int32)
    shared = buckets[1:][buckets[1:] == buckets[:-1]]
    table[shared] = -2  # a bucket of two or more users: binary search
    index = np.empty(len(row_hashes), dtype=np.uint32)
    np.right_shift(row_hashes, shift, out=index, casting="unsafe")
    codes = table[index]
    if len(shared):
        slow = np.flatnonzero(codes == -2)
        found = np.searchsorted(users, row_hashes[slow])
        wanted = row_hashes[slow]
        found = np.minimum(found, len(users) - 1)
        codes[slow] = np.where(users[found] == wanted, found, -1)
    if len(codes) and (len(users) == 0 or int(codes.min()) < 0):
        raise ValueError("a row's user is not among the users given")
    return codes


@dataclass(frozen=True, slots=True)
class OrderedRows:
    """Rows in funnel order: user code, time, steps matched (bit i: step i+1)."""

    user: I32
    t: Times
    mask: Mask
    ties: list[tuple[int, int]]
    """Runs ``[start, end)`` of rows with the same user, ms and first step matched but not
    the same steps: their order is the event ids' (see :func:`apply_tie_order`)."""
    same: npt.NDArray[np.bool_] | None = None
    """``same[i]``: rows i and i+1 have the same user, ms and first step (when known)."""


def first_steps(mask: Mask, k: int) -> npt.NDArray[np.uint8]:
    """Per row, the first step (0-based) its mask has (``k`` for an empty mask)."""
    table = np.full(1 << k, k, dtype=np.uint8)
    for m in range(1, 1 << k):
        table[m] = (m & -m).bit_length() - 1
    return table[mask]


def order_rows(
    user: I32, t: Times, mask: Mask, k: int, n_users: int, scratch: U64 | None = None
) -> OrderedRows:
    """Sort rows by (user, time, first step, mask): one packed uint64 value sort when it
    fits (user, time from the earliest, first step and mask bits), else a lexsort.

    Consumes its arguments: ``user``, ``t`` and ``scratch`` (a uint64 array of the rows'
    length, e.g. the fetched hashes, no longer needed) hold the sorted columns after."""
    n = len(t)
    if n == 0:
        return OrderedRows(user, t, mask, [])
    t_lo = int(t.min()) if t.dtype != np.uint32 else 0  # fetched times are >= 0: no pass
    t_bits = max(int(t.max() - t_lo).bit_length(), 1)
    r_bits = k.bit_length()  # first step 0..k-1 (k: an empty mask)
    u_bits = max(n_users - 1, 1).bit_length()
    if u_bits + t_bits + r_bits + k <= 64:
        low_of = first_steps(np.arange(1 << k, dtype=np.uint16), k).astype(np.uint16)
        low_of = (low_of << np.uint16(k)) | np.arange(1 << k, dtype=np.uint16)
        key = scratch if scratch is not None else np.empty(n, dtype=np.uint64)
        np.copyto(key, user, casting="unsafe")
        key <<= np.uint64(t_bits)
        if t_lo:
            t -= t_lo  # >= 0 from here on
        np.bitwise_or(key, t.view(np.uint64) if t.dtype == np.int64 else t, out=key)
        key <<= np.uint64(r_bits + k)
        low = low_of[mask]  # (first step, mask)
        np.bitwise_or(key, low, out=key)
        key.sort()
        s_mask = low
        np.bitwise_and(key, np.uint64((1 << k) - 1), out=s_mask, casting="unsafe")
        key >>= np.uint64(k)  # (user, time, first step)
        same = key[1:] == key[:-1]
        np.right_shift(key, np.uint64(r_bits), out=t, casting="unsafe")
        t &= (1 << t_bits) - 1
        if t_lo:
            t += t_lo
        key >>= np.uint64(t_bits + r_bits)
        np.copyto(user, key, casting="unsafe")
        s_user: I32 = user
        s_t: Times = t
    else:
        r = first_steps(mask, k)
        order = np.lexsort((mask, r, t, user))
        s_user, s_t, s_mask = user[order], t[order], mask[order]
        s_r = r[order]
        same = (s_user[1:] == s_user[:-1]) & (s_t[1:] == s_t[:-1]) & (s_r[1:] == s_r[:-1])
    pairs = np.flatnonzero(same & (s_mask[1:] != s_mask[:-1]))
    ties = _tie_runs(same, pairs) if len(pairs) else []
    return OrderedRows(s_user, s_t, s_mask, ties, same)


def _tie_runs(same: npt.NDArray[np.bool_], pairs: Pos) -> list[tuple[int, int]]:
    """The runs ``[start, end)`` of equal (user, time, first step) (``same[i]``: rows i
    and i+1 are equal) holding the ``pairs`` (rows p, p+1 equal, masks not): each pair
    widens both ways at once, a few rounds (the runs of all rows, one pass, as fallback)."""
    lo, hi = pairs.copy(), pairs + 1  # first and last row of the run so far
    last = len(same)  # the last row's index
    for _ in range(_WALK_ROUNDS):
        back = lo > 0
        back[back] = same[lo[back] - 1]
        fwd = hi < last
        fwd[fwd] = same[hi[fwd]]
        if not (back.any() or fwd.any()):
            runs = np.unique(np.stack((lo, hi + 1), axis=1), axis=0)
            return [(int(a), int(b)) for a, b in runs.tolist()]
        lo -= back
        hi += fwd
    starts = np.concatenate(([0], np.flatnonzero(~same) + 1))
    ends = np.concatenate((starts[1:], [last + 1]))
    index = np.unique(np.searchsorted(starts, pairs, "right") - 1).tolist()
    return [(int(starts[i]), int(ends[i])) for i in index]


def apply_tie_order(rows: OrderedRows, tie_masks: Sequence[Sequence[int]]) -> OrderedRows:
    """Each tie run's masks in event-id order (``tie_masks[i]`` for ``rows.ties[i]``, as the
    store read them): rows of a run differ only in their masks."""
    if not rows.ties:
        return rows
    mask = rows.mask.copy()
    for (start, end), masks in zip(rows.ties, tie_masks, strict=True):
        if sorted(masks) != sorted(int(m) for m in mask[start:end]):
            raise ValueError("the event ids read for a tie are not the tie's rows")
        mask[start:end] = masks
    return OrderedRows(rows.user, rows.t, mask, [], rows.same)


@dataclass(frozen=True, slots=True)
class UserPaths:
    """Per user with a step-1 event: their code, the deepest level reached (1..K) and the
    completion times of steps 1..level from the earliest anchor reaching it (``done[:, j]``
    for step j+1; unused entries are 0)."""

    user: I32
    level: npt.NDArray[np.int64]
    done: npt.NDArray[np.int64]


_CHUNK = 1 << 19
"""Rows or anchors per slice: every temporary array stays under glibc's 32 MB mmap
threshold, so freed ones are reused instead of page-faulted in anew."""


@dataclass(frozen=True, slots=True)
class _Steps:
    """Per step (0-based): ``pos[s]``, the sorted positions of the rows matching it, and
    (step 0 has none) a bitset of those rows, ``words[s]`` (64 rows a word, one spare
    word), with ``base[s][w]`` set bits before word ``w``: :meth:`rank` counts the step's
    rows before any row from them (a few elementwise ops and two gathers, where
    ``np.searchsorted`` cost ~20 ns a lookup and a running count per row ~25 ms a step)."""

    pos: list[Pos]
    words: list[U64]
    base: list[I64]

    def rank(self, s: int, rows: Pos) -> Pos:
        """How many rows of step ``s`` precede each of ``rows`` (0..n): the index in
        ``pos[s]`` of the first at or after it."""
        w = rows >> 6
        below = _BELOW[rows & 63]  # the word's bits before the row
        below &= self.words[s][w]
        got: Pos = self.base[s][w]
        got += np.bitwise_count(below)
        return got


_BELOW = (np.uint64(1) << np.arange(64, dtype=np.uint64)) - np.uint64(1)


def _step_rows(mask: Mask, k: int) -> _Steps:
    """:class:`_Steps` of the rows: whole-array passes, the steps on two threads (numpy asks
    for huge pages on its large arrays, so they fault in cheaply; per-slice flatnonzero and
    concatenation cost ~3x more CPU on 10M rows)."""
    pos: list[Pos] = [np.zeros(0, dtype=np.intp)] * k
    words: list[U64] = [np.zeros(0, dtype=np.uint64)] * k
    base: list[I64] = [np.zeros(0, dtype=np.int64)] * k
    n_words = len(mask) // 64 + 1

    def find(s: int) -> None:
        has = np.bitwise_and(mask, np.uint16(1 << s)).astype(bool)
        pos[s] = np.flatnonzero(has)
        if s:
            packed = np.zeros(n_words * 8, dtype=np.uint8)
            bits = np.packbits(has, bitorder="little")
            packed[: len(bits)] = bits
            # row i: bit i % 64 of word i // 64 (bytes in little-endian order, any host)
            words[s] = packed.view(np.dtype("<u8")).astype(np.uint64, copy=False)
            counts = np.bitwise_count(words[s]).astype(np.int64)
            base[s] = np.concatenate(([0], np.cumsum(counts)[:-1]))

    _in_threads(find, range(k))
    return _Steps(pos, words, base)


def _run_starts(rows: OrderedRows, anchors: Pos) -> Pos:
    """Per anchor, the first row of its (user, ms) run: where "at or after its time" starts.

    Most anchors start their run: each steps back while the row before has the same user
    and ms, all at once (a few rounds; a long run of one ms falls back to one pass over
    the rows). An anchor's first step is the first: a row before it of the same user and
    ms has the same first step, so ``rows.same`` answers alone when known."""
    user, t, same = rows.user, rows.t, rows.same
    out = anchors.copy()
    idx = np.flatnonzero(out > 0)
    for _ in range(_WALK_ROUNDS):
        cur = out[idx]
        if same is not None:
            back = same[cur - 1]
        else:
            back = (user[cur - 1] == user[cur]) & (t[cur - 1] == t[cur])
        idx = idx[back]
        if len(idx) == 0:
            return out
        out[idx] -= 1
        idx = idx[out[idx] > 0]
    return _run_starts_scan(rows, anchors)


_WALK_ROUNDS = 16


def _run_starts_scan(rows: OrderedRows, anchors: Pos) -> Pos:
    """:func:`_run_starts` by one pass over the rows (in slices)."""
    out = np.empty(len(anchors), dtype=np.intp)
    user, t = rows.user, rows.t
    carry = 0
    for lo in range(0, len(t), _CHUNK):
        hi = min(lo + _CHUNK, len(t))
        if lo:
            prev_u, prev_t = user[lo - 1 : hi - 1], t[lo - 1 : hi - 1]
        else:
            prev_u = np.concatenate(([-1], user[: hi - 1])).astype(np.int32)
            prev_t = np.concatenate(([0], t[: hi - 1]))
        boundary = (user[lo:hi] != prev_u) | (t[lo:hi] != prev_t)
        starts = np.where(boundary, np.arange(lo, hi, dtype=np.intp), np.intp(carry))
        np.maximum.accumulate(starts, out=starts)
        carry = int(starts[-1])
        a_lo, a_hi = np.searchsorted(anchors, [lo, hi])
        out[a_lo:a_hi] = starts[anchors[a_lo:a_hi] - lo]
    return out


def _chains(
    rows: OrderedRows,
    anchors: Pos,
    steps: _Steps,
    run_start: Pos | None,
    window_ms: int,
    done: npt.NDArray[np.int64] | None,
    shared: frozenset[tuple[int, int]] = frozenset(),
) -> npt.NDArray[np.int8]:
    """Levels of the chains from ``anchors`` (row positions), in slices; with ``done`` (a
    (len(anchors), K) array) their completion times too."""
    level = np.ones(len(anchors), dtype=np.int8)

    def one(lo: int) -> None:
        hi = min(lo + _CHUNK, len(anchors))
        starts = run_start[lo:hi] if run_start is not None else None
        sub_done = done[lo:hi] if done is not None else None
        level[lo:hi] = _chains_slice(
            rows, anchors[lo:hi], steps, starts, window_ms, sub_done, shared
        )

    _in_threads(one, range(0, len(anchors), _CHUNK))
    return level


_THREADS = 2


def _in_threads(fn: Callable[[int], None], items: Sequence[int]) -> None:
    """``fn`` over ``items`` on up to ``_THREADS`` threads (numpy releases the GIL in the
    array work: the slices of a scan overlap on two cores); exceptions propagate."""
    if len(items) <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        for _ in pool.map(fn, items):
            pass


def _chains_slice(
    rows: OrderedRows,
    anchors: Pos,
    steps: _Steps,
    run_start: Pos | None,
    window_ms: int,
    done: npt.NDArray[np.int64] | None,
    shared: frozenset[tuple[int, int]],
) -> npt.NDArray[np.int8]:
    """Any order (``run_start`` given): a step's candidate is skipped when an earlier step
    took it, which needs a row matching both steps: ``shared`` holds the pairs of steps
    ``(i, s)``, ``i < s``, that some row matches both of; other pairs are not compared."""
    k = len(steps.pos)
    user, t = rows.user, rows.t
    level = np.ones(len(anchors), dtype=np.int8)
    t0 = t[anchors].astype(np.int64)
    if done is not None:
        done[:, 0] = t0
    live = np.arange(len(anchors))  # anchors still going
    lim = t0 + window_ms
    a_user = user[anchors]
    strict = run_start is None
    # any order: per step i still to compare with a later one, the row each live took
    needed = {i for i, _ in shared}
    used: dict[int, Pos] = {0: anchors} if not strict and 0 in needed else {}
    prev = anchors
    for s in range(1, k):
        ps = steps.pos[s]
        if len(ps) == 0 or len(live) == 0:
            break
        if strict:  # strict: after the previous step's row
            j = steps.rank(s, prev + 1)
        else:  # any: from the anchor's (user, ms) run on, skipping rows already taken
            assert run_start is not None
            j = steps.rank(s, run_start[live])
            clash = [used[i] for i in sorted(used) if (i, s) in shared]
            for _ in range(len(clash)):  # each skip passes one distinct taken row
                cand = ps[np.minimum(j, len(ps) - 1)]
                taken = np.zeros(len(j), dtype=bool)
                for u in clash:
                    taken |= cand == u
                taken &= j < len(ps)
                if not taken.any():
                    break
                j += taken
        ok = j < len(ps)
        cand = ps[np.minimum(j, len(ps) - 1)]
        ok &= (user[cand] == a_user[live]) & (t[cand] <= lim[live])
        live, cand = live[ok], cand[ok]
        level[live] = s + 1  # survivors of steps 1..s (a scatter, no gather)
        if done is not None:
            done[live, s] = np.maximum(done[live, s - 1], t[cand])
        if not strict:
            used = {i: u[ok] for i, u in used.items()}
            if s in needed:
                used[s] = cand
        prev = cand
    return level


def funnel_users(rows: OrderedRows, k: int, window_ms: int, strict: bool) -> UserPaths:
    """Per user: the deepest level any anchor reaches and the earliest such anchor's times."""
    steps = _step_rows(rows.mask, k)
    anchors = steps.pos[0]
    if len(anchors) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return UserPaths(np.zeros(0, dtype=np.int32), empty, np.zeros((0, k), dtype=np.int64))
    shared: frozenset[tuple[int, int]] = frozenset()
    if strict:
        chosen, deepest = _strict_earliest_best(rows, anchors, steps, window_ms)
        starts = None
    else:
        shared = _shared_steps(rows.mask, k)
        run_start = _run_starts(rows, anchors)
        level = _chains(rows, anchors, steps, run_start, window_ms, None, shared)
        a_user = rows.user[anchors]
        first = _first_deepest(a_user, level)
        chosen = anchors[first]
        starts = run_start[first]
        deepest = level[first].astype(np.int64)
    done = np.zeros((len(chosen), k), dtype=np.int64)
    best_level = _chains(rows, chosen, steps, starts, window_ms, done, shared)
    if not np.array_equal(best_level, deepest):
        raise AssertionError("a chain recomputed for its anchor reached another level")
    return UserPaths(rows.user[chosen], best_level.astype(np.int64), done)


def _shared_steps(mask: Mask, k: int) -> frozenset[tuple[int, int]]:
    """The pairs of steps ``(i, s)``, ``i < s`` (0-based), that some row matches both of."""
    multi = mask[np.bitwise_and(mask, mask - np.uint16(1)) != 0]  # rows of two steps or more
    present = np.flatnonzero(np.bincount(multi, minlength=1 << k)).tolist()
    return frozenset(
        (i, s)
        for m in present
        for s in range(k)
        for i in range(s)
        if m >> i & 1 and m >> s & 1
    )


def _first_deepest(user: I32, level: npt.NDArray[np.int8]) -> I64:
    """Indices of, per user (``user`` sorted), the first entry with the user's top level."""
    seg = np.flatnonzero(np.concatenate(([True], user[1:] != user[:-1])))
    deepest = np.maximum.reduceat(level, seg)
    counts = np.diff(np.concatenate((seg, [len(user)])))
    best = np.flatnonzero(level == np.repeat(deepest, counts))
    return best[np.concatenate(([True], user[best][1:] != user[best][:-1]))]


def _strict_earliest_best(
    rows: OrderedRows, anchors: Pos, steps: _Steps, window_ms: int
) -> tuple[Pos, I64]:
    """Strict order: per user, the earliest anchor reaching the deepest level, and that
    level.

    Anchors of one user with the same next step-2 row share their chain after it: only the
    last of such a group (the latest, so the one the window lets go furthest) is followed.
    In the first group whose last anchor reaches the user's deepest level L, the earliest
    anchor reaching L is the first with t + window >= the time of the chain's step L."""
    a_user = rows.user[anchors]
    j2 = steps.rank(1, anchors + 1)
    new_group = np.concatenate(([True], (j2[1:] != j2[:-1]) | (a_user[1:] != a_user[:-1])))
    g_start = np.flatnonzero(new_group)
    g_last = np.concatenate((g_start[1:], [len(anchors)])) - 1
    lasts = anchors[g_last]
    level = _chains(rows, lasts, steps, None, window_ms, None)
    first_g = _first_deepest(a_user[g_last], level)
    k = len(steps.pos)
    done = np.zeros((len(first_g), k), dtype=np.int64)
    deepest = _chains(rows, lasts[first_g], steps, None, window_ms, done).astype(np.int64)
    # the group's anchors before the first with t >= T_L - window, counted (level 1: none)
    reach = done[np.arange(len(first_g)), deepest - 1] - window_ms
    reach[deepest == 1] = np.iinfo(np.int64).min
    lo, hi = g_start[first_g], g_last[first_g] + 1
    sizes = hi - lo
    flat = np.repeat(lo - np.concatenate(([0], np.cumsum(sizes)[:-1])), sizes)
    flat += np.arange(int(sizes.sum()))
    early = rows.t[anchors[flat]].astype(np.int64) < np.repeat(reach, sizes)
    before = np.add.reduceat(early.astype(np.int64), np.concatenate(([0], np.cumsum(sizes)[:-1])))
    return anchors[lo + before], deepest


def funnel_rows(
    paths: UserPaths, k: int, groups: Sequence[object] | None
) -> list[tuple[object, ...]]:
    """Rows ``(g, n1..nK, m1..m(K-1))``: users at each level or deeper and the median ms
    between completing step i and step i+1 over users who reached step i+1 (the mean of the
    two middle values for an even count), per group (``groups[code]``: the group value of
    the user with that code; ``None``: one row, no group)."""
    if len(paths.user) == 0:
        return []
    if groups is None:
        keys: list[object] = [None]
        member = np.zeros(len(paths.user), dtype=np.int64)
    else:
        index: dict[tuple[type, object], int] = {}
        keys = []
        codes = []
        for c in paths.user.tolist():
            g = groups[c]
            key = (type(g), g)  # 1 and True are different groups
            if key not in index:
                index[key] = len(keys)
                keys.append(g)
            codes.append(index[key])
        member = np.asarray(codes, dtype=np.int64)
    out: list[tuple[object, ...]] = []
    for gi, g in enumerate(keys):
        sel = member == gi
        level = paths.level[sel]
        done = paths.done[sel]
        counts = [int(np.count_nonzero(level >= i + 1)) for i in range(k)]
        medians: list[object] = []
        for i in range(k - 1):
            reached = level >= i + 2
            deltas = np.sort(done[reached, i + 1] - done[reached, i])
            m = len(deltas)
            if m == 0:
                medians.append(None)
            elif m % 2:
                medians.append(float(deltas[m // 2]))
            else:
                medians.append((int(deltas[m // 2 - 1]) + int(deltas[m // 2])) / 2)
        out.append((g, *counts, *medians))
    return out


class Fetch(Protocol):
    """Runs one SQL statement with parameters (in the caller's transaction): ``columns``
    True gives ``{name: numpy array}``, False a list of row tuples."""

    def __call__(
        self, sql: str, params: Sequence[object], columns: bool
    ) -> Mapping[str, npt.NDArray[Any]] | list[tuple[object, ...]]: ...


def run_scan(scan: CompiledFunnelScan, fetch: Fetch) -> list[dict[str, object]]:
    """The funnel report of ``scan`` (see :func:`reports.compile_funnel_scan`): fetch the
    users and rows, order, resolve ties by event id, follow the chains, shape the rows.
    Two users sharing a 64-bit hash (about one chance in 10^8 with a million users) are
    seen before any row is read: the hash is salted anew and the fetch repeated."""
    for salt in range(_SALTS):
        try:
            return _run(scan, fetch, (salt, *scan.params[1:]))
        except HashCollision:
            if salt == _SALTS - 1:
                raise
    raise AssertionError("unreachable")


_SALTS = 4


def _run(
    scan: CompiledFunnelScan, fetch: Fetch, params: tuple[object, ...]
) -> list[dict[str, object]]:
    k = scan.steps
    if scan.grouped:
        got_users = fetch(scan.users_sql, params[: scan.users_params], False)
        user_rows = cast(list[tuple[object, ...]], got_users)
        hashes = np.fromiter((cast(int, r[0]) for r in user_rows), np.uint64, len(user_rows))
    else:
        got_cols = fetch(scan.users_sql, params[: scan.users_params], True)
        cols = cast(Mapping[str, npt.NDArray[Any]], got_cols)
        hashes = np.asarray(cols["h"], dtype=np.uint64)
        user_rows = []
    by_hash = np.argsort(hashes, kind="stable")
    hashes = hashes[by_hash]
    if len(hashes) > 1 and bool(np.any(hashes[1:] == hashes[:-1])):
        raise HashCollision("two users of the funnel share a 64-bit hash")
    cols = cast(Mapping[str, npt.NDArray[Any]], fetch(scan.rows_sql, params, True))
    row_h = np.asarray(cols["h"], dtype=np.uint64)
    if len(row_h) == 0:
        return scan.shape([])
    codes = user_codes(row_h, hashes)
    t = cast(Times, cols["t"])
    mask = np.asarray(cols["m"], dtype=np.uint16)
    rows = order_rows(codes, t, mask, k, len(hashes), scratch=row_h)
    del cols, row_h
    if rows.ties:
        times = sorted({int(rows.t[start]) + scan.t_base for start, _ in rows.ties})
        got = cast(
            list[tuple[object, ...]], fetch(scan.ties_sql, (*params, times), False)
        )
        first = first_steps(np.arange(1 << k, dtype=np.uint16), k)
        by_key: dict[tuple[int, int, int], list[int]] = {}
        for h, ts, _uid, m in got:  # (h, t, uid) order
            code = int(np.searchsorted(hashes, np.uint64(cast(int, h))))
            key = (code, cast(int, ts), int(first[cast(int, m)]))
            by_key.setdefault(key, []).append(cast(int, m))
        tie_masks = [
            by_key.get(
                (int(rows.user[start]), int(rows.t[start]), int(first[rows.mask[start]])), []
            )
            for start, _ in rows.ties
        ]
        rows = apply_tie_order(rows, tie_masks)
    paths = funnel_users(rows, k, scan.window_ms, scan.strict)
    groups = [user_rows[i][1] for i in by_hash.tolist()] if scan.grouped else None
    return scan.shape(funnel_rows(paths, k, groups))


class HashCollision(Exception):
    """Two users of a funnel share a 64-bit hash (with every salt tried)."""


def duckdb_fetch(cursor: duckdb.DuckDBPyConnection) -> Fetch:
    """A :class:`Fetch` on a DuckDB connection or cursor (the caller owns the transaction)."""

    def fetch(
        sql: str, params: Sequence[object], columns: bool
    ) -> Mapping[str, npt.NDArray[Any]] | list[tuple[object, ...]]:
        if columns:  # a relation's fetchnumpy: ~0.2 CPU s less than a cursor result's
            return cursor.sql(sql, params=list(params)).fetchnumpy()  # on 10M rows (copy)
        return [tuple(r) for r in cursor.execute(sql, list(params)).fetchall()]

    return fetch
