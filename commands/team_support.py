"""What the team commands share: the storage transaction and policy behind a context, the
family of the current room, the lead-or-admin permission, and how people and dates are shown.

Storage is reached through `rooms` (the team logic), which checks that the context's narrow
`tx` really is a storage transaction; models are imported for annotations only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from commands.context import CommandContext
from commands.errors import UserInputError
from commands.permissions import admin_only, any_of
from commands.reply import Markup, user
from rooms.actions import transaction_of
from rooms.errors import TeamRuleError
from rooms.policy import TeamPolicy

if TYPE_CHECKING:
    from storage import Family, Involvement, Practitioner, Transaction

LEAD_OR_ADMIN_MESSAGE = "Only this family's lead or a Patchwork administrator can do that."
ROLE_LIMIT = 80


def transaction(ctx: CommandContext) -> Transaction:
    """The storage transaction this command runs in."""
    return transaction_of(ctx.tx)


def team_policy(ctx: CommandContext) -> TeamPolicy:
    """The operator's policy, which the process puts in `ctx.services["policy"]`."""
    policy = ctx.services.get("policy")
    if not isinstance(policy, TeamPolicy):
        raise TypeError("the command context has no TeamPolicy under services['policy']")
    return policy


async def current_family(ctx: CommandContext) -> Family:
    """The family whose room this is; FAMILY_ROOM commands only run where there is one."""
    family = await transaction(ctx).families.by_room(ctx.room_id)
    if family is None:
        raise UserInputError("This room is not a family room.", show_usage=False)
    return family


async def sender_is_lead(ctx: CommandContext) -> bool:
    """The sender is the current, still active lead of this room's family."""
    tx = transaction(ctx)
    family = await tx.families.by_room(ctx.room_id)
    if family is None:
        return False
    lead = await tx.involvements.lead(family.id)
    return lead is not None and lead.user_id == ctx.sender and lead.is_active


lead_or_admin = any_of(sender_is_lead, admin_only)


def is_on_team(involvement: Involvement | None) -> bool:
    """Active and invited or joined: on the team as far as the room and roster agree."""
    return (
        involvement is not None
        and involvement.is_active
        and involvement.membership in ("invite", "join")
    )


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
    return await ctx.matrix.get_display_name(user_id)


async def person(
    ctx: CommandContext,
    user_id: str,
    practitioner: Practitioner | None = None,
    *,
    mention: bool = False,
) -> Markup:
    """A pill for someone, named as well as we know them."""
    if practitioner is None:
        practitioner = await transaction(ctx).practitioners.get(user_id)
    return user(user_id, await display_name(ctx, user_id, practitioner), mention=mention)


def day(value: datetime) -> str:
    """A date as people write it ("2 Mar 2026"); times would suggest false precision."""
    return f"{value.day} {value:%b %Y}"
