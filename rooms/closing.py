"""Closing a family's record and purging it when its retention has run out.

Closing ends every involvement as `case_closed`, tells the room, and makes it read-only for
members (power levels), so the team keeps what it already has but nothing new is added. The
record is kept for `TeamPolicy.closed_case_retention`; then the purge deletes the roster,
the governance records and the prompts, reduces the family's audit rows to a pseudonymous
minimum, forgets the room and leaves it, and frees the reference for use again.
"""

from __future__ import annotations

from typing import Any

from markup import Markup, blocks, code, paragraph, text
from rooms.actions import LEAVE, send_state
from rooms.family_room import STATE_POWER, power_levels
from rooms.family_view import end_all_views
from rooms.policy import TeamPolicy
from storage import EndReason, Family, Transaction, transaction_id

CLOSED: EndReason = "case_closed"


def read_only_power_levels() -> dict[str, Any]:
    """The room's power levels once closed: members may read and leave, nothing more."""
    levels = power_levels(None)
    levels.update(events_default=STATE_POWER, invite=STATE_POWER, events={})
    return levels


async def close_family(
    tx: Transaction,
    family: Family,
    *,
    actor: str,
    reason: str | None,
    policy: TeamPolicy,
    cause: str,
    consent_withdrawn: bool = False,
) -> Family:
    """Close an open family: end every involvement and lock the room. The caller posts
    `closing_notice` (a command replies with it)."""
    if consent_withdrawn:
        family = await tx.families.withdraw_consent(family.id)
        await tx.audit.append(actor, "family_consent_withdrawn", family_id=family.id)
    purge_after = tx.now() + policy.closed_case_retention
    closed = await tx.families.close(family.id, reason, purge_after=purge_after)
    ended = 0
    for involvement in await tx.involvements.for_family(family.id):
        ended += await tx.involvements.end(involvement.id, CLOSED)
    await end_all_views(tx, family, cause, actor=actor)
    await tx.audit.append(
        actor,
        "family_close",
        family_id=family.id,
        detail={
            "ended": ended,
            "reason": reason is not None,
            "consent_withdrawn": consent_withdrawn,
        },
    )
    if family.room_id is not None:
        await send_state(
            tx, family.room_id, "m.room.power_levels", read_only_power_levels(), cause, "read-only"
        )
    return closed


def closing_notice(family: Family) -> Markup:
    why = (
        "the family withdrew their consent"
        if family.consent_withdrawn_at is not None
        else "its lead closed it"
    )
    return blocks(
        paragraph(
            text(f"The record for {family.reference} is closed: {why}. ")
            + "This room is now read-only and everyone's involvement has ended."
        ),
        paragraph(
            "Patchwork keeps the record until "
            + code(_date(family))
            + " for the council's retention rules, then deletes it and leaves this room."
        ),
    )


def _date(family: Family) -> str:
    return "" if family.purge_after is None else family.purge_after.date().isoformat()


async def purge_family(tx: Transaction, family: Family, *, policy: TeamPolicy) -> Family:
    """Forget a closed family whose retention has run out, keeping only the minimal record."""
    room_id = family.room_id
    for view in await tx.views.for_family(family.id):  # ended when the family was closed
        if view.room_id is not None:
            await _leave_for_good(tx, view.room_id, f"view-{view.id}")
    await tx.views.delete_for_family(family.id)
    roster = await tx.involvements.delete_for_family(family.id)
    redacted = await tx.audit.redact_family(family.id)
    purged = await tx.families.purge(family.id)
    await tx.audit.append(
        policy.bot_user_id,
        "family_purged",
        family_id=family.id,
        detail={"roster_rows": roster, "audit_rows_reduced": redacted},
    )
    if room_id is not None:
        await _leave_for_good(tx, room_id, str(family.id))
    return purged


async def _leave_for_good(tx: Transaction, room_id: str, key: str) -> None:
    """Forget what is kept about a room and queue leaving and forgetting it."""
    await tx.sync.forget_room(room_id)
    await tx.outbox.forget_room(room_id)
    await tx.outbox.enqueue(transaction_id("purge", key), room_id, LEAVE, {"forget": True})
