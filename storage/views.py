"""Family views: a family member's own room with the bot, one per person per family.

Sharing again after an unshare makes the same row active again (with a new room), so each
family member has one history of being shown their team.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.codec import encode_time
from storage.errors import NotFoundError
from storage.models import FamilyView

if TYPE_CHECKING:
    from storage.transaction import Transaction


class FamilyViewRepository:
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    async def share(self, family_id: int, user_id: str, shared_by: str) -> FamilyView:
        """Start (or restart, without its old room) a view for `user_id`."""
        now = encode_time(self._tx.now())
        await self._tx.execute(
            "INSERT INTO family_view (family_id, user_id, shared_by, shared_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (family_id, user_id) DO UPDATE SET"
            " status = 'active', room_id = NULL, card_event_id = NULL, shared_by = ?,"
            " shared_at = ?, ended_at = NULL",
            (family_id, user_id, shared_by, now, shared_by, now),
        )
        view = await self.of(family_id, user_id)
        if view is None:
            raise NotFoundError(f"the view of family {family_id} for {user_id} was not stored")
        return view

    async def of(self, family_id: int, user_id: str) -> FamilyView | None:
        return await self._one(
            "SELECT * FROM family_view WHERE family_id = ? AND user_id = ?", family_id, user_id
        )

    async def get(self, view_id: int) -> FamilyView | None:
        return await self._one("SELECT * FROM family_view WHERE id = ?", view_id)

    async def by_room(self, room_id: str) -> FamilyView | None:
        return await self._one("SELECT * FROM family_view WHERE room_id = ?", room_id)

    async def active_for(self, family_id: int) -> list[FamilyView]:
        rows = await self._tx.fetchall(
            "SELECT * FROM family_view WHERE family_id = ? AND status = 'active' ORDER BY id",
            (family_id,),
        )
        return [FamilyView.from_row(row) for row in rows]

    async def for_family(self, family_id: int) -> list[FamilyView]:
        """Every view of the family, active or ended."""
        rows = await self._tx.fetchall(
            "SELECT * FROM family_view WHERE family_id = ? ORDER BY id", (family_id,)
        )
        return [FamilyView.from_row(row) for row in rows]

    async def set_room(self, view_id: int, room_id: str) -> None:
        await self._tx.execute(
            "UPDATE family_view SET room_id = ? WHERE id = ?", (room_id, view_id)
        )

    async def set_card(self, view_id: int, event_id: str) -> None:
        await self._tx.execute(
            "UPDATE family_view SET card_event_id = ? WHERE id = ?", (event_id, view_id)
        )

    async def end(self, view_id: int) -> bool:
        changed = await self._tx.execute(
            "UPDATE family_view SET status = 'ended', ended_at = ? WHERE id = ? AND"
            " status = 'active'",
            (encode_time(self._tx.now()), view_id),
        )
        return changed > 0

    async def delete_for_family(self, family_id: int) -> int:
        return await self._tx.execute(
            "DELETE FROM family_view WHERE family_id = ?", (family_id,)
        )

    async def _one(self, sql: str, *params: object) -> FamilyView | None:
        row = await self._tx.fetchone(sql, params)
        return None if row is None else FamilyView.from_row(row)
