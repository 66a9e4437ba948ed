"""Who may be on a family's team: the one place that decides, for `!invite` and for member
events alike (an invite from Element's own button, a join, what start-up reconciliation finds),
and how a refused invite or join is revoked.

A user may be on a team only with an account on one of `policy.allowed_servers`, only while the
family's record is open, and, while the family is `pending` (its governance not yet recorded),
only as its lead or an administrator. `!invite` adds its own rules on top: the inviter must be
on the team (or an administrator), nobody is invited twice, and nobody at all while pending.
"""

from __future__ import annotations

from typing import Literal

from markup import Markup, blocks, bullet_list, paragraph, user
from rooms.actions import kick_user
from rooms.family_room import governance_gaps
from rooms.policy import TeamPolicy, server_of
from storage import Family, Involvement, Transaction

PRESENT: frozenset[str] = frozenset({"invite", "join"})
"""Memberships that put someone in the room (or on their way in)."""

Refusal = Literal["server", "pending", "closed"]
"""Why a member event is revoked."""

InviteRefusal = Literal[
    "pending", "closed", "bot", "not_on_team", "server", "stayed", "invited", "member"
]
"""Why `!invite` refuses: the admission rules, plus the inviter's and the invitee's state."""


def is_on_team(involvement: Involvement | None) -> bool:
    """Active and invited or joined: on the team as far as the room and roster agree."""
    return (
        involvement is not None and involvement.is_active and involvement.membership in PRESENT
    )


def server_rule(user_id: str, policy: TeamPolicy) -> str:
    """Why an account on another server cannot be on a team, in the user's terms."""
    return (
        f"only people with an account on {policy.servers_text()} can be on a Patchwork team, "
        f"and this account is on {server_of(user_id)}"
    )


async def invite_refusal(
    tx: Transaction, family: Family, inviter: str, invitee: str, policy: TeamPolicy
) -> InviteRefusal | None:
    """Why `inviter` may not invite `invitee` to this family's team, or None if they may.

    Whether the invitee's account exists is for the caller to ask Matrix afterwards.
    """
    if family.status == "pending":
        return "pending"
    if not family.is_open:
        return "closed"
    if invitee == policy.bot_user_id:
        return "bot"
    if not policy.is_admin(inviter) and not is_on_team(
        await tx.involvements.get(family.id, inviter)
    ):
        return "not_on_team"
    if not policy.allows(invitee):
        return "server"
    current = await tx.involvements.get(family.id, invitee)
    if current is not None and current.membership in PRESENT:
        if not current.is_active:
            return "stayed"
        return "invited" if current.membership == "invite" else "member"
    return None


async def admission_refusal(
    tx: Transaction, family: Family, user_id: str, policy: TeamPolicy
) -> Refusal | None:
    """Why this user may not be invited to or join this family's room, or None if they may."""
    if not policy.allows(user_id):
        return "server"
    if family.status in ("closed", "purged"):
        return "closed"
    if family.status == "pending" and not await may_join_pending(tx, family, user_id, policy):
        return "pending"
    return None


async def may_join_pending(
    tx: Transaction, family: Family, user_id: str, policy: TeamPolicy
) -> bool:
    """Before the governance records exist, only the lead and administrators may be in."""
    if user_id == family.created_by or policy.is_admin(user_id):
        return True
    lead = await tx.involvements.lead(family.id)
    return lead is not None and lead.user_id == user_id


async def revoke(
    tx: Transaction,
    family: Family,
    user_id: str,
    membership: str,
    refusal: Refusal,
    policy: TeamPolicy,
    *,
    actor: str,
    cause: tuple[str, ...],
) -> bool:
    """Queue a kick (withdrawing an invite, or removing a member) that tells the room why
    once it has succeeded: when the person's join and their invite are both revoked, the
    second kick finds them gone and nothing is announced twice.

    Returns False, and writes nothing, if this cause already queued the kick.
    """
    if family.room_id is None:
        return False
    kicked = await kick_user(
        tx,
        family.room_id,
        user_id,
        _kick_reason(refusal, policy),
        *cause,
        "revoke",
        announce=_revocation_notice(family, user_id, membership, refusal, policy),
    )
    if not kicked:
        return False
    await tx.audit.append(
        actor,
        "membership_revoked",
        family_id=family.id,
        detail={"user": user_id, "membership": membership, "rule": refusal, "cause": list(cause)},
    )
    return True


def _kick_reason(refusal: Refusal, policy: TeamPolicy) -> str:
    """Shown by clients next to the kick; room state is not encrypted, so nothing personal."""
    if refusal == "server":
        return f"Only accounts on {policy.servers_text()} can be on this team."
    if refusal == "closed":
        return "This family's record is closed."
    return "This team is still being set up; only its lead can be here for now."


def _revocation_notice(
    family: Family,
    user_id: str,
    membership: str,
    refusal: Refusal,
    policy: TeamPolicy,
) -> Markup:
    who = user(user_id)
    opening: Markup = (
        "I withdrew the invitation to " + who
        if membership == "invite"
        else "I removed " + who + " from this room"
    )
    if refusal == "server":
        return paragraph(opening + ": " + server_rule(user_id, policy) + ".")
    if refusal == "closed":
        return paragraph(opening + ": this family's record is closed, so nobody can join.")
    gaps = governance_gaps(family, policy.command_prefix)
    return blocks(
        paragraph(
            opening + ": this team is still being set up. Before anyone other than the lead "
            "can join, the lead must record:"
        ),
        bullet_list(gaps),
        paragraph("Then invite them again."),
    )
