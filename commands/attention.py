"""`!attention <text>`: alert the whole team, notifying every current member.

The alert is an `m.text` that mentions each member (an `m.notice` would notify nobody), and
relays the sender's words with nothing about the family beyond its reference. The audit row
records that an alert was raised and to how many people, never its text.
"""

from __future__ import annotations

from commands.framework.context import CommandContext
from commands.framework.converters import Rest, Text
from commands.framework.errors import UserInputError
from commands.framework.registry import FAMILY_ROOM, Command, command
from commands.shared import current_family, person, tell_in_direct_chat
from markup import Markup, Reply, blocks, paragraph, text
from rooms.admission import is_on_team

MESSAGE_LIMIT = 1000


@command(
    "attention",
    summary="Alert the whole team: everyone on it gets a notification.",
    description=(
        "For example: !attention the family has moved, please check your records. Use it "
        "when everyone needs to act or know now."
    ),
    where=FAMILY_ROOM,
    converters={"message": Text(label="message", max_length=MESSAGE_LIMIT)},
)
async def attention(ctx: CommandContext, message: Rest[str]) -> None:
    tx = ctx.tx
    family = await current_family(ctx)
    if not is_on_team(await tx.involvements.get(family.id, ctx.sender)):
        raise UserInputError(
            "Only members of this family's team can alert it.", show_usage=False
        )
    words = " ".join(message.split())
    if not words:
        raise UserInputError("Tell me what the team should know, after !attention.")
    others = [
        involvement
        for involvement in await tx.involvements.for_family(family.id)
        if is_on_team(involvement) and involvement.user_id != ctx.sender
    ]
    if not others:
        raise UserInputError("Nobody else is on this team yet.", show_usage=False)
    said = paragraph(await person(ctx, ctx.sender) + text(" says: " + words))
    mentions = Markup()
    for involvement in others:
        if involvement.sensitive:
            # Naming them in the room would reveal the involvement they asked to hide.
            await _alert_privately(ctx, involvement.user_id, family.reference, said)
            continue
        pill = await person(ctx, involvement.user_id, mention=True)
        mentions += (", " if mentions.body else "") + pill
    alert = blocks(paragraph(text(f"Attention, team for {family.reference}: ") + mentions), said)
    # The alert is the command's reply, an m.text so that each mention notifies.
    ctx.replies.append(Reply.from_markup(alert, notify=True))
    await tx.audit.append(
        ctx.sender, "attention", family_id=family.id, detail={"notified": len(others)}
    )


async def _alert_privately(ctx: CommandContext, user_id: str, reference: str, said: Markup) -> None:
    """A member whose involvement is hidden gets the alert in their direct chat with the bot."""
    alert = blocks(
        paragraph(
            text(f"Attention, team for {reference}: ") + await person(ctx, user_id, mention=True)
        ),
        said,
    )
    await tell_in_direct_chat(ctx, user_id, alert, "attention", user_id, notify=True)


COMMANDS: tuple[Command, ...] = (attention,)
