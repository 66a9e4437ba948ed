"""What a family member can do in their own room with the bot: `!help`, `!team`, `!mydata`
and `!correct`. A registry of its own, so nothing a family member sends can reach the
practitioners' commands, and nothing reaches the team except through `!correct`.
"""

from __future__ import annotations

from commands.framework.context import CommandContext
from commands.framework.converters import Rest, Text
from commands.framework.errors import UserInputError
from commands.framework.registry import FAMILY_VIEW, Command, CommandRegistry, command
from commands.shared import person
from markup import blocks, bullet_list, code, paragraph, text
from rooms.actions import post_notice
from rooms.exports import FAMILY_VIEW_KEY, queue_export
from rooms.family_view import team_card
from storage import Family, FamilyView

CORRECTION_LIMIT = 1000


async def _view(ctx: CommandContext) -> tuple[FamilyView, Family]:
    view = await ctx.tx.views.by_room(ctx.room_id)
    family = None if view is None else await ctx.tx.families.get(view.family_id)
    if view is None or family is None or not view.is_active or view.user_id != ctx.sender:
        raise UserInputError("This room no longer shows a family's team.", show_usage=False)
    return view, family


@command(
    "help",
    summary="What you can do here.",
    where=FAMILY_VIEW,
)
async def view_help(ctx: CommandContext) -> None:
    prefix = ctx.prefix
    ctx.reply(
        blocks(
            paragraph(
                "This is your own room with Patchwork. It shows the people who are supporting "
                "your family, and I keep it up to date when someone joins or leaves. Nobody "
                "from the team reads what you write here, except what you send with "
                + code(f"{prefix}correct")
                + "."
            ),
            bullet_list(
                [
                    code(f"{prefix}team") + " shows who is supporting your family now.",
                    code(f"{prefix}mydata")
                    + " sends you a copy of what Patchwork holds about your family, and when "
                    "it was looked at and by which organisation.",
                    code(f"{prefix}correct <what is wrong>")
                    + " asks your family's lead to put something right, for example "
                    + code(f"{prefix}correct the school is Oak Primary, not Elm Primary")
                    + ".",
                ]
            ),
        )
    )


@command(
    "team",
    summary="See who is supporting your family now.",
    where=FAMILY_VIEW,
)
async def team(ctx: CommandContext) -> None:
    view, family = await _view(ctx)
    await ctx.tx.audit.append(
        ctx.sender, "view_team", family_id=family.id, detail={"user": view.user_id}
    )
    ctx.reply(await team_card(ctx.tx, family))


@command(
    "mydata",
    summary="Get a copy of what Patchwork holds about your family.",
    description=(
        "Sent here as two files only you can open: the data as JSON, and the same for reading."
    ),
    where=FAMILY_VIEW,
)
async def view_mydata(ctx: CommandContext) -> None:
    view, family = await _view(ctx)
    await ctx.tx.audit.append(
        ctx.sender, "view_mydata", family_id=family.id, detail={"user": view.user_id}
    )
    await queue_export(ctx.tx, ctx.room_id, {FAMILY_VIEW_KEY: view.id}, ctx.event_id)
    ctx.reply("I am preparing a copy of what Patchwork holds about your family.")


@command(
    "correct",
    summary="Ask your family's lead to correct something.",
    description="For example: !correct my son's school is Oak Primary, not Elm Primary.",
    where=FAMILY_VIEW,
    converters={"request": Text(label="what is wrong", max_length=CORRECTION_LIMIT)},
)
async def correct(ctx: CommandContext, request: Rest[str]) -> None:
    view, family = await _view(ctx)
    words = " ".join(request.split())
    if not words:
        raise UserInputError("Tell me what is wrong, after !correct.")
    lead = await ctx.tx.involvements.lead(family.id)
    if lead is None or family.room_id is None:
        raise UserInputError(
            "Your family has no lead at the moment, so I cannot pass this on yet. Please try "
            "again later.",
            show_usage=False,
        )
    await ctx.tx.audit.append(
        ctx.sender, "correction_requested", family_id=family.id, detail={"user": view.user_id}
    )
    relay = blocks(
        paragraph(
            await person(ctx, lead.user_id, mention=True)
            + text(f": the family of {family.reference} ({view.user_id}) asks for a correction:")
        ),
        paragraph(text(words)),
    )
    await post_notice(ctx.tx, family.room_id, relay, ctx.event_id, "correction", notify=True)
    await ctx.tx.audit.append(
        ctx.services.policy.bot_user_id,
        "correction_relayed",
        family_id=family.id,
        detail={"to": lead.user_id},
    )
    ctx.reply(
        "Thank you. I have passed this to your family's lead, who will look into it. You "
        "will see any change on your team card here."
    )


COMMANDS: tuple[Command, ...] = (view_help, team, view_mydata, correct)


def build_view_registry() -> CommandRegistry:
    """The commands of a family member's own room, and nothing else."""
    registry = CommandRegistry()
    for item in COMMANDS:
        registry.add(item)
    return registry
