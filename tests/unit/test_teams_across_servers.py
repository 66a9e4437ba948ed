"""Teams across homeservers, offline: what was found wrong when a family's team spanned three
federating Synapses, each pinned by a test that failed before its fix.

1. a user whose homeserver does not answer is not "no such user"; the invite is queued;
2. a send to a homeserver that does not answer holds back no other room and no local reply;
3. the bot never encrypts for someone it has just removed;
4. `!whois` shows each member's homeserver;
5. every family room carries a server ACL of the allowed servers, kept current;
6. a kick that found nobody to remove is not announced, nor logged as an error.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from nio import (
    ErrorResponse,
    ProfileGetResponse,
    RoomGetStateEventResponse,
    RoomGetStateResponse,
    RoomInviteResponse,
    RoomKickResponse,
    RoomSendResponse,
)
from nio.rooms import MatrixRoom

from bot.matrix import NioGateway
from bot.outbox import MAX_LANES, OutboxSender
from rooms.family_room import SERVER_ACL_EVENT, create_room_request, server_acl
from rooms.policy import TeamPolicy
from rooms.reconcile import reconcile_family
from storage import Database
from tests.unit.test_team_commands_support import (
    BOT,
    LEAD,
    NURSE,
    OUTSIDER,
    POLICY,
    REF,
    ROOM,
    TEACHER,
    FakeMatrix,
    ManualClock,
    active_family,
    member,
    outbox,
    say,
)

pytest_plugins = ("tests.unit.test_team_commands_support",)

OTHER_ROOM = "!other:council.example"


# --- 1. a homeserver that does not answer is not "no such user" ------------------------------


class ProfileClient:
    """nio's get_profile as Synapse answers it for a local or a remote user."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    async def get_profile(self, user_id: str) -> Any:
        answer = self.answers[user_id]
        if answer == "hang":
            await asyncio.sleep(60)
        return answer


async def test_only_m_not_found_means_there_is_no_such_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("bot.matrix.PROFILE_TIMEOUT", timedelta(seconds=0.05))
    down = ErrorResponse("Failed to fetch profile", "M_UNKNOWN")
    down.status_code = "M_UNKNOWN"
    missing = ErrorResponse("Profile was not found", "M_NOT_FOUND")
    missing_here = ErrorResponse("No row found (profiles)", "M_UNKNOWN")
    missing_here.status_code = "M_UNKNOWN"
    missing_here.transport_response = SimpleNamespace(status=404)  # type: ignore[assignment]
    client = ProfileClient(
        {
            TEACHER: ProfileGetResponse("Tara", None, {}),
            NURSE: down,
            OUTSIDER: missing,
            LEAD: "hang",
            BOT: missing_here,
        }
    )
    gateway = await NioGateway(client).look_up_accounts(  # type: ignore[arg-type]
        [TEACHER, NURSE, OUTSIDER, LEAD, BOT]
    )
    assert await gateway.user_exists(BOT) is False, "Synapse's 404 for a missing local user"
    assert await gateway.user_exists(TEACHER) is True
    assert await gateway.user_exists(OUTSIDER) is False
    assert await gateway.user_exists(NURSE) is None, "a 502 from a server that is down"
    assert await gateway.user_exists(LEAD) is None, "no answer in time"


@dataclass
class UnansweredMatrix(FakeMatrix):
    """The invitee's homeserver does not answer profile look-ups."""

    async def user_exists(self, user_id: str) -> bool | None:
        return None


async def test_an_invite_to_a_server_that_does_not_answer_is_queued_and_says_so(
    db: Database,
) -> None:
    family = await active_family(db)
    reply = await say(db, f"!invite {NURSE} School nurse", sender=LEAD, matrix=UnansweredMatrix())
    assert reply.body.startswith("I have invited")
    assert "will be delivered when it does" in reply.body
    invites = [item for item in await outbox(db) if item.kind == "invite"]
    assert invites[-1].payload["user_id"] == NURSE
    async with db.read() as tx:
        nurse = await tx.involvements.get(family.id, NURSE)
    assert nurse is not None
    assert nurse.membership == "invite"


# --- 2, 3, 6. the outbox -------------------------------------------------------------------


class SlowServerClient:
    """nio as the outbox uses it; invites to `down_server` hang until released, as a request
    to a homeserver that does not answer does."""

    user_id = BOT
    access_token = "token"

    def __init__(self, down_server: str = "nhs.example") -> None:
        self.down_server = down_server
        self.release = asyncio.Event()
        self.olm: Any = None
        self.rooms: dict[str, Any] = {}
        self.sent: list[tuple[str, str]] = []
        self.kicks: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.members: dict[str, set[str]] = {}
        self.recipients: list[set[str]] = []
        self.invalidated: list[str] = []
        self.kick_error: ErrorResponse | None = None

    async def room_invite(self, room_id: str, user_id: str) -> Any:
        if user_id.endswith(self.down_server):
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                await self.release.wait()
            finally:
                self.in_flight -= 1
        return RoomInviteResponse()

    async def room_send(
        self,
        room_id: str,
        message_type: str,
        content: dict[str, Any],
        tx_id: str,
        ignore_unverified_devices: bool = False,
    ) -> RoomSendResponse:
        room = self.rooms.get(room_id)
        if room is not None:
            self.recipients.append(set(room.users))
        self.sent.append((room_id, str(content.get("body"))))
        return RoomSendResponse(f"$ev-{tx_id}", room_id)

    async def room_kick(self, room_id: str, user_id: str, reason: str | None) -> Any:
        if self.kick_error is not None:
            return self.kick_error
        self.kicks.append(user_id)
        self.members.get(room_id, set()).discard(user_id)
        return RoomKickResponse()

    async def room_get_state_event(
        self, room_id: str, event_type: str, state_key: str
    ) -> RoomGetStateEventResponse:
        present = state_key in self.members.get(room_id, set())
        content = {"membership": "join" if present else "leave"}
        return RoomGetStateEventResponse(content, event_type, state_key, room_id)

    async def room_get_state(self, room_id: str) -> RoomGetStateResponse:
        events = [
            {"type": "m.room.member", "state_key": user, "content": {"membership": "join"}}
            for user in self.members.get(room_id, set())
        ]
        return RoomGetStateResponse(events, room_id)

    def invalidate_outbound_session(self, room_id: str) -> None:
        self.invalidated.append(room_id)

    # Key upkeep: nothing to do in these tests.
    should_upload_keys = should_query_keys = should_claim_keys = False

    async def send_to_device_messages(self) -> None:
        return None


async def _enqueue(db: Database, room_id: str, body: str) -> None:
    async with db.transaction() as tx:
        content = {"msgtype": "m.notice", "body": body}
        await tx.outbox.enqueue_message(f"txn-{body}", room_id, content)


async def _settle(db: Database) -> None:
    async with db.transaction() as tx:
        for item in await tx.outbox.due(1000):
            await tx.outbox.mark_sent(item.id, None)


async def _until(check: Any, what: str, timeout: float = 3) -> None:  # noqa: ASYNC109
    try:
        async with asyncio.timeout(timeout):
            while not check():  # noqa: ASYNC110 - the sender's tasks change what we check
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"waited {timeout:g} s for {what}") from None


async def test_an_invite_to_a_server_that_does_not_answer_holds_back_no_reply(
    db: Database,
) -> None:
    await active_family(db)
    await _settle(db)
    client = SlowServerClient()
    # Invites to the down server first, then local replies in its room and in another room.
    for index in range(MAX_LANES + 2):
        await say(
            db, f"!invite @nurse{index}:nhs.example Nurse", sender=LEAD, matrix=UnansweredMatrix()
        )
    await _settle_messages(db)
    await _enqueue(db, ROOM, "reply in the same room")
    await _enqueue(db, OTHER_ROOM, "reply elsewhere")
    out = OutboxSender(db, client)  # type: ignore[arg-type]
    stop = asyncio.Event()
    running = asyncio.create_task(out.run(stop))
    try:
        await _until(
            lambda: {body for _, body in client.sent}
            >= {"reply in the same room", "reply elsewhere"},
            "the local replies while invites hang",
        )
        assert client.in_flight >= 1, "the invites are still waiting for their server"
        assert client.most_in_flight <= MAX_LANES, "concurrency is bounded"
        client.release.set()
        await _until(lambda: client.in_flight == 0, "the invites to finish")
        for _ in range(300):  # the last two start as the first lanes end
            async with db.read() as tx:
                if await tx.outbox.pending_count() == 0:
                    break
            await asyncio.sleep(0.01)
    finally:
        client.release.set()
        stop.set()
        out.wake()
        await running
    async with db.read() as tx:
        assert await tx.outbox.pending_count() == 0, "every invite was sent in the end"


async def _settle_messages(db: Database) -> None:
    """The `!invite` replies count as sent: only the invites are left."""
    async with db.transaction() as tx:
        for item in await tx.outbox.due(1000):
            if item.kind == "message":
                await tx.outbox.mark_sent(item.id, None)


async def test_messages_of_one_room_keep_their_order(db: Database) -> None:
    client = SlowServerClient()
    for index in range(5):
        await _enqueue(db, ROOM, f"message {index}")
    await OutboxSender(db, client).drain_once()  # type: ignore[arg-type]
    assert [body for _, body in client.sent] == [f"message {index}" for index in range(5)]


def _encrypted_room(*users: str) -> MatrixRoom:
    room = MatrixRoom(ROOM, BOT, encrypted=True)
    for user_id in (BOT, *users):
        room.add_member(user_id, None, None)
    room.members_synced = True
    return room


async def test_no_room_key_for_someone_the_bot_just_removed(db: Database) -> None:
    await active_family(db)
    await _settle(db)
    client = SlowServerClient()
    client.olm = SimpleNamespace(should_share_group_session=lambda room_id: False)
    client.rooms[ROOM] = _encrypted_room(LEAD, OUTSIDER)
    client.members[ROOM] = {BOT, LEAD, OUTSIDER}
    await member(db, OUTSIDER, "join")  # a join from a server that is not allowed: revoked
    out = OutboxSender(db, client)  # type: ignore[arg-type]
    while await out.drain_once():
        pass
    assert client.kicks == [OUTSIDER]
    [announced] = client.recipients
    assert OUTSIDER not in announced, "the revocation notice was encrypted for the outsider"
    assert client.invalidated, "a room key they may hold is not used again"

    # A sync that was on its way puts them back in nio's list; the homeserver knows better.
    client.rooms[ROOM].add_member(OUTSIDER, None, None)
    await _enqueue(db, ROOM, "a later message")
    await out.drain_once()
    assert OUTSIDER not in client.recipients[-1]


async def test_a_kick_that_found_nobody_is_not_announced_nor_an_error(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    await active_family(db)
    await _settle(db)
    client = SlowServerClient()
    client.members[ROOM] = {BOT, LEAD, OUTSIDER}
    # The outsider's invite and their join are both revoked: two kicks are queued.
    await member(db, OUTSIDER, "invite", sender=LEAD)
    await member(db, OUTSIDER, "join")
    kicks = [item for item in await outbox(db) if item.kind == "kick"]
    assert len(kicks) == 2
    out = OutboxSender(db, client)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO):
        while await out.drain_once():
            pass
    assert client.kicks == [OUTSIDER], "the second kick found nobody and was not sent"
    notices = [body for _, body in client.sent]
    assert len(notices) == 1, notices
    assert notices[0].startswith(f"I withdrew the invitation to {OUTSIDER}")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    # Synapse's own answer when the target has gone in between: not announced either.
    client.members[ROOM].add(TEACHER)
    client.kick_error = ErrorResponse("The target user is not in the room", "M_FORBIDDEN")
    client.kick_error.status_code = "M_FORBIDDEN"
    await member(db, "@eve2:elsewhere.example", "invite", sender=LEAD)
    client.members[ROOM].add("@eve2:elsewhere.example")
    while await out.drain_once():
        pass
    assert len(client.sent) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- 4. !whois shows homeservers -----------------------------------------------------------


async def test_whois_shows_each_members_organisation_and_homeserver(db: Database) -> None:
    await active_family(db, joined=(TEACHER,))
    await say(db, "!contact set org Oakfield School", sender=TEACHER)
    reply = await say(db, "!whois", sender=LEAD)
    teacher_line = next(line for line in reply.body.splitlines() if "Tara" in line)
    assert "Oakfield School" in teacher_line
    assert "school.example" in teacher_line.replace(TEACHER, "")
    lead_line = next(line for line in reply.body.splitlines() if "Lee Lead" in line)
    assert "council.example" in lead_line.replace(LEAD, "")


# --- 5. the server ACL ---------------------------------------------------------------------


def test_every_family_room_is_created_with_an_acl_of_the_allowed_servers() -> None:
    policy = TeamPolicy(
        bot_user_id="@patchwork:127.0.0.1:8481",
        allowed_servers=frozenset({"127.0.0.2:8482", "School.example"}),
        admins=frozenset(),
        family_creators="anyone",
        prompt_interval=timedelta(weeks=8),
    )
    request = create_room_request(REF, LEAD, policy)
    [acl] = [e for e in request["initial_state"] if e["type"] == SERVER_ACL_EVENT]
    # Synapse checks other servers by host and its own name with its port: both are listed.
    # The bot's own server is never left out.
    assert acl["content"] == {
        "allow": ["127.0.0.1", "127.0.0.1:8481", "127.0.0.2", "127.0.0.2:8482", "school.example"],
        "deny": [],
        "allow_ip_literals": True,
    }
    assert server_acl(POLICY)["allow_ip_literals"] is False
    assert "elsewhere.example" not in server_acl(POLICY)["allow"]


async def test_start_up_keeps_the_acl_current_with_the_policy(
    db: Database, clock: ManualClock
) -> None:
    family = await active_family(db)

    async def reconcile(policy: TeamPolicy) -> list[dict[str, Any]]:
        async with db.transaction() as tx:
            await reconcile_family(tx, family, {LEAD: "join"}, policy)
        return [
            item.payload["content"]
            for item in await outbox(db)
            if item.kind == "state" and item.payload["event_type"] == SERVER_ACL_EVENT
        ]

    assert await reconcile(POLICY) == [], "the room was created with this ACL"
    wider = TeamPolicy(
        bot_user_id=BOT,
        allowed_servers=POLICY.allowed_servers | {"police.example"},
        admins=POLICY.admins,
        family_creators="anyone",
        prompt_interval=POLICY.prompt_interval,
    )
    [updated] = await reconcile(wider)
    assert "police.example" in updated["allow"]
    assert "council.example" in updated["allow"]
    clock.advance(minutes=1)
    assert len(await reconcile(wider)) == 1, "nothing more while it stays the same"
    assert len(await reconcile(POLICY)) == 2, "and back again when the policy is narrowed"
