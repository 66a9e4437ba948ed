"""How the team logic names people: the display name on record, as a pill."""

from __future__ import annotations

from markup import Markup, user
from storage import Transaction


async def known_name(tx: Transaction, user_id: str) -> str | None:
    """The name the practitioner gave us (or the room showed), if we hold one."""
    practitioner = await tx.practitioners.get(user_id)
    return None if practitioner is None else practitioner.display_name


async def named(tx: Transaction, user_id: str, *, mention: bool = False) -> Markup:
    """A pill with the name we hold for someone; only `mention=True` pings them."""
    return user(user_id, await known_name(tx, user_id), mention=mention)
