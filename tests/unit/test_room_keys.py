"""A message is encrypted only with a room key every member device received.

The fake client below does what nio 0.26 does, step for step, where it matters: `room_send`
awaits the member list of a room it has not loaded yet and then shares a key if the session
needs one, without checking the share; `share_group_session` claims missing Olm sessions and
skips a device it still has none for, and marks the session shared whatever came of its
to-device requests. The network can fail any of those requests.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from nio import (
    JoinedMembersError,
    JoinedMembersResponse,
    KeysClaimError,
    KeysClaimResponse,
    KeysQueryError,
    KeysQueryResponse,
)

from bot.matrix import KeySharingIncomplete
from bot.outbox_actions import Performer
from storage import OutboxItem

ROOM = "!family:localhost"
TEACHER = "@teacher:localhost"
DEVICE = "TEACHERDEVICE"


@dataclass(eq=False)
class Session:
    id: int
    shared: bool = False
    users_shared_with: set[tuple[str, str]] = field(default_factory=set)
    users_ignored: set[tuple[str, str]] = field(default_factory=set)
    expired: bool = False


@dataclass
class Device:
    id: str = DEVICE
    curve25519: str = "teacher-curve"


class Olm:
    def __init__(self, net: Network) -> None:
        self.net = net
        self.outbound_group_sessions: dict[str, Session] = {}
        self.devices: dict[str, list[Device]] = {TEACHER: [Device()]}
        self.olm_sessions: set[str] = {"teacher-curve"}
        self.device_store = self
        self.session_store = self
        self.should_query_keys = False
        self.ids = itertools.count(1)

    def active_user_devices(self, user_id: str) -> list[Device]:
        return self.devices.get(user_id, []) if not self.should_query_keys else []

    def get(self, curve: str) -> object | None:
        return object() if curve in self.olm_sessions else None

    def is_device_blacklisted(self, device: Device) -> bool:
        return False

    def should_share_group_session(self, room_id: str) -> bool:
        session = self.outbound_group_sessions.get(room_id)
        return session is None or session.expired or not session.shared

    def get_missing_sessions(self, users: list[str]) -> dict[str, list[str]]:
        return {user: [d.id for d in self.active_user_devices(user)
                       if d.curve25519 not in self.olm_sessions] for user in users
                if any(d.curve25519 not in self.olm_sessions
                       for d in self.active_user_devices(user))}


@dataclass
class Network:
    to_device_fails: bool = False
    claim_fails: bool = False
    query_fails: bool = False
    members_fail: bool = False
    during_members: list[Any] = field(default_factory=list)
    """Run while a member-list request is on its way: what the sync loop does meanwhile."""


@dataclass
class Room:
    users: dict[str, object]
    members_synced: bool = False
    encrypted: bool = True


class NioLikeClient:
    device_id = "PATCHWORK"
    should_upload_keys = False
    should_claim_keys = False

    def __init__(self, net: Network) -> None:
        self.net = net
        self.olm = Olm(net)
        self.rooms = {ROOM: Room(users={TEACHER: object()})}
        self.sent: list[tuple[str, bool]] = []
        """(what was sent, whether the teacher's device holds the key it was encrypted with)"""

    @property
    def should_query_keys(self) -> bool:
        return self.olm.should_query_keys

    async def joined_members(self, room_id: str) -> Any:
        await asyncio.sleep(0)
        for step in self.net.during_members:
            step(self)
        if self.net.members_fail:
            return JoinedMembersError("connection lost")
        self.rooms[room_id].members_synced = True
        return JoinedMembersResponse(members=[], room_id=room_id)

    async def keys_query(self) -> Any:
        await asyncio.sleep(0)
        if self.net.query_fails:
            return KeysQueryError("connection lost")
        self.olm.should_query_keys = False
        return KeysQueryResponse(device_keys={}, failures={})

    async def keys_claim(self, missing: dict[str, list[str]]) -> Any:
        await asyncio.sleep(0)
        if self.net.claim_fails:
            return KeysClaimError("connection lost")
        for user_id in missing:
            self.olm.olm_sessions.update(d.curve25519 for d in self.olm.devices[user_id])
        return KeysClaimResponse(one_time_keys={}, failures={})

    async def send_to_device_messages(self) -> list[Any]:
        return []

    def get_missing_sessions(self, room_id: str) -> dict[str, list[str]]:
        return self.olm.get_missing_sessions(list(self.rooms[room_id].users))

    def invalidate_outbound_session(self, room_id: str) -> None:
        self.olm.outbound_group_sessions.pop(room_id, None)

    async def share_group_session(self, room_id: str, **kwargs: Any) -> None:
        olm = self.olm
        missing = self.get_missing_sessions(room_id)
        if missing:
            await self.keys_claim(missing)
        session = olm.outbound_group_sessions.get(room_id)
        if session is None or session.shared:
            session = olm.outbound_group_sessions[room_id] = Session(next(olm.ids))
        await asyncio.sleep(0)
        for user_id in self.rooms[room_id].users:
            for device in olm.active_user_devices(user_id):
                if device.curve25519 in olm.olm_sessions and not self.net.to_device_fails:
                    session.users_shared_with.add((user_id, device.id))
        session.shared = True  # whatever came of the to-device requests, as nio does

    async def room_send(self, room_id: str, event_type: str, content: dict[str, Any],
                        **kwargs: Any) -> Any:
        room = self.rooms[room_id]
        if not room.members_synced:
            await self.joined_members(room_id)
        if self.olm.should_share_group_session(room_id):
            await self.share_group_session(room_id)
        session = self.olm.outbound_group_sessions[room_id]
        self.sent.append((content["body"], (TEACHER, DEVICE) in session.users_shared_with))
        return object()


def message(body: str) -> OutboxItem:
    return OutboxItem(id=1, txn_id="txn", room_id=ROOM, kind="message",
                      payload={"content": {"msgtype": "m.text", "body": body}}, attempts=0,
                      created_at=datetime.now(UTC), next_attempt_at=None, sent_at=None,
                      result=None, last_error=None, failed_at=None)


async def send_until_sent(client: NioLikeClient, body: str, heal: Any) -> int:
    """Send as the outbox would, retrying after each failure; `heal` mends the network after
    the first. Returns the number of failed tries."""
    performer = Performer(client)
    for failures in range(3):
        try:
            await performer.perform(message(body))
        except KeySharingIncomplete:
            heal(client.net)
            continue
        return failures
    raise AssertionError("never sent")


async def test_the_key_is_not_replaced_unchecked_while_nio_loads_the_member_list() -> None:
    client = NioLikeClient(Network())

    def sync_meanwhile(client: NioLikeClient) -> None:
        # A sync lands while the member list is loading: a member's devices changed, so nio
        # drops the room's key; and from now on to-device requests are lost.
        client.invalidate_outbound_session(ROOM)
        client.net.to_device_fails = True

    client.net.during_members.append(sync_meanwhile)

    def heal(net: Network) -> None:
        net.during_members.clear()
        net.to_device_fails = False

    failures = await send_until_sent(client, "first answer after a start", heal)
    await Performer(client).perform(message("the next answer"))

    assert [ok for _, ok in client.sent] == [True, True], client.sent
    assert failures == 1


@pytest.mark.parametrize(
    "failing",
    [
        "claim_fails",  # a device the bot has never talked to: its one-time key is not claimed
        "query_fails",  # the teacher's devices are not known yet, and the query fails
        "to_device_fails",  # the room key is shared, and the to-device request is lost
    ],
)
async def test_a_send_waits_until_the_room_key_can_reach_every_device(failing: str) -> None:
    client = NioLikeClient(Network(**{failing: True}))
    client.rooms[ROOM].members_synced = True
    if failing == "claim_fails":
        client.olm.olm_sessions.clear()
    if failing == "query_fails":
        client.olm.should_query_keys = True

    def heal(net: Network) -> None:
        setattr(net, failing, False)

    failures = await send_until_sent(client, "welcome", heal)

    assert client.sent == [("welcome", True)]
    assert failures == 1


async def test_a_member_list_that_cannot_be_loaded_holds_the_send_back() -> None:
    client = NioLikeClient(Network(members_fail=True))
    with pytest.raises(KeySharingIncomplete):
        await Performer(client).perform(message("welcome"))
    assert client.sent == []
