"""`!invite`, `!role` and `!lead`: changing who is on a family's team and what they do there.

`!invite` records the invitee's role and queues the invite; the real `m.room.member` invite
event then arrives and is mirrored idempotently (`rooms.membership`). Nothing is written until
every check has passed.
"""

from __future__ import annotations

from commands.context import CommandContext
from commands.converters import Rest, Text, UserId
from commands.errors import UserInputError
from commands.registry import FAMILY_ROOM, Command, command
from commands.reply import Markup, blocks, bullet_list, code, paragraph
from commands.team_support import (
    LEAD_OR_ADMIN_MESSAGE,
    ROLE_LIMIT,
    current_family,
    is_on_team,
    lead_or_admin,
    person,
    team_policy,
    transaction,
)
from rooms.actions import invite_user
from rooms.family_room import governance_gaps, hand_over_lead
from rooms.policy import server_of


@command(
    "invite",
    summary="Invite a colleague to this family's team, with their role in this case.",
    description=(
        "For example: !invite @sam.patel:council.example Class teacher. Only colleagues "
        "with an account on an allowed server can join. They see messages from when they "
        "were invited, not earlier ones."
    ),
    where=FAMILY_ROOM,
    converters={"role": Text(label="role", max_length=ROLE_LIMIT)},
)
async def invite(ctx: CommandContext, who: UserId, role: Rest[str]) -> None:
    tx = transaction(ctx)
    policy = team_policy(ctx)
    family = await current_family(ctx)
    role = " ".join(role.split())
    if family.status == "pending":
        raise UserInputError(
            blocks(
                paragraph(
                    "This team is still being set up, so nobody else can join yet. First the "
                    "lead must record:"
                ),
                bullet_list(governance_gaps(family, ctx.prefix)),
            ),
            show_usage=False,
        )
    if not family.is_open:
        raise UserInputError(
            "This family's record is closed, so nobody can join its team.", show_usage=False
        )
    if who == policy.bot_user_id:
        raise UserInputError("I am already here, so there is no need to invite me.")
    if not ctx.is_admin and not is_on_team(await tx.involvements.get(family.id, ctx.sender)):
        raise UserInputError(
            "Only members of this family's team can invite colleagues.", show_usage=False
        )
    if not policy.allows(who):
        raise UserInputError(
            code(who)
            + f" cannot join: only people with an account on {policy.servers_text()} can be "
            f"on a Patchwork team, and this account is on {server_of(who)}."
        )
    current = await tx.involvements.get(family.id, who)
    if current is not None and current.membership in ("invite", "join"):
        if not current.is_active:
            state = "is still in this room, though no longer on the team"
        elif current.membership == "invite":
            state = "has already been invited to this team"
        else:
            state = "is already on this team"
        raise UserInputError(await person(ctx, who) + f" {state}.", show_usage=False)
    if not await ctx.matrix.user_exists(who):
        raise UserInputError(
            "I cannot find " + code(who) + " on their server. Please check the id; you can "
            "copy it from their profile in your app."
        )
    await tx.involvements.upsert_membership(family.id, who, "invite", invited_by=ctx.sender)
    await tx.involvements.set_role(family.id, who, role)
    await invite_user(
        tx,
        ctx.room_id,
        who,
        f"Invited to this Patchwork team by {ctx.sender}",
        ctx.event_id,
        "invite",
    )
    await tx.audit.append(
        ctx.sender, "invite", family_id=family.id, detail={"user": who, "role": role}
    )
    ctx.reply(
        paragraph(
            "I have invited "
            + await person(ctx, who)
            + " as "
            + code(role)
            + ". When they join I will welcome them and ask whether they share their contact "
            "details."
        )
    )


@command(
    "role",
    summary="Set your own role in this case.",
    description="For example: !role Class teacher. Everyone on the team sees it in !whois.",
    where=FAMILY_ROOM,
    converters={"role": Text(label="your role", max_length=ROLE_LIMIT)},
)
async def role(ctx: CommandContext, role: Rest[str]) -> None:
    tx = transaction(ctx)
    family = await current_family(ctx)
    role = " ".join(role.split())
    if not role:
        raise UserInputError("Tell me your role in this case, like " + code("Class teacher") + ".")
    if not is_on_team(await tx.involvements.get(family.id, ctx.sender)):
        raise UserInputError(
            "You are not on this family's team, so you have no role here.", show_usage=False
        )
    await tx.involvements.set_role(family.id, ctx.sender, role)
    await tx.audit.append(ctx.sender, "role", family_id=family.id, detail={"role": role})
    ctx.reply(paragraph("Thank you. Your role in this case is now " + code(role) + "."))


@command(
    "lead",
    summary="Hand the lead role for this family to another member.",
    description=(
        "The lead records the family's governance (lawful basis, whether the family was told) "
        "and moderates the room. Only the current lead or an administrator can hand it over, "
        "and only to someone who has joined this room."
    ),
    where=FAMILY_ROOM,
    permission=lead_or_admin,
    permission_message=LEAD_OR_ADMIN_MESSAGE,
)
async def lead(ctx: CommandContext, who: UserId) -> None:
    tx = transaction(ctx)
    family = await current_family(ctx)
    if not family.is_open:
        raise UserInputError("This family's record is closed.", show_usage=False)
    target = await tx.involvements.get(family.id, who)
    if target is None or not target.is_active or target.membership != "join":
        raise UserInputError(
            await person(ctx, who)
            + " is not a member of this team who has joined the room. Only a joined member "
            "can be the lead."
        )
    if target.is_lead:
        raise UserInputError(await person(ctx, who) + " is already the lead.", show_usage=False)
    await hand_over_lead(tx, family, who, actor=ctx.sender, cause_event_id=ctx.event_id)
    new_lead: Markup = await person(ctx, who, mention=True)
    ctx.reply(
        paragraph(
            new_lead
            + " is now the lead for this family, handed over by "
            + await person(ctx, ctx.sender)
            + "."
        )
    )


COMMANDS: tuple[Command, ...] = (invite, role, lead)
