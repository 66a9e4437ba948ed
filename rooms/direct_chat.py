"""Messages meant for one person, sent in their direct chat with the bot, opened if needed.

A welcome tells a new member what to do (their role, their contact details); the rest of the
team need not read it. `tell_privately` posts it in the person's encrypted direct chat with
the bot, or, when there is none, queues the creation of one (Element shows it as a direct
chat: `is_direct`, the trusted private chat preset, encryption from the start) with the
messages in the item, which `on_direct_chat_created` queues once the room exists. They are
held until the person has joined (`awaited_member`; the process's hold hook asks its synced
room state): their devices get the room key when they are in the room, and a message sent
before that would stay unreadable to them. Their join releases the messages at once
(`on_joined`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from markup import Markup, Reply
from rooms.actions import CREATE_ROOM, post_notice
from rooms.family_room import ENCRYPTION_ALGORITHM, initial_state
from rooms.prompts import DirectRooms
from storage import INTERACTIVE, OutboxItem, Transaction, transaction_id

DIRECT_FOR_KEY = "direct_for"
"""Payload key of a create_room item that opens a direct chat: whom it is for."""
MESSAGES_KEY = "messages"
"""Payload key: the contents to send in the direct chat once it exists."""
AWAIT_JOIN_KEY = "await_join"
"""Payload key of a message held until this user has joined its room."""


def direct_chat_request(user_id: str) -> dict[str, Any]:
    """The createRoom body of an encrypted direct chat with `user_id`."""
    return {
        "preset": "trusted_private_chat",
        "visibility": "private",
        "is_direct": True,
        "invite": [user_id],
        "initial_state": [
            initial_state("m.room.encryption", {"algorithm": ENCRYPTION_ALGORITHM}),
        ],
    }


async def tell_privately(
    tx: Transaction,
    user_id: str,
    message: Markup,
    direct_rooms: DirectRooms | None,
    *cause: str,
    notify: bool = True,
    priority: int = INTERACTIVE,
) -> str | None:
    """Send `message` to `user_id` alone; the direct chat's id, or None while it is being
    opened. `notify` (the default: such a message asks them to act) makes it an `m.text`;
    `priority` BACKGROUND lets replies go first (welcomes found at start-up)."""
    room_id = None if direct_rooms is None else direct_rooms(user_id)
    if room_id is not None:
        await post_notice(
            tx, room_id, message, *cause, "direct", notify=notify, priority=priority
        )
        return room_id
    content = Reply.from_markup(message, notify=notify).to_content()
    txn_id = transaction_id(*cause, "open-direct")
    if await tx.outbox.get(txn_id) is not None:
        return None  # this cause was handled already
    opening = await _opening(tx, user_id)
    if opening is not None and opening.is_pending:
        # One direct chat per person: a second message waits in the same creation (welcomes
        # to several families at once would otherwise open a room each).
        await tx.outbox.add_to_list(opening.id, MESSAGES_KEY, content)
        return None
    if opening is not None and opening.result is not None:
        # Created, but not synced yet: the message goes in, held for their join like the rest.
        await _queue_in_direct(tx, txn_id, opening.result, content, user_id)
        return opening.result
    await tx.outbox.enqueue(
        txn_id,
        f"direct:{user_id}",
        CREATE_ROOM,
        {
            "request": direct_chat_request(user_id),
            DIRECT_FOR_KEY: user_id,
            MESSAGES_KEY: [content],
        },
        priority=priority,
    )
    return None


async def _opening(tx: Transaction, user_id: str) -> OutboxItem | None:
    """The latest creation of a direct chat with `user_id` that has not failed, if any."""
    items = await tx.outbox.for_room(f"direct:{user_id}", (CREATE_ROOM,))
    live = [item for item in items if item.failed_at is None]
    return live[-1] if live else None


async def _queue_in_direct(
    tx: Transaction, txn_id: str, room_id: str, content: Mapping[str, Any], user_id: str | None
) -> None:
    await tx.outbox.enqueue(
        txn_id,
        room_id,
        "message",
        {"type": "m.room.message", "content": content, AWAIT_JOIN_KEY: user_id},
    )


async def on_direct_chat_created(tx: Transaction, item: OutboxItem, room_id: str) -> None:
    """Queue the messages a direct chat was opened for, in the transaction that marks its
    creation sent (so a crash replays both together). They are read again here: a message
    may have joined them while the room was being created."""
    current = await tx.outbox.get(item.txn_id) or item
    messages = current.payload.get(MESSAGES_KEY) or []
    for index, content in enumerate(messages):
        await _queue_in_direct(
            tx, transaction_id(item.txn_id, "message", str(index)), room_id, content,
            item.payload.get(DIRECT_FOR_KEY),
        )


def awaited_member(payload: Mapping[str, Any]) -> str | None:
    """Whom a held message waits for, if anyone."""
    waiting = payload.get(AWAIT_JOIN_KEY)
    return waiting if isinstance(waiting, str) else None


async def on_joined(tx: Transaction, room_id: str, user_id: str) -> None:
    """`user_id` joined `room_id`: the messages held for them there may go now."""
    for item in await tx.outbox.for_room(room_id, ("message",)):
        if item.is_pending and awaited_member(item.payload) == user_id:
            await tx.outbox.mark_retry(item.id, "released by a join", tx.now(), counted=False)
