"""`!confirm`: a practitioner says they are still involved with this family.

It works at any time, prompted or not, and resets the clock to one interval from now. A ✅
reaction to the prompt does the same; both go through `rooms.prompts.confirm`.
"""

from __future__ import annotations

from commands.framework.context import CommandContext
from commands.framework.errors import UserInputError
from commands.framework.registry import FAMILY_ROOM, Command, command
from commands.shared import current_family, person
from rooms.admission import is_on_team
from rooms.prompts import confirm, confirmed_text


@command(
    "confirm",
    summary="Say you are still involved with this family.",
    description=(
        "Answers my regular question whether you are still involved. You can also send it "
        "unprompted: I then ask again one full interval from now."
    ),
    where=FAMILY_ROOM,
)
async def confirm_command(ctx: CommandContext) -> None:
    family = await current_family(ctx)
    involvement = await ctx.tx.involvements.get(family.id, ctx.sender)
    if involvement is None or not is_on_team(involvement):
        raise UserInputError(
            "You are not on this family's team, so there is nothing to confirm.",
            show_usage=False,
        )
    if not family.is_open:
        raise UserInputError(
            "This family's record is closed, so there is nothing to confirm.", show_usage=False
        )
    settings = ctx.services.prompts
    confirmed = await confirm(ctx.tx, involvement, settings, via="command")
    ctx.reply(confirmed_text(await person(ctx, ctx.sender), confirmed, settings))


COMMANDS: tuple[Command, ...] = (confirm_command,)
