"""What several commands share: the family of the current room, the lead-or-admin permission,
showing a refusal from the team logic as the user's mistake, and how people are named."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from commands.framework.context import CommandContext
from commands.framework.errors import UserInputError
from commands.framework.permissions import admin_only, any_of
from markup import Markup, user
from rooms.actions import post_notice
from rooms.errors import TeamRuleError
from storage import Family, Practitioner

LEAD_OR_ADMIN_MESSAGE = "Only this family's lead or a Patchwork administrator can do that."
ROLE_LIMIT = 80


async def current_family(ctx: CommandContext) -> Family:
    """The family whose room this is; FAMILY_ROOM commands only run where there is one."""
    family = await ctx.tx.families.by_room(ctx.room_id)
    if family is None:
        raise UserInputError("This room is not a family room.", show_usage=False)
    return family


async def sender_is_lead(ctx: CommandContext) -> bool:
    """The sender is the current, still active lead of this room's family, or was its lead
    when it closed (who may still read its audit and export it until it is purged)."""
    family = await ctx.tx.families.by_room(ctx.room_id)
    if family is None:
        return False
    lead = await ctx.tx.involvements.lead(family.id)
    if lead is None or lead.user_id != ctx.sender:
        return False
    return lead.is_active or (family.status == "closed" and lead.end_reason == "case_closed")


lead_or_admin = any_of(sender_is_lead, admin_only)


@contextmanager
def team_rules() -> Iterator[None]:
    """Show a refusal from the team logic to the user as their own mistake, not a fault."""
    try:
        yield
    except TeamRuleError as error:
        raise UserInputError(error.markup, show_usage=False) from error


async def display_name(
    ctx: CommandContext, user_id: str, practitioner: Practitioner | None
) -> str | None:
    """The name the practitioner gave us, else their Matrix display name."""
    if practitioner is not None and practitioner.display_name:
        return practitioner.display_name
    return await ctx.matrix.get_display_name(user_id, ctx.room_id)


async def tell_in_direct_chat(
    ctx: CommandContext, user_id: str, message: Markup, *cause: str, notify: bool = False
) -> bool:
    """Queue `message` in the direct chat the bot already shares with `user_id`, for what the
    room must not read; False if there is none (`rooms.direct_chat.tell_privately` opens one)."""
    room_id = await ctx.matrix.direct_room(user_id)
    if room_id is None:
        return False
    await post_notice(ctx.tx, room_id, message, ctx.event_id, *cause, notify=notify)
    return True


async def person(
    ctx: CommandContext,
    user_id: str,
    practitioner: Practitioner | None = None,
    *,
    mention: bool = False,
) -> Markup:
    """A pill for someone, named as well as we know them."""
    if practitioner is None:
        practitioner = await ctx.tx.practitioners.get(user_id)
    return user(user_id, await display_name(ctx, user_id, practitioner), mention=mention)
