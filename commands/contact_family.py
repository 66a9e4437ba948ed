"""`!contact share-family on|off`: a consent of its own, separate from sharing with teams,
to show one's phone number and email address on the team card of families who were given
their own view (`!family share-with`). Default off; each change is recorded and audited."""

from __future__ import annotations

from typing import Literal

from commands.framework.context import CommandContext
from commands.framework.registry import ANYWHERE, command
from markup import code, paragraph
from rooms.family_view import refresh_views_of_member


@command(
    "share-family",
    summary="Say whether families may see your phone number and email address on their card.",
    description=(
        "Separate from sharing with your teams: it only affects the team card of families "
        "who were given their own view. You can change your mind at any time."
    ),
    where=ANYWHERE,
)
async def contact_share_family(ctx: CommandContext, answer: Literal["on", "off"]) -> None:
    tx = ctx.tx
    share = answer == "on"
    await tx.practitioners.ensure(ctx.sender)
    practitioner = await tx.practitioners.set_share_family(ctx.sender, share)
    await tx.audit.append(ctx.sender, "contact_share_family", detail={"share": share})
    await refresh_views_of_member(tx, ctx.sender, ctx.event_id)
    if not share:
        ctx.reply(
            "Families no longer see your phone number or email address on their team card; "
            "they still see your name, organisation, job title and role."
        )
        return
    details = [
        label
        for label, value in (("phone number", practitioner.phone), ("email address",
                                                                     practitioner.email))
        if value
    ]
    shown = " and ".join(details) if details else "no contact details yet (none are set)"
    ctx.reply(
        paragraph(
            f"Families who see their team can now see your {shown} on their card. Send "
            + code(f"{ctx.prefix}contact share-family off")
            + " to stop at any time."
        )
    )
