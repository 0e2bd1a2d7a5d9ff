"""Definitions over months of use, on SQLite and PostgreSQL: events deleted and created again,
edits that meet a publish."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from miniport.clock import FakeClock
from miniport.errors import Conflict
from miniport.platform import Platform


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'state.db'}"


def api_event(name: str, fields: list[str]) -> dict[str, Any]:
    return {"name": name, "display_name": name.title(), "mode": "api", "fields": fields}


async def app_with_price(
    platforms: Callable[..., Awaitable[Platform]], tmp_path: Path, url: str
) -> tuple[Platform, str]:
    p = await platforms(database_url=url, data_dir=tmp_path / "data")
    appid = (await p.apps.create("shop", "test")).appid
    await p.analytics.add_field(appid, {"name": "price", "type": "int"})
    return p, appid


async def test_a_deleted_events_id_is_never_given_to_another_event(
    platforms: Callable[..., Awaitable[Platform]], tmp_path: Path, state_url: str
) -> None:
    """An app version in users' hands calls ``reportEvent(<id>)`` with the id it was built
    with: once that event is deleted, the id must be refused, not counted as a newer event."""
    p, appid = await app_with_price(platforms, tmp_path, state_url)
    s = p.analytics
    await s.save_event(appid, api_event("view", ["price"]))
    buy = await s.save_event(appid, api_event("buy", ["price"]))
    await s.publish(appid, "dev")
    await s.delete_event(appid, "buy")
    await s.publish(appid, "dev")
    refund = await s.save_event(appid, api_event("refund", ["price"]))
    await s.publish(appid, "dev")

    assert refund["id"] != buy["id"]
    now = int(p.clock.now() * 1000)
    old_app = {"sent_at": now, "events": [{"id": "e1", "event": buy["id"], "data": {"price": 5}}]}
    verdict = await s.ingest(appid, "u1", old_app)
    assert verdict["accepted"] == 0
    assert [r["code"] for r in verdict["rejected"]] == ["unknown_event"]


async def test_a_save_made_while_publishing_is_published_or_left_as_a_change(
    platforms: Callable[..., Awaitable[Platform]], tmp_path: Path, state_url: str
) -> None:
    """Another developer saves an event (and adds a field) after a publish read the draft and
    before it wrote the version: what the console shows as published is what runtimes get."""
    p, appid = await app_with_price(platforms, tmp_path, state_url)
    s = p.analytics
    await s.save_event(appid, api_event("buy", ["price"]))
    await s.publish(appid, "dev")

    real_publish = s.defs.publish

    def publish_after_another_save(*args: Any, **kwargs: Any) -> Any:
        # the other developer's requests, committed while the publish was on its way
        s.defs.change_slots(appid, lambda fields, parts: _add("color", fields), 0.0)
        s.defs.save_event(appid, "buy", api_event("buy", ["price", "color"]), 0.0)
        return real_publish(*args, **kwargs)

    s.defs.publish = publish_after_another_save  # type: ignore[method-assign]
    try:
        published = await s.publish(appid, "dev")
    finally:
        s.defs.publish = real_publish  # type: ignore[method-assign]

    config = await s.runtime_config(appid, "u1")
    assert config["version"] == published["version"] == 2
    shown = await s.definitions(appid)
    buy = next(e for e in shown["events"] if e["name"] == "buy")
    live = next(e for e in config["events"] if e["name"] == "buy")
    # either the save made it into version 2, or the console still shows it as a change
    assert buy["changed"] or buy["published"]["fields"] == live["fields"]
    color = next(f for f in shown["fields"] if f["name"] == "color")
    in_config = any(f["name"] == "color" for f in config["fields"])
    assert color["published"] == in_config


def _add(name: str, fields: list[Any]) -> Any:
    from miniport.storage.analytics_defs import SlotChange

    taken = {f.slot for f in fields if f.type == "string"}
    slot = next(s for s in range(32) if s not in taken)
    return SlotChange("add", name, "string", slot, fresh=True)


async def test_an_edit_based_on_a_stale_draft_is_refused_not_lost(
    platforms: Callable[..., Awaitable[Platform]], tmp_path: Path, state_url: str
) -> None:
    """Two developers open the same event; the second save, based on what the first one
    replaced, is refused (a lost update otherwise); a save without a base is as before."""
    p, appid = await app_with_price(platforms, tmp_path, state_url)
    s = p.analytics
    await s.add_field(appid, {"name": "color", "type": "string"})
    await s.save_event(appid, api_event("buy", ["price"]))

    def revision(shown: dict[str, Any], name: str) -> str | None:
        return next(e["revision"] for e in shown["events"] if e["name"] == name)

    opened = revision(await s.definitions(appid), "buy")  # both load the editor
    first = await s.save_event(appid, api_event("buy", ["price", "color"]), base=opened)
    assert first["revision"] == revision(await s.definitions(appid), "buy") != opened
    with pytest.raises(Conflict, match="changed since"):
        await s.save_event(appid, {**api_event("buy", []), "display_name": "Achat"}, base=opened)
    with pytest.raises(Conflict, match="changed since"):
        await s.delete_event(appid, "buy", base=opened)
    shown = await s.definitions(appid)
    buy = next(e for e in shown["events"] if e["name"] == "buy")
    assert buy["draft"]["fields"] == ["price", "color"]  # the first developer's save stands

    # a new event's base is "": refused if someone else created it meanwhile
    await s.save_event(appid, api_event("sell", ["price"]), base="")
    with pytest.raises(Conflict):  # created by someone else meanwhile
        await s.save_event(appid, api_event("sell", ["color"]), base="")
    await s.save_event(appid, api_event("sell", ["color"]))  # no base: last write wins
    await s.delete_event(appid, "buy", base=first["revision"])


async def test_events_recorded_under_a_past_version_are_checked_against_it(
    platforms: Callable[..., Awaitable[Platform]],
    tmp_path: Path,
    state_url: str,
    fake_clock: FakeClock,
) -> None:
    """A device queued events offline (or had not yet heard of a publish): a field or an
    event the next version dropped does not cost it those events. What no published version
    defined is still refused."""
    p = await platforms(database_url=state_url, data_dir=tmp_path / "data", clock=fake_clock)
    s = p.analytics
    appid = (await p.apps.create("shop", "test")).appid
    for name, kind in (("price", "int"), ("color", "string")):
        await s.add_field(appid, {"name": name, "type": kind})
    await s.save_event(appid, api_event("buy", ["price", "color"]))
    coupon = await s.save_event(appid, api_event("coupon", ["price"]))
    assert (await s.publish(appid, "dev"))["version"] == 1
    v1_ms = int(fake_clock.now() * 1000)
    fake_clock.advance(3600)
    await s.save_event(appid, api_event("buy", ["price"]))  # color no longer reported
    await s.delete_event(appid, "coupon")
    assert (await s.publish(appid, "dev"))["version"] == 2
    fake_clock.advance(3600)
    now = int(fake_clock.now() * 1000)

    def event(uid: str, ts: int | None, **extra: Any) -> dict[str, Any]:
        return {"id": uid, "event": "buy", "data": {"price": 5, "color": "red"}, "ts": ts,
                **extra}  # fmt: skip

    batch = {"sent_at": now, "events": [
        event("queued", v1_ms + 60_000),                  # recorded while v1 was in force
        event("late", now - 60_000, v=1),                 # after v2, on a device still on v1
        event("new", now - 60_000),                       # after v2, under v2: refused
        event("named", now - 60_000, v=7),                # no such version: refused
        event("early", v1_ms - 60_000),                   # before any version: refused
        {"id": "gone", "event": coupon["id"], "data": {"price": 1}, "ts": v1_ms + 1},
        {"id": "bad", "event": "buy", "data": {"price": 1, "size": 2}, "ts": v1_ms + 1},
    ]}  # fmt: skip
    verdict = await s.ingest(appid, "u1", batch)
    assert verdict["accepted"] == 3
    assert [(r["id"], r["code"]) for r in verdict["rejected"]] == [
        ("new", "unknown_field"), ("named", "unknown_field"), ("early", "unknown_field"),
        ("bad", "unknown_field"),
    ]  # fmt: skip
    stored = (await s.user_events(appid, "u1"))["events"]
    assert sorted((e["id"], e["event"], e["data"]) for e in stored) == [
        ("gone", "coupon", {"price": 1}),
        ("late", "buy", {"color": "red", "price": 5}),
        ("queued", "buy", {"color": "red", "price": 5}),
    ]
    # the same batch again: every one a duplicate, nothing refused anew
    again = await s.ingest(appid, "u1", {**batch, "events": batch["events"][:2]})
    assert (again["accepted"], again["duplicates"]) == (0, 2)


async def test_past_versions_count_for_a_week_and_follow_a_publish_on_another_node(
    platforms: Callable[..., Awaitable[Platform]],
    tmp_path: Path,
    state_url: str,
    fake_clock: FakeClock,
) -> None:
    node = await platforms(database_url=state_url, data_dir=tmp_path / "a", clock=fake_clock)
    other = await platforms(database_url=state_url, data_dir=tmp_path / "b", clock=fake_clock)
    s = node.analytics
    appid = (await node.apps.create("shop", "test")).appid
    for name in ("price", "color", "size"):
        await s.add_field(appid, {"name": name, "type": "string"})
    await s.save_event(appid, api_event("buy", ["price", "color", "size"]))
    await s.publish(appid, "dev")  # v1
    await s.save_event(appid, api_event("buy", ["price", "size"]))
    await s.publish(appid, "dev")  # v2: no color
    fake_clock.advance(60)

    def sent(uid: str, v: int, **data: str) -> dict[str, Any]:
        now = int(fake_clock.now() * 1000)
        return {"sent_at": now, "events": [{"id": uid, "event": "buy", "data": data, "ts": now,
                                            "v": v}]}  # fmt: skip

    assert (await s.ingest(appid, "u", sent("e1", 1, color="red")))["accepted"] == 1
    # another node publishes v3 (no size); this node's view of it arrives before its history
    # of past versions is read again: an event of v2 is checked against v2 all the same
    await other.analytics.save_event(appid, api_event("buy", ["price"]))
    assert (await other.analytics.publish(appid, "dev"))["version"] == 3
    s._published.clear()
    assert (await s.ingest(appid, "u", sent("e2", 2, size="L")))["accepted"] == 1
    # a version replaced more than a week ago no longer counts
    fake_clock.advance(8 * 86_400)
    s._histories.clear()  # read more than 2 s ago
    late = await s.ingest(appid, "u", sent("e3", 1, color="red"))
    assert [r["code"] for r in late["rejected"]] == ["unknown_field"]
    assert (await s.ingest(appid, "u", sent("e4", 2, size="M")))["accepted"] == 0
