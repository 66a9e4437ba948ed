"""`!export` and `!mydata`: a copy of everything Patchwork holds, as encrypted files.

`!export` (a family's lead or an administrator, in the family room) covers the family: its
record, governance history, roster past and present, prompts and audit rows. `!mydata` (in a
direct chat) covers the asking practitioner: contact record and consent, involvements,
prompts and audit rows. Each comes as a JSON file of the stored rows and a readable text file,
uploaded encrypted to the room where it was asked for. Both requests are audited.
"""

from __future__ import annotations

from commands.framework.context import CommandContext
from commands.framework.registry import DIRECT, FAMILY_ROOM, Command, command
from commands.shared import LEAD_OR_ADMIN_MESSAGE, current_family, lead_or_admin
from markup import paragraph
from rooms.exports import FAMILY_KEY, USER_KEY, queue_export

FILES = "two encrypted files: the data as JSON, and the same for reading"


@command(
    "export",
    summary="Get everything Patchwork holds about this family, as encrypted files.",
    description=(
        "For a subject access request or the council's records: the family's record, its "
        "governance history, everyone involved past and present, the still-involved questions "
        "and the audit trail. The files are posted here, readable by this team only."
    ),
    where=FAMILY_ROOM,
    permission=lead_or_admin,
    permission_message=LEAD_OR_ADMIN_MESSAGE,
)
async def export(ctx: CommandContext) -> None:
    family = await current_family(ctx)
    await ctx.tx.audit.append(ctx.sender, "export", family_id=family.id)
    await queue_export(ctx.tx, ctx.room_id, {FAMILY_KEY: family.id}, ctx.event_id)
    ctx.reply(paragraph(f"I am preparing the record of {family.reference}: {FILES}."))


@command(
    "mydata",
    summary="Get everything Patchwork holds about you, as encrypted files.",
    description=(
        "Your contact details and consent, every family you were involved with, your "
        "still-involved questions and the audit entries about you, posted here."
    ),
    where=DIRECT,
)
async def mydata(ctx: CommandContext) -> None:
    await ctx.tx.audit.append(ctx.sender, "mydata", detail={"user": ctx.sender})
    await queue_export(ctx.tx, ctx.room_id, {USER_KEY: ctx.sender}, ctx.event_id)
    ctx.reply(paragraph(f"I am preparing what Patchwork holds about you: {FILES}."))


COMMANDS: tuple[Command, ...] = (export, mydata)
