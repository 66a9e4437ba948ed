"""Queuing what the team logic decides to say or do in Matrix: notices, invites, kicks, state.

Nothing here talks to Matrix. Each helper writes one outbox item inside the caller's
transaction, with a transaction id derived from its cause (an event id and a purpose, say), so
replaying the cause queues nothing new. The process's outbox sender performs the items.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from markup import Markup, Reply
from storage import INTERACTIVE, Transaction, transaction_id

NOTIFY_ROOM_KEY = "notify_room"
"""Payload key of a create_room item: the chat where the creator asked, told if it fails."""
REQUESTED_BY_KEY = "requested_by"
"""Payload key of an invite: who asked for it (None for the bot's own), told if it fails."""

ANNOUNCE_KEY = "announce"
"""Payload key of a kick: the notice content the sender posts once the kick succeeded (a kick
that failed, say because its target had already gone, is never announced)."""

INVITE = "invite"
KICK = "kick"
MESSAGE = "message"
STATE = "state"
CREATE_ROOM = "create_room"
LEAVE = "leave"


async def post_notice(
    tx: Transaction,
    room_id: str,
    message: Markup,
    *cause: str,
    priority: int = INTERACTIVE,
    notify: bool = False,
) -> bool:
    """Queue an `m.notice`, or with `notify` an `m.text` that notifies the people in
    `message.mentions` (and only them). True if new."""
    content = Reply.from_markup(message, notify=notify).to_content()
    return await tx.outbox.enqueue_message(
        transaction_id(*cause), room_id, content, priority=priority
    )


QueuedItem = tuple[str, str, str, dict[str, Any]]
"""(transaction id, room id, kind, payload): one item of `enqueue_many`."""


async def invite_user(
    tx: Transaction,
    room_id: str,
    user_id: str,
    reason: str | None,
    *cause: str,
    requested_by: str | None = None,
) -> bool:
    """Queue an invite; `requested_by` is told if it cannot be delivered."""
    payload: dict[str, Any] = {"user_id": user_id, REQUESTED_BY_KEY: requested_by}
    if reason:
        payload["reason"] = reason
    return await tx.outbox.enqueue(transaction_id(*cause), room_id, INVITE, payload)


async def kick_user(
    tx: Transaction,
    room_id: str,
    user_id: str,
    reason: str,
    *cause: str,
    priority: int = INTERACTIVE,
    announce: Markup | None = None,
) -> bool:
    """Queue a kick; `announce` is posted as a notice only once the kick has succeeded."""
    txn_id, _, kind, payload = kick_item(room_id, user_id, reason, *cause)
    if announce is not None:
        payload[ANNOUNCE_KEY] = Reply.from_markup(announce).to_content()
    return await tx.outbox.enqueue(txn_id, room_id, kind, payload, priority=priority)


def kick_item(room_id: str, user_id: str, reason: str, *cause: str) -> QueuedItem:
    """A kick with nothing to announce, for `enqueue_many`."""
    return transaction_id(*cause), room_id, KICK, {"user_id": user_id, "reason": reason}


async def send_state(
    tx: Transaction,
    room_id: str,
    event_type: str,
    content: Mapping[str, Any],
    *cause: str,
    state_key: str = "",
    priority: int = INTERACTIVE,
) -> bool:
    payload = {"event_type": event_type, "state_key": state_key, "content": dict(content)}
    return await tx.outbox.enqueue(
        transaction_id(*cause), room_id, STATE, payload, priority=priority
    )
