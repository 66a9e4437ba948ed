"""`!confirm` and `!leave`: a practitioner's answer to the still-involved prompt.

Both work at any time, prompted or not: `!confirm` resets the clock to one interval from now,
and `!leave` ends the involvement and removes the practitioner from the room. A ✅ or ❌
reaction to the prompt does the same (`rooms.prompts.on_reaction`); all of them share the
logic in `rooms.prompts`, so an answer is recorded the same way whichever form it takes.
"""

from __future__ import annotations

from commands.context import CommandContext
from commands.converters import Rest, Text
from commands.errors import UserInputError
from commands.registry import FAMILY_ROOM, Command, command
from commands.team_support import current_family, is_on_team, person, transaction
from rooms.prompts import PromptSettings, confirm, confirmed_text, leave

REASON_LIMIT = 500


def settings_of(ctx: CommandContext) -> PromptSettings:
    """The prompt settings, which the process puts in `ctx.services["prompts"]`."""
    settings = ctx.services.get("prompts")
    if not isinstance(settings, PromptSettings):
        raise TypeError("the command context has no PromptSettings under services['prompts']")
    return settings


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
    tx = transaction(ctx)
    family = await current_family(ctx)
    involvement = await tx.involvements.get(family.id, ctx.sender)
    if involvement is None or not is_on_team(involvement):
        raise UserInputError(
            "You are not on this family's team, so there is nothing to confirm.",
            show_usage=False,
        )
    if not family.is_open:
        raise UserInputError(
            "This family's record is closed, so there is nothing to confirm.", show_usage=False
        )
    settings = settings_of(ctx)
    confirmed = await confirm(tx, involvement, settings, via="command")
    ctx.reply(confirmed_text(await person(ctx, ctx.sender), confirmed, settings))


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
    tx = transaction(ctx)
    family = await current_family(ctx)
    involvement = await tx.involvements.get(family.id, ctx.sender)
    if involvement is None or not is_on_team(involvement):
        raise UserInputError("You are not on this family's team.", show_usage=False)
    cleaned = " ".join(reason.split()) if reason else None
    # The goodbye is queued by `leave` itself, ahead of the kick, so the leaver can read it.
    await leave(
        tx,
        family,
        involvement,
        reason=cleaned or None,
        via="command",
        cause=ctx.event_id,
        reply_to=ctx.event_id,
    )


COMMANDS: tuple[Command, ...] = (confirm_command, leave_command)
