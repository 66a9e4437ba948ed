"""The outbox on its failure paths, over a real database and a recording fake of nio: a room is
created once whatever fails around it, every item ends sent or failed in bounded time, one
stuck item holds back only what must wait for it, and the person who asked is told."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nio import (
    ErrorResponse,
    JoinedRoomsResponse,
    RoomCreateResponse,
    RoomGetStateEventResponse,
    RoomInviteResponse,
    RoomKickResponse,
    RoomSendResponse,
)

from bot.outbox import MAX_ATTEMPTS, OutboxSender
from rooms.failures import on_item_failed
from rooms.family_room import FAMILY_STATE_EVENT, on_room_created
from rooms.prompts import on_message_sent
from storage import Database, OutboxItem, Transaction
from tests.unit.test_prompts import written
from tests.unit.test_team_commands_support import (
    DM,
    LEAD,
    NURSE,
    POLICY,
    ROOM,
    TEACHER,
    ManualClock,
    active_family,
    audits,
    outbox,
    run,
    say,
)

pytest_plugins = ("tests.unit.test_team_commands_support",)


class Crash(BaseException):
    """Stands for the process dying: nothing in the bot catches it."""


class FakeClient:
    """The parts of nio the sender uses. createRoom leaves a room that carries its marker, as
    Synapse does; each kind of action can be made to fail."""

    user_id = "@patchwork:council.example"
    olm = None  # no encryption here
    access_token = "token"

    def __init__(self) -> None:
        self.rooms: dict[str, Any] = {}
        self.created: list[str] = []
        self.markers: dict[str, dict[str, Any]] = {}
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.invites: list[str] = []
        self.kicks: list[str] = []
        self.gone: set[str] = set()
        self.invite_error: str | None = None
        self.send_raises: set[str] = set()

    async def _send(self, response: type, method: str, path: str, data: str) -> Any:
        import json

        request = json.loads(data)
        room_id = f"!made{len(self.created) + 1}:council.example"
        self.created.append(room_id)
        for event in request["initial_state"]:
            if event["type"] == FAMILY_STATE_EVENT:
                self.markers[room_id] = event["content"]
        return RoomCreateResponse(room_id)

    async def joined_rooms(self) -> JoinedRoomsResponse:
        return JoinedRoomsResponse(list(self.created))

    async def room_get_state_event(
        self, room_id: str, event_type: str, state_key: str
    ) -> RoomGetStateEventResponse:
        if event_type == "m.room.member":
            membership = "leave" if state_key in self.gone else "join"
            return RoomGetStateEventResponse({"membership": membership}, event_type, "", room_id)
        return RoomGetStateEventResponse(self.markers.get(room_id, {}), event_type, "", room_id)

    async def room_send(
        self,
        room_id: str,
        message_type: str,
        content: dict[str, Any],
        tx_id: str,
        ignore_unverified_devices: bool = False,
    ) -> RoomSendResponse:
        body = str(content.get("body", ""))
        if any(word in body for word in self.send_raises):
            raise KeyError(room_id)
        self.sent.append((room_id, content))
        return RoomSendResponse(f"$ev-{tx_id}", room_id)

    async def room_invite(self, room_id: str, user_id: str) -> Any:
        self.invites.append(user_id)
        if self.invite_error is not None:
            return ErrorResponse("Failed to fetch profile", self.invite_error)
        return RoomInviteResponse()

    async def room_kick(self, room_id: str, user_id: str, reason: str | None) -> RoomKickResponse:
        self.kicks.append(user_id)
        return RoomKickResponse()


def sender(db: Database, client: FakeClient, hook: Any = None) -> OutboxSender:
    async def created(tx: Transaction, item: OutboxItem, room_id: str) -> None:
        if hook is not None:
            await hook()
        await on_room_created(tx, item.payload["family_id"], room_id, POLICY)

    async def failed(tx: Transaction, item: OutboxItem, error: str) -> None:
        await on_item_failed(tx, item, error, POLICY)

    return OutboxSender(
        db,
        client,  # type: ignore[arg-type]
        on_room_created=created,
        on_sent=on_message_sent,
        on_failed=failed,
        content=lambda item: written(db, item),
    )


async def drain(db: Database, out: OutboxSender, clock: ManualClock, passes: int = 40) -> None:
    """Run passes, moving the clock past every back-off, until nothing is pending."""
    for _ in range(passes):
        await out.drain_once()
        async with db.read() as tx:
            if await tx.outbox.pending_count() == 0:
                return
        clock.advance(minutes=6)


async def test_a_crash_after_create_room_does_not_make_a_second_room(
    db: Database, clock: ManualClock
) -> None:
    await say(db, "!family new LDC-2026-0042", sender=LEAD, room_id=DM, room_kind=_direct())
    client = FakeClient()

    async def die() -> None:
        raise Crash

    with pytest.raises(Crash):
        await sender(db, client, die).drain_once()
    # Restarted: the first try was recorded before its request, so the room is looked for.
    await drain(db, sender(db, client), clock)
    assert client.created == ["!made1:council.example"]
    async with db.read() as tx:
        family = await tx.families.by_reference("LDC-2026-0042")
    assert family is not None
    assert family.room_id == "!made1:council.example"


async def test_a_failing_set_up_fails_the_item_once_and_tells_the_creator(
    db: Database, clock: ManualClock
) -> None:
    await say(db, "!family new LDC-2026-0042", sender=LEAD, room_id=DM, room_kind=_direct())
    client = FakeClient()

    async def broken() -> None:
        raise RuntimeError("set-up failed")

    out = sender(db, client, broken)
    await drain(db, out, clock)
    await drain(db, out, clock)
    assert len(client.created) == 1, "a failing hook must not create a room on every pass"
    items = await outbox(db)
    [create] = [item for item in items if item.kind == "create_room"]
    assert create.failed_at is not None
    told = [item for item in items if item.room_id == DM and item.kind == "message"]
    assert told, "the creator is told"
    # The reference is free again.
    await say(db, "!family new LDC-2026-0042", sender=LEAD, room_id=DM, room_kind=_direct())
    assert [entry.action for entry in await audits(db, "family_create_failed")]


async def test_an_undeliverable_invite_ends_in_bounded_time_and_leaves_no_phantom(
    db: Database, clock: ManualClock
) -> None:
    family = await active_family(db)
    await _settle(db)
    client = FakeClient()
    client.invite_error = "M_UNKNOWN"
    await say(db, f"!invite {NURSE} School nurse", sender=LEAD)
    async with db.transaction() as tx:
        reply = {"msgtype": "m.notice", "body": "a later reply"}
        await tx.outbox.enqueue_message("later-reply", ROOM, reply)
    out = sender(db, client)
    await out.drain_once()
    # The later reply was not held back behind the invite that is backing off.
    assert [content["body"] for _, content in client.sent] == ["a later reply"]
    await drain(db, out, clock)
    assert len(client.invites) == MAX_ATTEMPTS
    [invite] = [
        item
        for item in await outbox(db)
        if item.kind == "invite" and item.payload["user_id"] == NURSE
    ]
    assert invite.failed_at is not None
    async with db.read() as tx:
        nurse = await tx.involvements.get(family.id, NURSE)
    assert nurse is not None
    assert not nurse.is_active
    whois = await say(db, "!whois", sender=LEAD)
    assert "Nina" not in whois.body
    told = [c for _, c in client.sent if "could not deliver the invitation" in str(c.get("body"))]
    assert told
    assert told[0]["m.mentions"] == {"user_ids": [LEAD]}
    assert told[0]["msgtype"] == "m.text"
    # Nothing blocks inviting again.
    again = await say(db, f"!invite {NURSE} School nurse", sender=LEAD)
    assert again.body.startswith("I have invited")


async def test_an_unsendable_message_holds_back_the_rest_of_its_room_only(
    db: Database, clock: ManualClock
) -> None:
    await active_family(db, joined=(TEACHER,))
    await _settle(db)
    client = FakeClient()
    client.send_raises = {"is no longer involved"}
    await run(db, "!leave", sender=TEACHER)
    out = sender(db, client)
    await out.drain_once()
    assert client.kicks == [], "the kick waits for the goodbye before it"
    client.send_raises = set()
    clock.advance(minutes=6)
    await drain(db, out, clock)
    assert client.kicks == [TEACHER]
    goodbye = next(i for i, (_, c) in enumerate(client.sent) if "no longer" in str(c["body"]))
    assert goodbye == len(client.sent) - 1 or client.kicks


async def test_a_prompt_that_cannot_be_sent_is_asked_again(
    db: Database, clock: ManualClock
) -> None:
    from tests.unit.test_prompts import DUE, do_sweep, prompts

    family = await active_family(db, joined=(TEACHER,))
    await _settle(db)
    clock.current = DUE + timedelta(minutes=5)
    assert (await do_sweep(db)).prompted == 2
    client = FakeClient()
    client.send_raises = {"are you still involved"}
    await drain(db, sender(db, client), clock)
    async with db.read() as tx:
        teacher = await tx.involvements.get(family.id, TEACHER)
    assert teacher is not None
    assert teacher.next_prompt_at is not None
    assert await prompts(db) == []
    client.send_raises = set()
    clock.current = teacher.next_prompt_at + timedelta(minutes=1)
    assert (await do_sweep(db)).prompted == 2


async def test_sent_messages_keep_no_content(db: Database, clock: ManualClock) -> None:
    await active_family(db)
    await say(db, "!whois", sender=LEAD)
    await drain(db, sender(db, FakeClient()), clock)
    sent = [item for item in await outbox(db) if item.kind == "message"]
    assert sent
    assert all(item.sent_at is not None for item in sent)
    assert all("content" not in item.payload for item in sent)


def _direct() -> Any:
    from commands.framework.context import RoomKind

    return RoomKind.DIRECT


async def _settle(db: Database) -> None:
    """The family's own set-up items count as delivered."""
    async with db.transaction() as tx:
        for item in await tx.outbox.due(1000):
            await tx.outbox.mark_sent(item.id, None)


async def test_a_question_that_drains_late_waits_for_working_hours(
    db: Database, clock: ManualClock
) -> None:
    from bot.app import _hold
    from tests.unit.test_prompts import DUE, do_sweep
    from tests.unit.test_team_commands_support import SETTINGS

    await active_family(db, joined=(TEACHER,))
    await _settle(db)
    clock.current = DUE + timedelta(minutes=5)  # Monday 11:35 in London: open
    assert (await do_sweep(db)).prompted == 2
    clock.current = DUE + timedelta(hours=9)  # 20:30 in London: the backlog drains late
    client = FakeClient()
    out = OutboxSender(
        db,
        client,  # type: ignore[arg-type]
        hold_until=lambda item, now: _hold(client, SETTINGS, item, now),  # type: ignore[arg-type]
        content=lambda item: written(db, item),
    )
    await out.drain_once()
    assert client.sent == []
    opening = SETTINGS.schedule.next_open(clock.current)
    held = [item for item in await outbox(db) if item.next_attempt_at is not None]
    assert [(item.next_attempt_at, item.last_error) for item in held] == [
        (opening, "outside working hours"),
        (opening, None),  # the second question waits with the first
    ]
    clock.current = opening
    await drain(db, out, clock)
    assert len(client.sent) == 2


def test_a_message_for_someone_yet_to_join_says_so_while_it_waits() -> None:
    from types import SimpleNamespace

    from bot.app import JOIN_WAIT, _hold
    from rooms.direct_chat import AWAIT_JOIN_KEY
    from tests.unit.test_team_commands_support import SETTINGS

    now = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    item = OutboxItem(1, "t1", "!dm:council.example", "message",
                      {"type": "m.room.message", "content": {}, AWAIT_JOIN_KEY: LEAD},
                      0, now, None, None, None, None, None)
    invited = SimpleNamespace(users={LEAD: None}, invited_users={LEAD: None})
    client = SimpleNamespace(rooms={item.room_id: invited})
    assert _hold(client, SETTINGS, item, now) == (  # type: ignore[arg-type]
        now + JOIN_WAIT, "waiting for the recipient to join"
    )
    invited.invited_users = {}
    assert _hold(client, SETTINGS, item, now) is None  # type: ignore[arg-type]


async def test_a_room_the_homeserver_will_not_create_frees_its_reference(
    db: Database, clock: ManualClock
) -> None:
    await say(db, "!family new LDC-2026-0042", sender=LEAD, room_id=DM, room_kind=_direct())
    client = FakeClient()

    async def refuse(response: type, method: str, path: str, data: str) -> Any:
        return ErrorResponse("You are not allowed to create rooms", "M_FORBIDDEN")

    client._send = refuse  # type: ignore[method-assign]
    await drain(db, sender(db, client), clock)
    items = await outbox(db)
    [create] = [item for item in items if item.kind == "create_room"]
    assert create.failed_at is not None
    [told] = [content for room, content in client.sent if room == DM]
    assert told["m.mentions"] == {"user_ids": [LEAD]}
    assert "could not create the room" in told["body"]
    again = await say(db, "!family new LDC-2026-0042", sender=LEAD, room_id=DM, room_kind=_direct())
    assert "I am creating the room" in again.body


async def test_display_names_come_from_room_state_without_a_request() -> None:
    from nio import MatrixRoom

    from bot.matrix import NioGateway

    class NoNetwork:
        user_id = "@patchwork:council.example"

        def __init__(self) -> None:
            room = MatrixRoom(ROOM, self.user_id, encrypted=True)
            room.add_member(TEACHER, "Tara Teacher", None)
            other = MatrixRoom("!other:council.example", self.user_id, encrypted=True)
            other.add_member(TEACHER, "Tara (Oak Primary)", None)
            self.rooms = {ROOM: room, "!other:council.example": other}

        async def get_displayname(self, user_id: str) -> Any:
            raise AssertionError("no profile request may be made inside a command")

    gateway = NioGateway(NoNetwork())  # type: ignore[arg-type]
    assert await gateway.get_display_name(TEACHER) == "Tara Teacher"
    assert await gateway.get_display_name(NURSE) is None
    # The command's own room is asked first (not every room the bot is in, in turn).
    assert await gateway.get_display_name(TEACHER, "!other:council.example") == "Tara (Oak Primary)"


async def test_an_invite_refused_because_it_already_arrived_counts_as_sent(
    db: Database, clock: ManualClock
) -> None:
    family = await active_family(db)
    await _settle(db)
    await say(db, f"!invite {NURSE} School nurse", sender=LEAD)
    client = FakeClient()

    async def already(room_id: str, user_id: str) -> Any:
        return ErrorResponse(f"{user_id} is already in the room.", "M_FORBIDDEN")

    client.room_invite = already  # type: ignore[method-assign]
    await drain(db, sender(db, client), clock)
    [invite] = [i for i in await outbox(db) if i.kind == "invite" and i.payload["user_id"] == NURSE]
    assert invite.sent_at is not None
    assert invite.failed_at is None
    assert client.sent == [], "nobody is told of a failure that did not happen"
    async with db.read() as tx:
        nurse = await tx.involvements.get(family.id, NURSE)
    assert nurse is not None
    assert (nurse.status, nurse.invited_by) == ("active", LEAD)
