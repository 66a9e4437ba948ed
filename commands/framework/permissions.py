"""Reusable permission checks for `command(permission=...)`.

A check answers whether the sender may run a command here. Checks that need the roster (is the
sender this family's lead?) belong with the commands that read it; these combine them.
"""

from __future__ import annotations

from commands.framework.context import CommandContext
from commands.framework.registry import Permission


async def admin_only(ctx: CommandContext) -> bool:
    """Operators listed as administrators in the configuration."""
    return ctx.is_admin


def any_of(*checks: Permission) -> Permission:
    """Allowed if any check allows, tried in order and stopping at the first yes."""
    if not checks:
        raise ValueError("any_of needs at least one check")

    async def check(ctx: CommandContext) -> bool:
        for item in checks:
            if await item(ctx):
                return True
        return False

    return check
