"""`!role`: a practitioner sets their own role in this case, shown to the team in `!whois`."""

from __future__ import annotations

from commands.framework.context import CommandContext
from commands.framework.converters import Rest, Text
from commands.framework.errors import UserInputError
from commands.framework.registry import FAMILY_ROOM, Command, command
from commands.shared import ROLE_LIMIT, current_family
from markup import code, paragraph
from rooms.admission import is_on_team
from rooms.family_view import refresh_views


@command(
    "role",
    summary="Set your own role in this case.",
    description="For example: !role Class teacher. Everyone on the team sees it in !whois.",
    where=FAMILY_ROOM,
    converters={"role": Text(label="your role", max_length=ROLE_LIMIT)},
)
async def role(ctx: CommandContext, role: Rest[str]) -> None:
    tx = ctx.tx
    family = await current_family(ctx)
    role = " ".join(role.split())
    if not role:
        raise UserInputError("Tell me your role in this case, like " + code("Class teacher") + ".")
    if not is_on_team(await tx.involvements.get(family.id, ctx.sender)):
        raise UserInputError(
            "You are not on this family's team, so you have no role here.", show_usage=False
        )
    await tx.involvements.set_role(family.id, ctx.sender, role)
    await tx.audit.append(ctx.sender, "role", family_id=family.id, detail={"role": role})
    await refresh_views(tx, family, ctx.event_id, actor=ctx.sender)
    ctx.reply(paragraph("Thank you. Your role in this case is now " + code(role) + "."))


COMMANDS: tuple[Command, ...] = (role,)
