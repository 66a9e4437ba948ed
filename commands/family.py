"""`!family`: creating a family room, and the governance records the law asks for.

A new family is `pending`: only its lead (and administrators) may be in its room until the
lead has recorded both the lawful basis for sharing information and either that the family
was told about the team or why telling them would be unsafe. Then it becomes `active`.
"""

from __future__ import annotations

from typing import Literal

from commands.framework.context import CommandContext
from commands.framework.converters import CaseReference, Rest, Text, UserId
from commands.framework.errors import UserInputError
from commands.framework.registry import (
    ANYWHERE,
    DIRECT,
    FAMILY_ROOM,
    Command,
    command,
    subcommand_group,
)
from commands.shared import LEAD_OR_ADMIN_MESSAGE, current_family, lead_or_admin, team_rules
from markup import Markup, blocks, bullet_list, code, paragraph, text
from rooms.closing import close_family, closing_notice
from rooms.family_room import BASIS_NAMES, governance_gaps, request_family_room, room_name
from rooms.family_view import end_view, share_view
from storage import Family

NOTE_LIMIT = 500
Basis = Literal["public_task", "legal_obligation", "consent", "vital_interests"]


@command(
    "new",
    summary="Create a family room with you as its lead.",
    description=(
        "For example: !family new LDC-2026-0042. The room is named after the case reference "
        "only, never the family's name, because room names are not encrypted."
    ),
    where=DIRECT,
)
async def family_new(ctx: CommandContext, reference: CaseReference) -> None:
    tx = ctx.tx
    with team_rules():
        family = await request_family_room(
            tx, reference, ctx.sender, ctx.services.policy, ctx.event_id, notify_room=ctx.room_id
        )
    ctx.reply(
        blocks(
            paragraph(
                "I am creating the room "
                + code(room_name(family.reference))
                + " and will invite you to it as the family's lead in a moment."
            ),
            paragraph("Before anyone else can join, please record there:"),
            bullet_list(governance_gaps(family, ctx.prefix)),
        )
    )


async def _open_family(ctx: CommandContext) -> Family:
    family = await current_family(ctx)
    if not family.is_open:
        raise UserInputError(
            "This family's record is closed, so its records cannot change.", show_usage=False
        )
    return family


def _progress(before: Family, after: Family, prefix: str) -> list[Markup]:
    """What the change means for the team: now active, or what is still missing."""
    if before.status == "pending" and after.status == "active":
        return [
            paragraph(
                "The team is now active: members can invite colleagues with "
                + code(f"{prefix}invite @user:server <role>")
                + "."
            )
        ]
    if after.status == "pending":
        return [
            paragraph("Still needed before anyone else can join:"),
            bullet_list(governance_gaps(after, prefix)),
        ]
    return []


@command(
    "basis",
    summary="Record the lawful basis for sharing information about this family.",
    description=(
        "One of public_task, legal_obligation, consent or vital_interests, with an optional "
        "note, for example: !family basis public_task s.17 Children Act 1989."
    ),
    where=FAMILY_ROOM,
    permission=lead_or_admin,
    permission_message=LEAD_OR_ADMIN_MESSAGE,
    converters={"note": Text(label="note", max_length=NOTE_LIMIT)},
)
async def family_basis(ctx: CommandContext, basis: Basis, note: Rest[str] | None = None) -> None:
    tx = ctx.tx
    family = await _open_family(ctx)
    updated = await tx.families.record_basis(family.id, basis, ctx.sender, note)
    await _recorded(
        ctx,
        family,
        updated,
        ("family_basis", {"basis": basis, "note": note is not None}),
        f"Recorded the lawful basis for {family.reference}: {BASIS_NAMES[basis]}.",
    )


@command(
    "informed",
    summary="Record that the family was told about this team.",
    description="For example: !family informed leaflet given at the home visit.",
    where=FAMILY_ROOM,
    permission=lead_or_admin,
    permission_message=LEAD_OR_ADMIN_MESSAGE,
    converters={"note": Text(label="note", max_length=NOTE_LIMIT)},
)
async def family_informed(ctx: CommandContext, note: Rest[str] | None = None) -> None:
    tx = ctx.tx
    family = await _open_family(ctx)
    updated = await tx.families.record_informed(family.id, note=note, recorded_by=ctx.sender)
    await _recorded(
        ctx,
        family,
        updated,
        ("family_informed", {"informed": True, "note": note is not None}),
        f"Recorded that the family for {family.reference} was told about this team.",
    )


@command(
    "unsafe",
    summary="Record why telling the family about this team would be unsafe.",
    description="For example: !family unsafe telling them could put a parent at risk.",
    where=FAMILY_ROOM,
    permission=lead_or_admin,
    permission_message=LEAD_OR_ADMIN_MESSAGE,
    converters={"reason": Text(label="reason", max_length=NOTE_LIMIT)},
)
async def family_unsafe(ctx: CommandContext, reason: Rest[str]) -> None:
    tx = ctx.tx
    family = await _open_family(ctx)
    updated = await tx.families.record_informed(
        family.id, not_informed_reason=reason, recorded_by=ctx.sender
    )
    await _recorded(
        ctx,
        family,
        updated,
        ("family_informed", {"informed": False}),
        f"Recorded why the family for {family.reference} is not being told about this team.",
    )


@command(
    "close",
    summary="Close this family's record: everyone's involvement ends.",
    description=(
        "For example: !family close case stepped down. Every involvement ends, this room "
        "becomes read-only, and the record is deleted after the council's retention period."
    ),
    where=FAMILY_ROOM,
    permission=lead_or_admin,
    permission_message=LEAD_OR_ADMIN_MESSAGE,
    converters={"reason": Text(label="reason", max_length=NOTE_LIMIT)},
)
async def family_close(ctx: CommandContext, reason: Rest[str] | None = None) -> None:
    family = await _open_family(ctx)
    await _close(ctx, family, reason)


async def _close(
    ctx: CommandContext, family: Family, reason: str | None, *, consent_withdrawn: bool = False
) -> None:
    closed = await close_family(
        ctx.tx,
        family,
        actor=ctx.sender,
        reason=reason,
        policy=ctx.services.policy,
        cause=ctx.event_id,
        consent_withdrawn=consent_withdrawn,
    )
    ctx.reply(closing_notice(closed))


@command(
    "consent",
    summary="Record that the family withdrew their consent: the record is closed.",
    description=(
        "Only for a family whose lawful basis is consent: !family consent withdrawn. The "
        "record is closed as with !family close."
    ),
    where=FAMILY_ROOM,
    permission=lead_or_admin,
    permission_message=LEAD_OR_ADMIN_MESSAGE,
)
async def family_consent(ctx: CommandContext, change: Literal["withdrawn"]) -> None:
    family = await _open_family(ctx)
    if family.lawful_basis != "consent":
        basis = "not recorded" if family.lawful_basis is None else family.lawful_basis
        raise UserInputError(
            paragraph(
                f"This family's lawful basis is {basis}, not consent, so withdrawing consent "
                "does not end the sharing. Record the right basis with "
                + code(f"{ctx.prefix}family basis <basis> [note]")
                + ", or close the record with "
                + code(f"{ctx.prefix}family close [reason]")
                + "."
            ),
            show_usage=False,
        )
    await _close(ctx, family, "consent withdrawn", consent_withdrawn=True)


@command(
    "share-with",
    summary="Give a family member their own view of this team.",
    description=(
        "For example: !family share-with @parent:example.org. They get a room of their own "
        "with me, showing who supports them (never anyone whose involvement is hidden), kept "
        "current. Only for a family that was told about this team."
    ),
    where=FAMILY_ROOM,
    permission=lead_or_admin,
    permission_message=LEAD_OR_ADMIN_MESSAGE,
)
async def family_share_with(ctx: CommandContext, who: UserId) -> None:
    family = await _open_family(ctx)
    with team_rules():
        await share_view(
            ctx.tx, family, who, actor=ctx.sender, policy=ctx.services.policy, cause=ctx.event_id
        )
    ctx.reply(
        paragraph(
            text(f"I am opening a room for {who} showing who supports their family, and will "
                 "keep it current. End it with ")
            + code(f"{ctx.prefix}family unshare {who}")
            + "."
        )
    )


@command(
    "unshare",
    summary="End a family member's view of this team.",
    description="For example: !family unshare @parent:example.org.",
    where=FAMILY_ROOM,
    permission=lead_or_admin,
    permission_message=LEAD_OR_ADMIN_MESSAGE,
)
async def family_unshare(ctx: CommandContext, who: UserId) -> None:
    family = await current_family(ctx)
    view = await ctx.tx.views.of(family.id, who)
    if view is None or not await end_view(ctx.tx, view, ctx.event_id, actor=ctx.sender):
        raise UserInputError(f"{who} has no view of this team to end.", show_usage=False)
    ctx.reply(f"{who} no longer sees this team: I removed them from their room.")


async def _recorded(
    ctx: CommandContext,
    family: Family,
    updated: Family,
    audit: tuple[str, dict[str, object]],
    sentence: str,
) -> None:
    """Audit one governance record and tell the lead what is still missing, if anything."""
    action, detail = audit
    await ctx.tx.audit.append(ctx.sender, action, family_id=family.id, detail=detail)
    ctx.reply(blocks(paragraph(sentence), *_progress(family, updated, ctx.prefix)))


FAMILY = subcommand_group(
    "family",
    summary="Create a family room and keep its governance records.",
    where=ANYWHERE,
    subcommands=(
        family_new,
        family_basis,
        family_informed,
        family_unsafe,
        family_close,
        family_consent,
        family_share_with,
        family_unshare,
    ),
)

COMMANDS: tuple[Command, ...] = (FAMILY,)
