"""`!leave [reason]`: a practitioner says they are no longer involved and leaves the team.

It works at any time, prompted or not: the involvement ends and the practitioner is removed
from the room. A ❌ reaction to the prompt does the same; both go through `rooms.prompts.leave`.
"""

from __future__ import annotations

from commands.framework.context import CommandContext
from commands.framework.converters import Rest, Text
from commands.framework.errors import UserInputError
from commands.framework.registry import FAMILY_ROOM, Command, command
from commands.shared import current_family
from rooms.admission import is_on_team
from rooms.prompts import leave

REASON_LIMIT = 500


@command(
    "leave",
    summary="Say you are no longer involved, and leave this family's team.",
    description=(
        "For example: !leave moved to another school. Your reason is kept in the family's "
        "audit trail and shown to nobody else here. I remove you from this room; the team "
        "can invite you again if you are needed later."
    ),
    where=FAMILY_ROOM,
    converters={"reason": Text(label="reason", max_length=REASON_LIMIT)},
)
async def leave_command(ctx: CommandContext, reason: Rest[str] | None = None) -> None:
    family = await current_family(ctx)
    involvement = await ctx.tx.involvements.get(family.id, ctx.sender)
    if involvement is None or not is_on_team(involvement):
        raise UserInputError("You are not on this family's team.", show_usage=False)
    cleaned = " ".join(reason.split()) if reason else None
    # The goodbye is queued by `leave` itself, ahead of the kick, so the leaver can read it.
    await leave(
        ctx.tx,
        family,
        involvement,
        reason=cleaned or None,
        via="command",
        cause=ctx.event_id,
        reply_to=ctx.event_id,
        prefix=ctx.prefix,
    )


COMMANDS: tuple[Command, ...] = (leave_command,)
