"""`!invite`: inviting a colleague to this family's team, with their role in this case.

The rules of who may be invited are `rooms.admission`'s; this module words its refusals,
checks that the account exists, then records the role and queues the invite. The real
`m.room.member` invite event then arrives and is mirrored idempotently (`rooms.membership`).
Nothing is written until every check has passed.
"""

from __future__ import annotations

from typing import NoReturn

from commands.framework.context import CommandContext
from commands.framework.converters import Rest, Text, UserId
from commands.framework.errors import UserInputError
from commands.framework.registry import FAMILY_ROOM, Command, command
from commands.shared import ROLE_LIMIT, current_family, person
from markup import blocks, bullet_list, code, paragraph
from rooms.actions import invite_user
from rooms.admission import InviteRefusal, invite_refusal, server_rule
from rooms.family_room import governance_gaps
from storage import Family

INVITEE_STATE: dict[InviteRefusal, str] = {
    "stayed": "is still in this room, though no longer on the team",
    "invited": "has already been invited to this team",
    "member": "is already on this team",
}


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
    checks_accounts=True,
)
async def invite(ctx: CommandContext, who: UserId, role: Rest[str]) -> None:
    tx = ctx.tx
    family = await current_family(ctx)
    role = " ".join(role.split())
    refusal = await invite_refusal(tx, family, ctx.sender, who, ctx.services.policy)
    if refusal is not None:
        await _refuse(ctx, family, who, refusal)
    exists = await ctx.matrix.user_exists(who)
    if exists is False:
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
        requested_by=ctx.sender,
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
            + (
                ""
                if exists
                else " Their homeserver is not answering just now, so the invitation will be "
                "delivered when it does; if it never does, I will tell you."
            )
        )
    )


async def _refuse(
    ctx: CommandContext, family: Family, who: str, refusal: InviteRefusal
) -> NoReturn:
    """Raise the refusal in the inviter's terms."""
    if refusal == "pending":
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
    if refusal == "closed":
        raise UserInputError(
            "This family's record is closed, so nobody can join its team.", show_usage=False
        )
    if refusal == "bot":
        raise UserInputError("I am already here, so there is no need to invite me.")
    if refusal == "not_on_team":
        raise UserInputError(
            "Only members of this family's team can invite colleagues.", show_usage=False
        )
    if refusal == "server":
        raise UserInputError(
            code(who) + " cannot join: " + server_rule(who, ctx.services.policy) + "."
        )
    raise UserInputError(
        await person(ctx, who) + f" {INVITEE_STATE[refusal]}.", show_usage=False
    )


COMMANDS: tuple[Command, ...] = (invite,)
