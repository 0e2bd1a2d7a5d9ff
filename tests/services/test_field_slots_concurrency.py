"""Two servers on one state database give fields slots at the same moment: every slot still
has one owner (current type, earlier types of retyped fields, pending changes), on SQLite and
on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from miniport.errors import Conflict, MiniportError
from miniport.platform import Platform


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'state.db'}"


async def two_servers(
    platforms: Callable[..., Awaitable[Platform]], tmp_path: Path, url: str
) -> tuple[Platform, Platform]:
    # one state database, each its own data directory (their own event stores)
    a = await platforms(database_url=url, data_dir=tmp_path / "a")
    b = await platforms(database_url=url, data_dir=tmp_path / "b")
    return a, b


async def held_slots(p: Platform, appid: str) -> dict[tuple[str, int], set[str]]:
    """(type, slot) -> the fields holding it: current, pending and earlier parts."""
    defs = p.analytics.defs
    held: dict[tuple[str, int], set[str]] = {}
    for f in await p.db.read(defs.fields, appid):
        held.setdefault((f.type, f.slot), set()).add(f.name)
        if f.pending_type is not None and f.pending_slot is not None:
            held.setdefault((f.pending_type, f.pending_slot), set()).add(f.name)
    for part in await p.db.read(defs.field_parts, appid):
        held.setdefault((part.type, part.slot), set()).add(part.name)
    return held


async def attempt(call: Awaitable[Any]) -> Any:
    """A call that lost a race may be refused with a clear conflict; nothing else."""
    try:
        return await call
    except Conflict as exc:
        return exc


async def test_fields_added_and_retyped_at_once_never_share_a_slot(
    platforms: Callable[..., Awaitable[Platform]], tmp_path: Path, state_url: str
) -> None:
    a, b = await two_servers(platforms, tmp_path, state_url)
    appid = (await a.apps.create("shop", "test")).appid
    sa, sb = a.analytics, b.analytics
    # color string s0; price int i0 -> string s1 -> int again: s1 stays price's (its old values)
    await sa.add_field(appid, {"name": "color", "type": "string"})
    for n in range(6):
        await sa.add_field(appid, {"name": f"n{n}", "type": "int"})
    await sa.add_field(appid, {"name": "price", "type": "int"})
    await sa.publish(appid, "t")
    await sa.retype_field(appid, "price", "string", "t")
    await sa.publish(appid, "t")
    await sa.retype_field(appid, "price", "int", "t")
    await sa.publish(appid, "t")

    for round_ in range(3):
        calls = []
        for i in range(4):
            side = sa if i % 2 else sb
            calls.append(side.add_field(appid, {"name": f"c{round_}_{i}", "type": "string"}))
        for n in range(6):  # published int fields retyped to string at the same moment
            side = sb if n % 2 else sa
            target = "string" if round_ % 2 == 0 else "int"
            calls.append(side.retype_field(appid, f"n{n}", target, "t"))
        results = await asyncio.gather(*(attempt(c) for c in calls))
        assert all(not isinstance(r, MiniportError) or isinstance(r, Conflict) for r in results)
        held = await held_slots(a, appid)
        shared = {slot: names for slot, names in held.items() if len(names) > 1}
        assert shared == {}, shared
        assert held[("string", 1)] == {"price"}  # an old slot of a retyped field is held
    added = [f.name for f in await a.db.read(sa.defs.fields, appid) if f.name.startswith("c")]
    assert len(added) >= 6  # most calls went through (a refusal is the exception)


_WORKER = """
import asyncio, sys, time
from pathlib import Path
from miniport.config import Settings
from miniport.errors import Conflict
from miniport.platform import create_platform

async def main(url, data_dir, appid, prefix, start_at):
    p = create_platform(Settings(data_dir=Path(data_dir), dev=True, database_url=url))
    await p.start(fetcher=False)
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        for i in range(8):
            name = f"{prefix}{i}"
            try:
                await p.analytics.add_field(appid, {"name": name, "type": "string"})
            except Conflict:
                pass
            await p.analytics.retype_field(appid, f"{prefix}_n{i}", "string", "t")
    finally:
        await p.close()

asyncio.run(main(*sys.argv[1:5], float(sys.argv[5])))
"""


async def test_two_processes_never_give_one_slot_twice(
    platforms: Callable[..., Awaitable[Platform]], tmp_path: Path, state_url: str
) -> None:
    """The same across processes: two servers started as their own processes."""
    import sys
    import time

    p = await platforms(database_url=state_url, data_dir=tmp_path / "main")
    appid = (await p.apps.create("shop", "test")).appid
    for prefix in ("a", "b"):
        for i in range(8):
            await p.analytics.add_field(appid, {"name": f"{prefix}_n{i}", "type": "int"})
    await p.analytics.publish(appid, "t")
    start_at = time.time() + 3.0  # both processes are up by then, and start together
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WORKER, state_url, str(tmp_path / prefix), appid, prefix,
            str(start_at),
        )
        for prefix in ("a", "b")
    ]
    assert [await proc.wait() for proc in procs] == [0, 0]
    held = await held_slots(p, appid)
    assert {slot: names for slot, names in held.items() if len(names) > 1} == {}
    strings = {name for (kind, _), names in held.items() if kind == "string" for name in names}
    assert len(strings) == 32  # 16 new string fields, 16 int fields with a pending string slot
