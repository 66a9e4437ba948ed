"""Start-up reconciliation: finding the membership changes that happened while the bot was down.

The process calls `reconcile_family` for each open family with the room's current members
(from a full-state sync). Whatever differs from the roster is recorded as if the member event
had been seen, with one audit row per change and a single notice telling the team, and the
invite policy is applied to anyone who should not be there. The room's server ACL is brought
up to date with `policy.allowed_servers` if the operator changed them.

There is no event id to derive transaction ids from, so they come from the family, the user,
the new membership and a stable marker, the id of the audit row that records the change:
running reconciliation again finds nothing left to change and queues nothing, and a later,
different change of the same person has an audit row, and so ids, of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from markup import Markup, blocks, bullet_list, paragraph
from rooms.actions import KICK, post_notice
from rooms.admission import PRESENT, Refusal, admission_refusal, revoke
from rooms.direct_chat import tell_privately
from rooms.family_room import keep_server_acl_current
from rooms.family_view import refresh_views
from rooms.membership import private_welcome, schedule_first_prompt
from rooms.people import named
from rooms.policy import TeamPolicy
from rooms.prompts import DirectRooms
from storage import BACKGROUND, AuditEntry, EndReason, Family, Involvement, Membership, Transaction

ChangeKind = Literal["added", "updated", "ended", "revoked"]
FOUND_AT = "start-up"


@dataclass(frozen=True)
class RosterChange:
    """One difference between the room and the roster, and what was done about it."""

    user_id: str
    before: Membership | None
    """The roster's membership before (None: not on the roster)."""
    after: str
    """The room's membership now; `leave` for someone no longer in the room."""
    kind: ChangeKind


async def reconcile_family(
    tx: Transaction,
    family: Family,
    members: Mapping[str, str],
    policy: TeamPolicy,
    direct_rooms: DirectRooms | None = None,
) -> list[RosterChange]:
    """Bring the roster in line with `members` (user id -> "join"/"invite"; other
    memberships such as "leave" or "ban" may be included and count as not in the room).
    Newcomers get their welcome in their direct chat with the bot, as a join seen live does."""
    if family.room_id is None or family.status == "purged":
        return []
    await keep_server_acl_current(tx, family, policy)
    room_id = family.room_id
    roster = {
        involvement.user_id: involvement
        for involvement in await tx.involvements.for_family(family.id, active_only=False)
    }
    in_room = {
        user_id: membership
        for user_id, membership in members.items()
        if membership in PRESENT and user_id != policy.bot_user_id
    }
    changes: list[RosterChange] = []
    told: list[RosterChange] = []
    markers: list[str] = []
    welcomes: list[Involvement] = []

    for user_id in sorted(roster):
        involvement = roster[user_id]
        if user_id == policy.bot_user_id or user_id in in_room:
            continue
        if involvement.membership not in PRESENT:
            continue
        # Gone from the room. Someone still on the team has left it; for someone whose
        # involvement had already ended (lapsed but stayed), only the last-seen membership
        # changes, and the team is not told again.
        after: Membership = "ban" if members.get(user_id) == "ban" else "leave"
        end_reason: EndReason = "removed" if after == "ban" else "left"
        await tx.involvements.upsert_membership(family.id, user_id, after, end_reason=end_reason)
        entry = await _audit(
            tx,
            family,
            policy,
            user_id,
            involvement.membership,
            after,
            end_reason if involvement.is_active else None,
        )
        change = RosterChange(
            user_id, involvement.membership, after, "ended" if involvement.is_active else "updated"
        )
        changes.append(change)
        if involvement.is_active:
            told.append(change)
            markers.append(_marker(user_id, after, entry))

    for user_id in sorted(in_room):
        membership = in_room[user_id]
        current = roster.get(user_id)
        before = None if current is None else current.membership
        if before == membership:
            continue
        was_on_team = current is not None and current.is_active
        if not was_on_team:
            refusal = await admission_refusal(tx, family, user_id, policy)
            if refusal is not None:
                if await _revoke_once(tx, family, user_id, membership, refusal, policy):
                    changes.append(RosterChange(user_id, before, membership, "revoked"))
                continue
        after = "join" if membership == "join" else "invite"
        involvement, changed = await tx.involvements.upsert_membership(family.id, user_id, after)
        if not changed:
            continue
        involvement = await schedule_first_prompt(tx, involvement, policy)
        entry = await _audit(tx, family, policy, user_id, before, after, None)
        kind: ChangeKind = "added" if involvement.is_active and not was_on_team else "updated"
        change = RosterChange(user_id, before, after, kind)
        changes.append(change)
        if involvement.is_active:
            told.append(change)
            markers.append(_marker(user_id, after, entry))
            if after == "join":
                welcomes.append(involvement)

    if told:
        notice = await _summary(tx, family, told)
        # Background work: a command answered meanwhile goes first (a start-up finds changes
        # in many rooms at once after an outage).
        await post_notice(
            tx, room_id, notice, "reconcile", str(family.id), *markers, priority=BACKGROUND
        )
        await refresh_views(tx, family, "reconcile", *markers, actor=policy.bot_user_id)
    for involvement in welcomes:
        greeting = await private_welcome(tx, family, involvement, None, policy)
        await tell_privately(
            tx, involvement.user_id, greeting, direct_rooms, "reconcile", str(family.id),
            *markers, "welcome", involvement.user_id, priority=BACKGROUND,
        )
    return changes


def _marker(user_id: str, after: str, entry: AuditEntry) -> str:
    """Identifies one change: who, to what, and the audit row recording it."""
    return f"{user_id}|{after}|{entry.id}"


async def _audit(
    tx: Transaction,
    family: Family,
    policy: TeamPolicy,
    user_id: str,
    before: str | None,
    after: str,
    end_reason: EndReason | None,
) -> AuditEntry:
    detail: dict[str, object] = {
        "user": user_id,
        "before": before,
        "after": after,
        "found_at": FOUND_AT,
    }
    if end_reason is not None:
        detail["end_reason"] = end_reason
    return await tx.audit.append(
        policy.bot_user_id, "membership", family_id=family.id, detail=detail
    )


async def _revoke_once(
    tx: Transaction,
    family: Family,
    user_id: str,
    membership: str,
    refusal: Refusal,
    policy: TeamPolicy,
) -> bool:
    """Revoke unless a kick for this user is already waiting to be sent.

    The count of earlier kicks makes the transaction id new for each separate occasion.
    """
    if family.room_id is None:
        return False
    earlier = await tx.outbox.for_user(family.room_id, KICK, user_id)
    if any(item.is_pending for item in earlier):
        return False
    return await revoke(
        tx,
        family,
        user_id,
        membership,
        refusal,
        policy,
        actor=policy.bot_user_id,
        cause=("reconcile", str(family.id), user_id, membership, str(len(earlier))),
    )


async def _summary(tx: Transaction, family: Family, changes: list[RosterChange]) -> Markup:
    """One notice for everything found, so a restart does not flood the room."""
    items: list[Markup] = []
    for change in changes:
        who = await named(tx, change.user_id)
        if change.kind == "ended":
            if change.after == "ban":
                items.append(who + " was removed from the team.")
            else:
                items.append(who + " is no longer in this room and has left the team.")
        elif change.after == "join":
            items.append(who + " joined the team.")
        else:
            items.append(who + " was invited to the team.")
    return blocks(paragraph("While I was offline, the team changed:"), bullet_list(items))
