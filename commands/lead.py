"""`!lead`: handing the lead role for a family to another joined member (lead or admin)."""

from __future__ import annotations

from commands.framework.context import CommandContext
from commands.framework.converters import UserId
from commands.framework.errors import UserInputError
from commands.framework.registry import FAMILY_ROOM, Command, command
from commands.shared import LEAD_OR_ADMIN_MESSAGE, current_family, lead_or_admin, person
from markup import Markup, paragraph
from rooms.family_room import hand_over_lead
from rooms.family_view import refresh_views


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
    tx = ctx.tx
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
    await refresh_views(tx, family, ctx.event_id, actor=ctx.sender)
    new_lead: Markup = await person(ctx, who, mention=True)
    ctx.reply(
        paragraph(
            new_lead
            + " is now the lead for this family, handed over by "
            + await person(ctx, ctx.sender)
            + "."
        )
    )


COMMANDS: tuple[Command, ...] = (lead,)
