"""`!sensitive on|off`: a practitioner hides their own involvement from ordinary look-ups.

For services whose involvement itself is sensitive (a domestic-violence service, say). While
on, an ordinary member's `!whois` shows only that a confidential service is involved and
that the lead can put them in touch; the lead, administrators and the practitioner see them,
in a direct chat. Audited.
"""

from __future__ import annotations

from typing import Literal

from commands.framework.context import CommandContext
from commands.framework.errors import UserInputError
from commands.framework.registry import FAMILY_ROOM, Command, command
from commands.shared import current_family
from markup import paragraph
from rooms.admission import is_on_team
from rooms.family_view import refresh_views


@command(
    "sensitive",
    summary="Hide your involvement from ordinary look-ups, or show it again.",
    description=(
        "!sensitive on hides your name, id and role from other members' !whois: they see "
        "only that a confidential service is involved and that the lead can put them in "
        "touch. The lead and administrators still see you. !sensitive off shows you again."
    ),
    where=FAMILY_ROOM,
)
async def sensitive(ctx: CommandContext, setting: Literal["on", "off"]) -> None:
    family = await current_family(ctx)
    involvement = await ctx.tx.involvements.get(family.id, ctx.sender)
    if involvement is None or not is_on_team(involvement):
        raise UserInputError("You are not on this family's team.", show_usage=False)
    hide = setting == "on"
    await ctx.tx.involvements.set_sensitive(family.id, ctx.sender, hide)
    await ctx.tx.audit.append(
        ctx.sender, "sensitive", family_id=family.id, detail={"sensitive": hide}
    )
    await refresh_views(ctx.tx, family, ctx.event_id, actor=ctx.sender)
    if hide:
        ctx.reply(
            paragraph(
                "Your involvement is now hidden from ordinary look-ups: other members see "
                "only that a confidential service is involved. The lead and administrators "
                "still see you."
            )
        )
    else:
        ctx.reply(paragraph("Your involvement is visible to the whole team again."))


COMMANDS: tuple[Command, ...] = (sensitive,)
