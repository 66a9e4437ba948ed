"""The sync pipeline on its failure paths: a transient failure loses no command, a poison event
gets its sender a reference instead of silence and cannot deafen the bot, parked events give up
after a horizon, invitations are answered through the outbox, and one family that cannot be
reconciled stops nothing."""

# ruff: noqa: F811 - pytest fixtures imported from the sync pipeline tests are used by name
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from nio import InviteMemberEvent

import bot.sync
from bot.backfill import page_back
from bot.sync import MAX_EVENT_ATTEMPTS, PARKED_HORIZON, EventRetry, SyncLoop
from storage import Database
from tests.unit.test_sync_pipeline import (  # noqa: F401 - fixtures
    ALICE,
    BOT,
    ROOM,
    FakeClient,
    _megolm,
    _outbox,
    _text,
    client,
    clock,
    db,
    loop,
)


def _failing(loop: SyncLoop, times: int, error: Exception) -> list[int]:
    """Make the router fail `times` times, then work; returns the call counter."""
    calls = [0]
    real = loop._router.handle

    async def handle(tx: Any, room: Any, event: Any, matrix: Any = None) -> None:
        calls[0] += 1
        if calls[0] <= times:
            raise error
        await real(tx, room, event, matrix)

    loop._router.handle = handle  # type: ignore[method-assign]
    return calls


async def test_a_transient_failure_replays_the_event_instead_of_dropping_it(
    loop: SyncLoop, db: Database, client: FakeClient
) -> None:
    _failing(loop, 1, OSError("database is locked"))
    room = client.rooms[ROOM]
    with pytest.raises(EventRetry):
        await loop.process_event(room, _text("$t1", "!help"), apply_effects=True)
    async with db.read() as tx:
        assert not await tx.sync.is_processed("$t1")
    await loop.process_event(room, _text("$t1", "!help"), apply_effects=True)
    [reply] = await _outbox(db)
    assert "What you can do" in reply.payload["content"]["body"]


async def test_a_poison_command_gets_a_reference_and_is_not_retried_forever(
    loop: SyncLoop, db: Database, client: FakeClient
) -> None:
    calls = _failing(loop, 1000, RuntimeError("bug"))
    room = client.rooms[ROOM]
    for _ in range(MAX_EVENT_ATTEMPTS - 1):
        with pytest.raises(EventRetry):
            await loop.process_event(room, _text("$p1", "!help"), apply_effects=True)
    await loop.process_event(room, _text("$p1", "!help"), apply_effects=True)
    await loop.process_event(room, _text("$p1", "!help"), apply_effects=True)
    assert calls[0] == MAX_EVENT_ATTEMPTS
    [reply] = await _outbox(db)
    body = reply.payload["content"]["body"]
    assert "something went wrong on my side" in body
    assert "reference" in body
    assert reply.payload["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": "$p1"}}


async def test_a_parked_event_that_fails_does_not_stop_the_rest(
    loop: SyncLoop, db: Database, client: FakeClient
) -> None:
    room = client.rooms[ROOM]
    await loop.process_event(room, _megolm("$k1", "S1"), apply_effects=True)
    await loop.process_event(room, _megolm("$k2", "S2"), apply_effects=True)
    client.keys["S1"] = _text("$k1", "!help")
    client.keys["S2"] = _text("$k2", "!help")
    calls = _failing(loop, 1, RuntimeError("bug"))
    await loop.retry_undecrypted()  # must not raise: the token still advances
    assert calls[0] == 2
    assert len(await _outbox(db)) == 1, "the second parked event was handled"
    await loop.retry_undecrypted()
    assert len(await _outbox(db)) == 2, "the first is tried again"
    async with db.read() as tx:
        assert await tx.sync.undecrypted() == []


async def test_parked_events_are_given_up_after_the_sender_is_told_and_a_horizon(
    loop: SyncLoop, db: Database, client: FakeClient, clock: Any
) -> None:
    await loop.process_event(client.rooms[ROOM], _megolm("$h1", "S9"), apply_effects=True)
    clock.advance(timedelta(minutes=3))
    await loop.retry_undecrypted()
    async with db.read() as tx:
        assert len(await tx.sync.undecrypted()) == 1
    clock.advance(PARKED_HORIZON)
    await loop.retry_undecrypted()
    async with db.read() as tx:
        assert await tx.sync.undecrypted() == []
        assert await tx.sync.is_processed("$h1")
    assert len(await _outbox(db)) == 1, "the sender was told once"


async def test_an_invitation_is_answered_through_the_outbox_once(
    loop: SyncLoop, db: Database
) -> None:
    invite = InviteMemberEvent.from_dict(
        {
            "type": "m.room.member",
            "sender": ALICE,
            "state_key": BOT,
            "content": {"membership": "invite"},
        }
    )
    await loop._handle_invite("!new:localhost", [invite])
    await loop._handle_invite("!new:localhost", [invite])  # a replayed response
    items = await _outbox(db)
    assert [(item.kind, item.room_id) for item in items] == [("join", "!new:localhost")]
    outsider = InviteMemberEvent.from_dict(
        {
            "type": "m.room.member",
            "sender": "@eve:elsewhere.example",
            "state_key": BOT,
            "content": {"membership": "invite"},
        }
    )
    await loop._handle_invite("!spam:elsewhere.example", [outsider])
    assert [item.kind for item in await _outbox(db)] == ["join", "leave"]


async def test_one_family_that_cannot_be_reconciled_stops_nothing(
    loop: SyncLoop, db: Database, client: FakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with db.transaction() as tx:
        first = await tx.families.create("LDC-2026-0001", ROOM, ALICE)
        await tx.families.create("LDC-2026-0002", "!other:localhost", ALICE)
    client.rooms["!other:localhost"] = client.rooms[ROOM]
    seen: list[int] = []

    async def reconcile(
        tx: Any, family: Any, members: Any, policy: Any, direct_rooms: Any = None
    ) -> list[Any]:
        seen.append(family.id)
        if family.id == first.id:
            raise RuntimeError("bug")
        return []

    monkeypatch.setattr(bot.sync, "reconcile_family", reconcile)
    await loop.reconcile_rooms()
    assert len(seen) == 2


async def test_history_is_forgotten_and_paging_back_respects_the_horizon(
    loop: SyncLoop, db: Database, client: FakeClient, clock: Any
) -> None:
    from nio import RoomMessagesResponse

    from bot.housekeeping import HISTORY_RETENTION, prune_history

    room = client.rooms[ROOM]
    await loop.process_event(room, _text("$old", "!help"), apply_effects=True)
    async with db.transaction() as tx:
        [reply] = await tx.outbox.due()
        await tx.outbox.mark_sent(reply.id, "$sent")
        await tx.outbox.enqueue_message("pending", ROOM, {"body": "still to go"})
    clock.advance(HISTORY_RETENTION + timedelta(minutes=1))
    await prune_history(db)
    async with db.read() as tx:
        assert not await tx.sync.is_processed("$old")
        assert [item.txn_id for item in await tx.outbox.due()] == ["pending"]
        rows = await tx.fetchall("SELECT COUNT(*) FROM outbox")
    assert rows[0][0] == 1

    # The forgotten event comes back in a gap: paging back stops at the horizon.
    old = _text("$old", "!help")
    old.server_timestamp = int((clock() - HISTORY_RETENTION * 2).timestamp() * 1000)
    fresh = _text("$fresh", "!help")
    fresh.server_timestamp = int(clock().timestamp() * 1000)

    async def room_messages(room_id: str, **kwargs: Any) -> RoomMessagesResponse:
        return RoomMessagesResponse(room_id, [fresh, old], "end", "start")

    client.room_messages = room_messages  # type: ignore[attr-defined]
    collected = await page_back(client, db, ROOM, "prev")  # type: ignore[arg-type]
    assert [event.event_id for event in collected] == ["$fresh"]
