"""`!audit [n]`: who looked at or changed this family's record, for its lead and admins.

The latest rows of the family's audit trail in words, newest first, naming each person; the
reading is itself audited. `patchwork audit verify` checks the whole chain for the operator.
"""

from __future__ import annotations

from commands.framework.context import CommandContext
from commands.framework.converters import Integer
from commands.framework.registry import FAMILY_ROOM, Command, command
from commands.shared import LEAD_OR_ADMIN_MESSAGE, current_family, lead_or_admin
from markup import Markup, blocks, bullet_list, paragraph, text, user
from rooms.audit_log import describe
from storage import AuditEntry

DEFAULT_ROWS = 20
MAX_ROWS = 100


@command(
    "audit",
    summary="See who looked at or changed this family's record.",
    description=(
        f"The latest {DEFAULT_ROWS} entries of the family's audit trail, newest first, or as "
        f"many as you ask for (up to {MAX_ROWS}), like !audit 50. Reading it is recorded too."
    ),
    where=FAMILY_ROOM,
    permission=lead_or_admin,
    permission_message=LEAD_OR_ADMIN_MESSAGE,
    converters={"rows": Integer(min=1, max=MAX_ROWS, label="number of entries")},
)
async def audit(ctx: CommandContext, rows: int = DEFAULT_ROWS) -> None:
    family = await current_family(ctx)
    entries = await ctx.tx.audit.recent(family.id, rows)
    ctx.tx.audit.append_later(ctx.sender, "audit", family_id=family.id, detail={"rows": rows})
    if not entries:
        ctx.reply(f"Nothing has been recorded for {family.reference} yet.")
        return
    names = await ctx.tx.practitioners.many(entry.actor for entry in entries)
    ctx.reply(
        blocks(
            paragraph(
                text(f"The last {len(entries)} entries in the audit trail of {family.reference}, ")
                + "newest first:"
            ),
            bullet_list(
                _line(entry, names[entry.actor].display_name if entry.actor in names else None)
                for entry in entries
            ),
        )
    )


def _line(entry: AuditEntry, name: str | None) -> Markup:
    when = entry.at.strftime("%d %b %Y %H:%M UTC")
    actor = user(entry.actor, name) if entry.actor.startswith("@") else text(entry.actor)
    return text(f"{when}: ") + actor + text(" " + describe(entry))


COMMANDS: tuple[Command, ...] = (audit,)
