"""The outbox's pass loop at a council's size: it never re-reads the items of lanes already
running nor queries while every lane is busy, a busy room's backlog never hides another room's
reply, a send to a room the sync has not brought yet waits for it instead of failing, and
background sends wait while a reply is on its way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from nio import LocalProtocolError, RoomInviteResponse, RoomSendResponse

from bench.dbtime import DatabaseTime
from bot.clock import ManualClock
from bot.foreground import Foreground
from bot.outbox import BACKGROUND_LANES, MAX_LANES, OutboxSender
from storage import Database
from storage.outbox import BACKGROUND, OutboxRepository

BUSY = "!busy:council.example"
IDLE = "!idle:council.example"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    clock = ManualClock(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
    database = await Database.open(tmp_path / "lanes.db", clock=clock)
    yield database
    await database.close()


class HangingClient:
    """Sends to rooms in `hanging` and invites hang until `release` is set."""

    user_id = "@patchwork:council.example"

    def __init__(self, *, olm: object = None) -> None:
        self.olm = olm
        self.rooms: dict[str, Any] = {}
        self.hanging: set[str] = set()
        self.release = asyncio.Event()
        self.sent: list[tuple[str, str]] = []
        self.raise_once: list[BaseException] = []
        self.in_flight: set[str] = set()

    async def room_send(
        self,
        room_id: str,
        message_type: str,
        content: dict[str, Any],
        tx_id: str,
        ignore_unverified_devices: bool = False,
    ) -> RoomSendResponse:
        if self.olm is not None and room_id not in self.rooms:
            raise LocalProtocolError(f"No such room with id {room_id} found.")  # as nio does
        if self.raise_once:
            raise self.raise_once.pop()
        if room_id in self.hanging:
            self.in_flight.add(room_id)
            await self.release.wait()
            self.in_flight.discard(room_id)
        self.sent.append((room_id, str(content["body"])))
        return RoomSendResponse(f"$ev-{tx_id}", room_id)

    async def room_invite(self, room_id: str, user_id: str) -> RoomInviteResponse:
        await self.release.wait()
        return RoomInviteResponse()


async def _queue(db: Database, room_id: str, *bodies: str) -> None:
    async with db.transaction() as tx:
        for body in bodies:
            await tx.outbox.enqueue_message(f"t-{room_id}-{body}", room_id, {"body": body})


def _count_passes(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each of the sender's passes asked `due` for, as it asks."""
    queries: list[dict[str, Any]] = []
    due = OutboxRepository.due

    async def counted(self: OutboxRepository, *args: Any, **kwargs: Any) -> Any:
        queries.append(kwargs)
        return await due(self, *args, **kwargs)

    monkeypatch.setattr(OutboxRepository, "due", counted)
    return queries


async def _until(check: Any, what: str) -> None:
    try:
        async with asyncio.timeout(3):
            while not check():  # noqa: ASYNC110 - the sender's tasks change what we check
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"waited 3 s for {what}") from None


async def test_due_leaves_out_what_running_lanes_hold(db: Database) -> None:
    await _queue(db, BUSY, "a", "b")
    await _queue(db, IDLE, "c")
    async with db.transaction() as tx:
        await tx.outbox.enqueue("t-invite", BUSY, "invite", {"user_id": "@n:x"})
        invite = await tx.outbox.get("t-invite")
        assert invite is not None
        everything = await tx.outbox.due(50)
        busy_room = await tx.outbox.due(50, busy_rooms=[BUSY])
        busy_invite = await tx.outbox.due(50, busy_rooms=[BUSY], busy_items=[invite.id])
        rooms_full = await tx.outbox.due(50, ordered=False)
        alone_full = await tx.outbox.due(50, standalone=False)
        await tx.outbox.enqueue_message("t-prompt", IDLE, {"body": "p"}, priority=BACKGROUND)
        replies_only = await tx.outbox.due(50, background=False)
    assert [item.room_id for item in everything] == [BUSY, BUSY, IDLE, BUSY]
    assert [(item.room_id, item.kind) for item in busy_room] == [(IDLE, "message"),
                                                                  (BUSY, "invite")]
    assert [item.room_id for item in busy_invite] == [IDLE]
    assert [item.kind for item in rooms_full] == ["invite"]
    assert [item.kind for item in alone_full] == ["message"] * 3
    assert [item.txn_id for item in replies_only] == [item.txn_id for item in everything]


async def test_a_busy_rooms_backlog_does_not_hold_back_another_rooms_reply(
    db: Database,
) -> None:
    """More than a pass's worth of items wait behind a send that hangs; the reply in an idle
    room still goes at once, and the busy room's items are not read again meanwhile."""
    client = HangingClient()
    client.hanging.add(BUSY)
    await _queue(db, BUSY, *(f"backlog {n}" for n in range(60)))
    out = OutboxSender(db, client)  # type: ignore[arg-type]
    stop = asyncio.Event()
    running = asyncio.create_task(out.run(stop))
    try:
        await asyncio.sleep(0.05)  # the busy room's lane has started and hangs
        await _queue(db, IDLE, "reply")
        out.wake()
        await _until(lambda: (IDLE, "reply") in client.sent, "the idle room's reply")
        assert not [room for room, _ in client.sent if room == BUSY]
        client.release.set()
        await _until(lambda: len(client.sent) == 61, "the backlog")
    finally:
        client.release.set()
        stop.set()
        out.wake()
        await running
    assert [body for room, body in client.sent if room == BUSY] == [
        f"backlog {n}" for n in range(60)
    ], "in order"


async def test_no_query_while_every_lane_is_busy(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = HangingClient()
    rooms = [f"!r{n}:council.example" for n in range(MAX_LANES)]
    client.hanging.update(rooms)
    for room_id in rooms:
        await _queue(db, room_id, "hangs")
    async with db.transaction() as tx:
        for n in range(MAX_LANES):
            await tx.outbox.enqueue(f"t-invite-{n}", rooms[0], "invite", {"user_id": f"@{n}:x"})
    queries = _count_passes(monkeypatch)
    out = OutboxSender(db, client)  # type: ignore[arg-type]
    stop = asyncio.Event()
    running = asyncio.create_task(out.run(stop))
    try:
        await asyncio.sleep(0.1)  # every lane of both pools is busy now
        before = len(queries)
        for n in range(20):  # new items keep waking the loop
            await _queue(db, IDLE, f"later {n}")
            out.wake()
            await asyncio.sleep(0.005)
        assert len(queries) == before, "nothing could start, so nothing was read"
        client.release.set()
        await _until(lambda: len(client.sent) == MAX_LANES + 20, "everything, once lanes end")
    finally:
        client.release.set()
        stop.set()
        out.wake()
        await running


async def test_a_reply_to_a_room_not_synced_yet_goes_once_the_sync_brings_it(
    db: Database,
) -> None:
    """An encrypting client cannot send to a room it does not know (nio raises); the send waits
    for the sync loop to bring the room and goes in the same attempt, nothing counted."""
    client = HangingClient(olm=object())
    await _queue(db, IDLE, "welcome")
    out = OutboxSender(db, client)  # type: ignore[arg-type]

    async def synced() -> None:
        await asyncio.sleep(0.2)
        client.rooms[IDLE] = SimpleNamespace(encrypted=False, users={})

    sync = asyncio.create_task(synced())
    started = asyncio.get_running_loop().time()
    await out.drain_once()
    await sync
    assert client.sent == [(IDLE, "welcome")]
    assert asyncio.get_running_loop().time() - started < 1.0, "as soon as the room is known"
    async with db.read() as tx:
        item = await tx.outbox.get(f"t-{IDLE}-welcome")
    assert item is not None
    assert (item.sent_at is not None, item.attempts, item.last_error) == (True, 0, None)


async def test_a_key_error_racing_the_sync_is_tried_again_at_once(db: Database) -> None:
    client = HangingClient()
    client.raise_once.append(KeyError(IDLE))  # nio's share_group_session, mid-membership
    await _queue(db, IDLE, "reply")
    out = OutboxSender(db, client)  # type: ignore[arg-type]
    await out.drain_once()
    assert client.sent == [(IDLE, "reply")]
    async with db.read() as tx:
        item = await tx.outbox.get(f"t-{IDLE}-reply")
    assert item is not None
    assert (item.sent_at is not None, item.attempts) == (True, 0)


async def test_a_sweeps_prompts_never_take_the_lane_a_reply_needs(db: Database) -> None:
    """Prompts in more rooms than there are lanes, every send hanging (a sweep after an
    outage, a slow homeserver): they take only their lanes, and a reply goes at once."""
    client = HangingClient()
    rooms = [f"!prompted{n}:council.example" for n in range(MAX_LANES * 2)]
    client.hanging.update(rooms)
    async with db.transaction() as tx:
        for room_id in rooms:
            await tx.outbox.enqueue_message(f"t-{room_id}", room_id, {"body": "still involved?"},
                                            priority=BACKGROUND)
    out = OutboxSender(db, client)  # type: ignore[arg-type]
    stop = asyncio.Event()
    running = asyncio.create_task(out.run(stop))
    try:
        await asyncio.sleep(0.1)  # the prompts' lanes have started and hang
        assert len(client.in_flight) == BACKGROUND_LANES
        await _queue(db, IDLE, "reply")
        out.wake()
        await _until(lambda: (IDLE, "reply") in client.sent, "the reply")
        assert client.sent == [(IDLE, "reply")]
        client.release.set()
        await _until(lambda: len(client.sent) == len(rooms) + 1, "every prompt, after")
    finally:
        client.release.set()
        stop.set()
        out.wake()
        await running


async def test_messages_behind_one_held_for_a_join_leave_the_sender_asleep(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A direct chat's welcome waits for the person to join, and later messages to them queue
    behind it: the sender sleeps until the held one's time instead of asking for due items
    again and again (which kept the database busy under every command)."""
    passes = _count_passes(monkeypatch)
    await _queue(db, IDLE, "welcome", "a notice for them", "another")
    out = OutboxSender(  # type: ignore[arg-type]
        db, HangingClient(),
        hold_until=lambda item, now: (now + timedelta(hours=1), "held for a join"),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(out.run(stop))
    try:
        await asyncio.sleep(0.5)
        assert len(passes) <= 3, f"{len(passes)} passes in half a second with nothing to send"
    finally:
        stop.set()
        out.wake()
        await running


async def test_a_reply_handed_over_with_its_commit_starts_at_once_with_no_pass(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command's transaction hands its reply over: what is due is read in the COMMIT's trip
    and its lane starts at once, the sender neither woken nor reading. A reply whose room's
    lane is busy is left to a pass, which sends it after the lane's item, once."""
    client = HangingClient()
    client.hanging.update({BUSY, IDLE})
    passes = _count_passes(monkeypatch)
    out = OutboxSender(db, client)  # type: ignore[arg-type]
    woken: list[str] = []
    wake = out.wake
    monkeypatch.setattr(out, "wake", lambda: (woken.append("woken"), wake()))
    stop = asyncio.Event()
    running = asyncio.create_task(out.run(stop))

    async def reply(room_id: str, body: str) -> int:
        meter = DatabaseTime()
        with meter.counting():
            async with db.transaction() as tx:
                tx.outbox.enqueue_message_later(f"t-{room_id}-{body}", room_id, {"body": body})
                handover = out.hand_over(tx)
            out.take(handover)
        return meter.calls

    try:
        await _queue(db, BUSY, "hangs")
        wake()
        await _until(lambda: BUSY in client.in_flight, "the busy room's send")
        await asyncio.sleep(0.05)  # the pass loop is asleep again
        before = len(passes)
        assert await reply(IDLE, "reply") == 1, "queued, committed and read in one trip"
        await _until(lambda: IDLE in client.in_flight, "the reply's send")
        assert (len(passes), woken) == (before, []), "no pass, no wake: the lane started at once"
        await reply(BUSY, "behind")
        assert woken == ["woken"], "its room's lane was busy: a pass will send it"
        client.release.set()
        await _until(lambda: len(client.sent) == 3, "everything")
        await asyncio.sleep(0.1)
        assert sorted(client.sent) == [(BUSY, "behind"), (BUSY, "hangs"), (IDLE, "reply")]
        assert [body for room, body in client.sent if room == BUSY] == ["hangs", "behind"]
    finally:
        client.release.set()
        stop.set()
        wake()
        await running


async def test_prompts_wait_while_a_reply_is_on_its_way_and_go_after_it(db: Database) -> None:
    """A reply hangs at the homeserver; the prompts queued meanwhile stay unsent until it has
    gone and the quiet after it has passed, then all go, in order."""
    client = HangingClient()
    client.hanging.add(IDLE)
    foreground = Foreground(quiet=0.2, patience=30.0)
    out = OutboxSender(db, client, foreground=foreground)  # type: ignore[arg-type]
    stop = asyncio.Event()
    running = asyncio.create_task(out.run(stop))
    prompted = [f"!prompted{n}:council.example" for n in range(3)]
    try:
        await _queue(db, IDLE, "reply")
        out.wake()
        await _until(lambda: IDLE in client.in_flight, "the reply's send")
        async with db.transaction() as tx:
            for room_id in prompted:
                await tx.outbox.enqueue_message(
                    f"t-{room_id}", room_id, {"body": "still involved?"}, priority=BACKGROUND
                )
        out.wake()
        await asyncio.sleep(0.3)
        assert client.sent == [], "no prompt while the reply is on its way"
        client.release.set()
        await _until(lambda: client.sent == [(IDLE, "reply")], "the reply")
        replied = asyncio.get_running_loop().time()
        await _until(lambda: len(client.sent) == 4, "the prompts, after the quiet")
        assert asyncio.get_running_loop().time() - replied >= 0.15, "seen up to 0.01 s late"
        assert [room for room, _ in client.sent[1:]] == prompted
    finally:
        client.release.set()
        stop.set()
        out.wake()
        await running


async def test_a_background_lane_stops_between_prompts_for_a_reply(db: Database) -> None:
    """A room's prompts go one after another until a reply is handed over elsewhere: the
    lane stops before its next prompt, which goes once the reply has and the quiet passed."""
    client = HangingClient()
    room = "!prompted:council.example"
    client.hanging.add(room)
    foreground = Foreground(quiet=0.2, patience=30.0)
    out = OutboxSender(db, client, foreground=foreground)  # type: ignore[arg-type]
    stop = asyncio.Event()
    running = asyncio.create_task(out.run(stop))
    try:
        async with db.transaction() as tx:
            for n in range(3):
                await tx.outbox.enqueue_message(
                    f"t-prompt-{n}", room, {"body": f"prompt {n}"}, priority=BACKGROUND
                )
        out.wake()
        await _until(lambda: room in client.in_flight, "the first prompt's send")
        async with db.transaction() as tx:
            tx.outbox.enqueue_message_later("t-reply", IDLE, {"body": "reply"})
            handover = out.hand_over(tx)
        out.take(handover)
        client.release.set()
        await _until(lambda: len(client.sent) == 2, "the first prompt and the reply")
        assert sorted(client.sent) == [(IDLE, "reply"), (room, "prompt 0")]
        await asyncio.sleep(0.1)
        assert len(client.sent) == 2, "the lane stopped before its next prompt"
        await _until(lambda: len(client.sent) == 4, "the rest, after the quiet")
        assert [body for r, body in client.sent if r == room] == ["prompt 0", "prompt 1",
                                                                  "prompt 2"]
    finally:
        client.release.set()
        stop.set()
        out.wake()
        await running
