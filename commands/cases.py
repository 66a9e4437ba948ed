"""`!cases`: the families a practitioner is actively involved with, in a direct chat only, so
case references are never listed in front of a team. Each family links to its room (Element
shows a pill that opens it). A long answer (an administrator leading hundreds of families) is
split over several messages, each far below the homeserver's 64 KiB event limit once
encrypted, so it never fails as too large."""

from __future__ import annotations

from commands.framework.context import CommandContext
from commands.framework.registry import DIRECT, Command, command
from markup import Markup, blocks, bold, bullet_list, code, day, paragraph, room_link, text
from rooms.admission import is_on_team
from rooms.policy import server_of

MESSAGE_BUDGET = 24_000
"""Characters of plain and HTML text per message: encryption adds about a third, and Synapse
refuses events over 64 KiB (M_TOO_LARGE)."""


@command(
    "cases",
    summary="List the families you are involved with.",
    description="Shows each case reference, your role and when you last confirmed you are "
    "still involved.",
    where=DIRECT,
)
async def cases(ctx: CommandContext) -> None:
    tx = ctx.tx
    via = server_of(ctx.services.policy.bot_user_id)
    entries: list[Markup] = []
    for involvement in await tx.involvements.for_user(ctx.sender):
        family = await tx.families.get(involvement.family_id)
        if family is None or not family.is_open or not is_on_team(involvement):
            continue
        reference: Markup = bold(family.reference)
        if family.room_id is not None:
            reference = bold(room_link(family.room_id, family.reference, via))
        parts: list[Markup] = [
            reference,
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
    tx.audit.append_later(ctx.sender, "cases", detail={"families": len(entries)})
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
    pages = split_by_size(entries, MESSAGE_BUDGET)
    for number, page in enumerate(pages, start=1):
        if number == 1:
            heading = (
                "You are on one family's team:"
                if len(entries) == 1
                else f"You are on the teams of {len(entries)} families:"
            )
        else:
            heading = f"Your families, continued ({number} of {len(pages)}):"
        ctx.reply(blocks(paragraph(heading), bullet_list(page)))


def split_by_size(entries: list[Markup], budget: int) -> list[list[Markup]]:
    """Consecutive runs of entries whose text and HTML together stay within `budget`."""
    pages: list[list[Markup]] = [[]]
    used = 0
    for entry in entries:
        size = len(entry.body) + len(entry.html) + 20
        if pages[-1] and used + size > budget:
            pages.append([])
            used = 0
        pages[-1].append(entry)
        used += size
    return pages


COMMANDS: tuple[Command, ...] = (cases,)
