"""What happens when an outbox item fails for good: nothing is left half done, and the person
who asked is told.

The outbox sender calls `on_item_failed` in the transaction that marks the item failed:

- a room that could not be created releases its family's reference, so `!family new` can be
  tried again, and the creator is told in the chat they asked in;
- an invite that could not be delivered (refused, or its homeserver never answered through
  every retry) takes its invitee off the roster (no phantom member in `!whois`, nothing
  blocking a new invite), and the team is told, naming who asked;
- a still-involved question that could not be sent is asked again later, so the involvement
  still gets its prompt, reminder and lapse.
Anything else (a reply, a kick) is only logged by the sender.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from markup import Markup, code, paragraph, user
from rooms.actions import CREATE_ROOM, INVITE, NOTIFY_ROOM_KEY, REQUESTED_BY_KEY, post_notice
from rooms.policy import TeamPolicy
from rooms.prompts import PROMPT_PAYLOAD_KEY
from storage import OutboxItem, Transaction

log = logging.getLogger(__name__)

PROMPT_RETRY = timedelta(hours=1)
"""How long after a failed send a still-involved question is asked again (in working hours)."""


async def on_item_failed(
    tx: Transaction, item: OutboxItem, error: str, policy: TeamPolicy
) -> None:
    if item.kind == CREATE_ROOM:
        await _room_not_created(tx, item, policy)
    elif item.kind == INVITE:
        await _invite_not_delivered(tx, item, policy)
    elif isinstance(item.payload.get(PROMPT_PAYLOAD_KEY), int):
        await _prompt_not_sent(tx, item.payload[PROMPT_PAYLOAD_KEY], policy)


async def _room_not_created(tx: Transaction, item: OutboxItem, policy: TeamPolicy) -> None:
    family = await tx.families.get(int(item.payload["family_id"]))
    if family is None or family.room_id is not None or family.status != "pending":
        return
    await tx.families.release(family.id)
    await tx.audit.append(
        policy.bot_user_id,
        "family_create_failed",
        family_id=family.id,
        detail={"reference": family.reference},
    )
    room_id = item.payload.get(NOTIFY_ROOM_KEY)
    if not isinstance(room_id, str):
        return
    prefix = policy.command_prefix
    message = paragraph(
        user(family.created_by, mention=True)
        + ": I could not create the room for "
        + code(family.reference)
        + ", so nothing was kept. Please try again with "
        + code(f"{prefix}family new {family.reference}")
        + "; if it fails again, tell your administrator."
    )
    await post_notice(tx, room_id, message, item.txn_id, "failed", notify=True)


async def _invite_not_delivered(tx: Transaction, item: OutboxItem, policy: TeamPolicy) -> None:
    user_id = item.payload.get("user_id")
    family = await tx.families.by_room(item.room_id)
    if not isinstance(user_id, str) or family is None:
        return
    current = await tx.involvements.get(family.id, user_id)
    if current is not None and current.is_active and current.membership == "invite":
        await tx.involvements.upsert_membership(family.id, user_id, "leave", end_reason="removed")
    await tx.audit.append(
        policy.bot_user_id, "invite_failed", family_id=family.id, detail={"user": user_id}
    )
    asked = item.payload.get(REQUESTED_BY_KEY)
    message: Markup = "I could not deliver the invitation to " + user(user_id)
    message += (
        ": their homeserver did not accept it, or did not answer however often I tried. "
        "They are not on the team."
    )
    if isinstance(asked, str):
        message = user(asked, mention=True) + ": " + message
    message += " Check the id, or try again later with " + code(
        f"{policy.command_prefix}invite {user_id} <role>"
    ) + "."
    await post_notice(tx, item.room_id, paragraph(message), item.txn_id, "failed", notify=True)


async def _prompt_not_sent(tx: Transaction, prompt_id: int, policy: TeamPolicy) -> None:
    prompt = await tx.prompts.get(prompt_id)
    if prompt is None or prompt.sent_at is not None or prompt.answered_at is not None:
        return
    await tx.prompts.delete(prompt_id)
    await tx.involvements.set_next_prompt(prompt.involvement_id, tx.now() + PROMPT_RETRY)
    log.info("prompt %s was not sent; its involvement will be asked again", prompt_id)
