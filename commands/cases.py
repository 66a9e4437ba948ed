"""`!cases`: the families a practitioner is actively involved with, in a direct chat only, so
case references are never listed in front of a team."""

from __future__ import annotations

from commands.framework.context import CommandContext
from commands.framework.registry import DIRECT, Command, command
from markup import Markup, blocks, bold, bullet_list, code, day, paragraph, text
from rooms.admission import is_on_team


@command(
    "cases",
    summary="List the families you are involved with.",
    description="Shows each case reference, your role and when you last confirmed you are "
    "still involved.",
    where=DIRECT,
)
async def cases(ctx: CommandContext) -> None:
    tx = ctx.tx
    entries: list[Markup] = []
    for involvement in await tx.involvements.for_user(ctx.sender):
        family = await tx.families.get(involvement.family_id)
        if family is None or not family.is_open or not is_on_team(involvement):
            continue
        parts: list[Markup] = [
            bold(family.reference),
            text(involvement.role or "role not given yet"),
        ]
        if involvement.is_lead:
            parts.append(text("lead"))
        if involvement.membership == "invite":
            parts.append(text("invited, not joined yet"))
        if family.status == "pending":
            parts.append(text("still being set up"))
        if involvement.last_confirmed_at is None:
            parts.append(text("not confirmed yet"))
        else:
            parts.append(text(f"last confirmed {day(involvement.last_confirmed_at)}"))
        entry = Markup()
        for index, part in enumerate(parts):
            entry += (" — " if index == 1 else ", " if index else "") + part
        entries.append(entry)
    if not entries:
        ctx.reply(
            paragraph(
                "You are not on any family's team at the moment. A lead can invite you with "
                + code(f"{ctx.prefix}invite")
                + ", or you can start one with "
                + code(f"{ctx.prefix}family new <reference>")
                + "."
            )
        )
        return
    ctx.reply(
        blocks(
            paragraph(
                "You are on one family's team:"
                if len(entries) == 1
                else f"You are on the teams of {len(entries)} families:"
            ),
            bullet_list(entries),
        )
    )


COMMANDS: tuple[Command, ...] = (cases,)
