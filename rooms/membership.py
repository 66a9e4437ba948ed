"""Mirroring `m.room.member` changes in family rooms into the roster.

Room membership is the truth about who is on a team. Whoever made a change (a `!invite`,
Element's own invite button, a leave, a kick), the process hands the event to
`on_member_event` inside the event's transaction, and this module:

1. ignores rooms that are not family rooms, the bot itself, and changes the roster already
   shows (a display-name change, a replayed event, the invite `!invite` already recorded);
2. revokes an invite or join the admission rules forbid (`rooms.admission`), with a kick and
   a notice;
3. otherwise records the change, one audit row, and tells the team in one short line; a new
   member's welcome (set your role, share your contact details) goes to them alone, in their
   direct chat with the bot (`rooms.direct_chat`), not to the whole team.

Every outbox item's transaction id comes from the member event's id, so handling the same
event twice sends nothing twice.
"""

from __future__ import annotations

from markup import Markup, blocks, bullet_list, code, paragraph, room_link, text, user
from rooms.actions import post_notice
from rooms.admission import PRESENT, admission_refusal, revoke
from rooms.direct_chat import tell_privately
from rooms.family_room import governance_gaps
from rooms.family_view import left_view, refresh_views
from rooms.people import named
from rooms.policy import TeamPolicy, server_of
from rooms.prompts import DirectRooms, add_interval, lead_handover_hint
from storage import EndReason, Family, Involvement, Membership, Transaction

ROSTER_MEMBERSHIPS: frozenset[str] = frozenset({"invite", "join", "leave", "ban"})
DISPLAY_NAME_LIMIT = 80


async def on_member_event(
    tx: Transaction,
    *,
    room_id: str,
    user_id: str,
    membership: str,
    prev_membership: str | None,
    sender: str,
    display_name: str | None,
    reason: str | None,
    event_id: str,
    policy: TeamPolicy,
    direct_rooms: DirectRooms | None = None,
) -> None:
    """Mirror one membership change in a family room (see the module docstring).

    `prev_membership` and `reason` are accepted as the event carries them, but the roster's
    own last-seen membership decides what changed, so a missed event cannot confuse it, and
    the kick reason (free text in unencrypted room state) is not copied anywhere.
    """
    if user_id == policy.bot_user_id or membership not in ROSTER_MEMBERSHIPS:
        return
    family = await tx.families.by_room(room_id)
    if family is None:
        if membership in ("leave", "ban"):
            await left_view(tx, room_id, user_id, event_id)
        return
    if family.status == "purged":
        return
    current = await tx.involvements.get(family.id, user_id)
    before: Membership | None = None if current is None else current.membership
    if before == membership:
        return
    if membership in PRESENT:
        refusal = await admission_refusal(tx, family, user_id, policy)
        if refusal is not None:
            await revoke(
                tx,
                family,
                user_id,
                membership,
                refusal,
                policy,
                actor=sender,
                cause=(event_id,),
            )
            return
    elif current is None:
        # Leaving a room one was never on the team of (a revoked invite, say) changes nothing.
        return
    after: Membership = _membership(membership)
    was_active = current is not None and current.is_active
    involvement, changed = await tx.involvements.upsert_membership(
        family.id,
        user_id,
        after,
        invited_by=sender if after == "invite" else None,
        end_reason=None if after in PRESENT else _end_reason(user_id, sender),
    )
    if not changed:
        return
    name = await remember_display_name(tx, user_id, display_name)
    involvement = await schedule_first_prompt(tx, involvement, policy)
    detail: dict[str, object] = {
        "user": user_id,
        "before": before,
        "after": after,
        "event_id": event_id,
    }
    if involvement.end_reason is not None and after not in PRESENT:
        detail["end_reason"] = involvement.end_reason
    await tx.audit.append(sender, "membership", family_id=family.id, detail=detail)
    notice = await _notice(tx, family, involvement, before, sender, name, was_active, policy)
    if notice is not None:
        await post_notice(tx, room_id, notice, event_id, "membership-notice")
    if (after == "join") != (before == "join"):
        await _tell_family(tx, family, involvement, event_id, policy, joined=after == "join")
    if after == "join" and involvement.is_active:
        greeting = await private_welcome(tx, family, involvement, name, policy)
        await tell_privately(
            tx, involvement.user_id, greeting, direct_rooms, event_id, "welcome"
        )


async def _tell_family(
    tx: Transaction,
    family: Family,
    involvement: Involvement,
    event_id: str,
    policy: TeamPolicy,
    *,
    joined: bool,
) -> None:
    """Family members who see their team get the card updated and a short note, naming the
    practitioner by role and organisation; a hidden involvement changes nothing they see."""
    if involvement.sensitive:
        return
    person = await tx.practitioners.get(involvement.user_id)
    who = involvement.role or "practitioner"
    if person is not None and person.organisation:
        who += f" from {person.organisation}"
    note = paragraph(text(f"A {who} {'joined' if joined else 'left'} the team supporting you."))
    await refresh_views(tx, family, event_id, actor=policy.bot_user_id, note=note)


def _membership(value: str) -> Membership:
    if value == "invite":
        return "invite"
    if value == "join":
        return "join"
    if value == "ban":
        return "ban"
    return "leave"


def _end_reason(user_id: str, sender: str) -> EndReason:
    """Leaving oneself is `left`; being kicked or banned by someone else is `removed`."""
    return "left" if sender == user_id else "removed"


async def remember_display_name(
    tx: Transaction, user_id: str, display_name: str | None
) -> str | None:
    """Keep the room's display name until the practitioner gives their own with !contact;
    returns the name to show (the event's, else the one on record)."""
    practitioner = await tx.practitioners.ensure(user_id)
    given = (display_name or "").strip()[:DISPLAY_NAME_LIMIT] or None
    if given is not None and practitioner.display_name is None:
        await tx.practitioners.update_contact(user_id, display_name=given)
    return given or practitioner.display_name


async def schedule_first_prompt(
    tx: Transaction, involvement: Involvement, policy: TeamPolicy
) -> Involvement:
    """A joined, active member is first asked whether they are still involved one interval on."""
    if (
        involvement.membership == "join"
        and involvement.is_active
        and involvement.next_prompt_at is None
    ):
        return await tx.involvements.set_next_prompt(
            involvement.id, add_interval(tx.now(), policy.prompt_interval, policy.timezone)
        )
    return involvement


async def welcome(
    tx: Transaction, family: Family, involvement: Involvement, prefix: str
) -> list[Markup]:
    """What a new member is asked: their role, their consent to share contact details, and
    for a lead of a pending team, what must be recorded first."""
    parts: list[Markup] = []
    if involvement.role is None:
        parts.append(
            paragraph(
                "What is your role in this case? Tell the team with "
                + code(f"{prefix}role <your role>")
                + ", for example "
                + code(f"{prefix}role Class teacher")
                + "."
            )
        )
    else:
        parts.append(
            paragraph(
                "You were invited as "
                + code(involvement.role)
                + ". If that is not right, change it with "
                + code(f"{prefix}role <your role>")
                + "."
            )
        )
    practitioner = await tx.practitioners.get(involvement.user_id)
    if practitioner is None or practitioner.share_contact_changed_at is None:
        parts.append(
            paragraph(
                "May I show your phone number and email address to the teams you are on? "
                "Answer "
                + code(f"{prefix}contact share on")
                + " or "
                + code(f"{prefix}contact share off")
                + "; you can change your mind at any time. Add your details with "
                + code(f"{prefix}contact set phone <number>")
                + " and "
                + code(f"{prefix}contact set email <address>")
                + "."
            )
        )
    if involvement.is_lead and family.status == "pending":
        parts.append(
            paragraph(
                "You are this family's lead. Before anyone else can join, please record:"
            )
        )
        parts.append(bullet_list(governance_gaps(family, prefix)))
    return parts


async def private_welcome(
    tx: Transaction,
    family: Family,
    involvement: Involvement,
    display_name: str | None,
    policy: TeamPolicy,
) -> Markup:
    """The welcome a new member reads in their direct chat: which team (a link that opens its
    room), then what they are asked to do."""
    who = user(involvement.user_id, display_name, mention=True)
    team = room_link(
        family.room_id or "", f"Team {family.reference}", server_of(policy.bot_user_id)
    )
    return blocks(
        paragraph("Welcome to " + team + ", " + who + "!"),
        *await welcome(tx, family, involvement, policy.command_prefix),
    )


async def _notice(
    tx: Transaction,
    family: Family,
    involvement: Involvement,
    before: Membership | None,
    sender: str,
    display_name: str | None,
    was_active: bool,
    policy: TeamPolicy,
) -> Markup | None:
    """The short notice the team gets: joins and leaves, not invites (the room shows those)."""
    after = involvement.membership
    if after == "invite":
        return None
    if after == "join":
        if not involvement.is_active:
            return None
        who = user(involvement.user_id, display_name)
        if involvement.role is None:
            return paragraph(who + " joined the team; their role is not given yet.")
        return paragraph(who + " joined the team as " + code(involvement.role) + ".")
    if not was_active:
        return None
    who = user(involvement.user_id, display_name)
    by = await named(tx, sender)
    if before == "invite":
        if sender == involvement.user_id:
            message = who + " did not accept the invitation to this team."
        else:
            message = "The invitation to " + who + " was withdrawn by " + by + "."
    elif sender == involvement.user_id:
        message = who + " left the team."
    else:
        message = who + " was removed from the team by " + by + "."
    if involvement.is_lead:
        message += " " + lead_handover_hint(policy.command_prefix)
    return paragraph(message)
