"""Does what one outbox item says, once, against the homeserver: a room event (encrypted when
the room is), an invite, kick, join, leave, state event, or a new room.

`bot.outbox` decides when an item goes and records what came of it; this module only makes the
requests. A message may name what to say instead of carrying it (a still-involved question):
its content is built when it is sent, through the `content` hook, as an export's file is built
through the `attachment` hook, so nothing the sweep decided waits in the queue as text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nio import (
    AsyncClient,
    ErrorResponse,
    JoinedRoomsResponse,
    JoinResponse,
    LocalProtocolError,
    RoomCreateResponse,
    RoomGetStateEventResponse,
    RoomInviteResponse,
    RoomKickResponse,
    RoomLeaveResponse,
    RoomPutStateResponse,
)
from nio.api import Api

from bot.attachments import upload_encrypted
from bot.matrix import (
    forget_member,
    refresh_members,
    share_room_key,
    wait_for_room,
)
from rooms.exports import EXPORT, Attachment
from rooms.family_room import FAMILY_STATE_EVENT
from storage import OutboxItem

log = logging.getLogger(__name__)

KICK_SETTLE_SECONDS = 60.0
"""For this long after the bot removed someone, its encrypted sends in that room first ask the
homeserver who is still a member, so a late sync cannot put the removed person back."""
ROOM_WAIT_SECONDS = 5.0
"""How long a send waits for the sync to bring a room nio does not know yet (one the bot has
just created or joined) before the try counts as failed."""
RACE_RETRY_SECONDS = 0.05
"""nio's key sharing can raise KeyError while the sync loop is changing the room's members;
the send is tried again once after this pause, without counting a failed attempt."""

# The file an export item stands for, built when it is sent (nothing personal is queued).
AttachmentHook = Callable[[OutboxItem], Awaitable[Attachment]]
# The content of a message that names what to say instead of carrying it, built when it is
# sent; None when it is no longer to be said (its involvement ended, its family was purged).
ContentHook = Callable[[OutboxItem], Awaitable[dict[str, Any] | None]]

NOT_IN_ROOM = object()
"""What performing a kick returns when its target has already gone."""
NOTHING_TO_SAY = object()
"""What performing a message returns when its content hook says it is no longer to be sent."""


class RoomNotKnown(LookupError):
    """The client has not synced the room yet, so it cannot encrypt for it."""


class Performer:
    """Makes the request of one outbox item; the caller records what came of it."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        attachment: AttachmentHook | None = None,
        content: ContentHook | None = None,
    ) -> None:
        self._client = client
        self._attachment = attachment
        self._content = content
        self._keys = asyncio.Lock()
        """nio's key upload, query and claim are not safe to run twice at once."""
        self._kicked_at: dict[str, float] = {}

    def kicked(self, item: OutboxItem) -> None:
        """A kick was accepted: its target no longer counts as a member, here and for keys."""
        forget_member(self._client, item.room_id, str(item.payload["user_id"]))
        self._kicked_at[item.room_id] = time.monotonic()

    def already_done(self, item: OutboxItem, response: ErrorResponse) -> bool:
        """An invite refused because its target is already invited or in the room: an earlier
        try was accepted and then lost (a crash, or a response lost on the way back), so the
        invite has done its work."""
        if item.kind != "invite" or response.status_code != "M_FORBIDDEN":
            return False
        room = self._client.rooms.get(item.room_id)
        user_id = item.payload.get("user_id")
        in_room = room is not None and user_id in room.users
        return in_room or "already in the room" in (response.message or "")

    async def perform(self, item: OutboxItem) -> Any:
        payload = item.payload
        client = self._client
        if item.kind == EXPORT and self._attachment is not None:
            content = await upload_encrypted(client, await self._attachment(item))
            if isinstance(content, ErrorResponse):
                return content
            return await self._send_event(item, "m.room.message", content)
        if item.kind == "message":
            message = payload.get("content")
            if message is None and self._content is not None:
                message = await self._content(item)
                if message is None:
                    return NOTHING_TO_SAY
            if message is None:
                raise ValueError("a message with no content and no way to build it")
            return await self._send_event(item, payload.get("type", "m.room.message"), message)
        if item.kind == "invite":
            return _ok_if(await client.room_invite(item.room_id, payload["user_id"]),
                          RoomInviteResponse)
        if item.kind == "kick":
            if not await self._in_room(item.room_id, payload["user_id"]):
                return NOT_IN_ROOM
            return _ok_if(
                await client.room_kick(item.room_id, payload["user_id"], payload.get("reason")),
                RoomKickResponse,
            )
        if item.kind == "join":
            return _ok_if(await client.join(item.room_id), JoinResponse)
        if item.kind == "leave":
            left = _ok_if(await client.room_leave(item.room_id), RoomLeaveResponse)
            if payload.get("forget") and not isinstance(left, ErrorResponse):
                # A purged family's room: gone from the bot's room list for good.
                await client.room_forget(item.room_id)
            return left
        if item.kind == "state":
            return _ok_if(
                await client.room_put_state(
                    item.room_id,
                    payload["event_type"],
                    payload["content"],
                    payload.get("state_key", ""),
                ),
                RoomPutStateResponse,
            )
        if item.kind == "create_room":
            return await self._create_room(item)
        raise ValueError(f"unknown outbox item kind {item.kind!r}")

    async def _send_event(self, item: OutboxItem, event_type: str, content: dict[str, Any]) -> Any:
        """Send, first waiting a little for a room the sync has not brought yet (nio cannot
        encrypt for it: a reply right after a room was created or joined), and trying once
        more when nio's key sharing races the sync loop's membership handling."""
        client = self._client
        if getattr(client, "olm", None) is not None and item.room_id not in client.rooms:
            # Without encryption nio sends to any room id; with it, it must know the room.
            if not await wait_for_room(client, item.room_id, ROOM_WAIT_SECONDS):
                raise RoomNotKnown(f"the room {item.room_id} has not been synced yet")
        try:
            return await self._encrypt_and_send(item, event_type, content)
        except (KeyError, LocalProtocolError):
            log.debug("outbox item %s raced the sync; trying once more", item.id, exc_info=True)
            await asyncio.sleep(RACE_RETRY_SECONDS)
            return await self._encrypt_and_send(item, event_type, content)

    async def _encrypt_and_send(
        self, item: OutboxItem, event_type: str, content: dict[str, Any]
    ) -> Any:
        client = self._client
        room = client.rooms.get(item.room_id)
        if room is not None and room.encrypted:
            async with self._keys:
                kicked_at = self._kicked_at.get(item.room_id)
                if kicked_at is not None and time.monotonic() - kicked_at < KICK_SETTLE_SECONDS:
                    await refresh_members(client, item.room_id)
                await share_room_key(client, item.room_id)
        # Nothing awaits between the checked share and nio's encrypting (see share_room_key).
        return await client.room_send(
            item.room_id,
            event_type,
            content,
            tx_id=item.txn_id,
            ignore_unverified_devices=True,
        )

    async def _in_room(self, room_id: str, user_id: str) -> bool:
        """Whether the homeserver says the user is invited or joined (else a kick is moot)."""
        state = await self._client.room_get_state_event(room_id, "m.room.member", user_id)
        if isinstance(state, RoomGetStateEventResponse):
            return state.content.get("membership") in ("invite", "join")
        return getattr(state, "status_code", None) != "M_NOT_FOUND"

    async def _create_room(self, item: OutboxItem) -> Any:
        """createRoom has no transaction id, so a retry first looks for the room an earlier
        try may have created (marked by its family state event) before creating another."""
        request = item.payload["request"]
        marker = _family_marker(request)
        if item.attempts > 0 and marker is not None:
            # An earlier try was recorded before its request: it may have made the room.
            existing = await self._find_room_with_marker(marker)
            if existing is not None:
                log.info("found the room %s created by an earlier try", existing)
                return RoomCreateResponse(existing)
        path = Api._build_path(["createRoom"], {"access_token": self._client.access_token})
        return await self._client._send(RoomCreateResponse, "POST", path, Api.to_json(request))

    async def _find_room_with_marker(self, marker: dict[str, Any]) -> str | None:
        rooms = await self._client.joined_rooms()
        if not isinstance(rooms, JoinedRoomsResponse):
            return None
        for room_id in rooms.rooms:
            state = await self._client.room_get_state_event(room_id, FAMILY_STATE_EVENT, "")
            if isinstance(state, RoomGetStateEventResponse) and state.content == marker:
                return str(room_id)
        return None


def kick_found_nobody(item: OutboxItem, response: object) -> bool:
    return (
        item.kind == "kick"
        and isinstance(response, ErrorResponse)
        and "not in the room" in (response.message or "")
    )


def _family_marker(request: dict[str, Any]) -> dict[str, Any] | None:
    for event in request.get("initial_state", []):
        if event.get("type") == FAMILY_STATE_EVENT:
            content: dict[str, Any] = event.get("content", {})
            return content
    return None


def _ok_if(response: Any, expected: type) -> Any:
    """Room actions answer with their own response types; pass errors through unchanged."""
    if isinstance(response, expected | ErrorResponse):
        return response
    raise TypeError(f"unexpected response {type(response).__name__}")
