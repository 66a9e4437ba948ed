"""Families: one per case reference and room, with the governance records the law asks for
(lawful basis, whether the family was told, closure). Never case notes or personal details.

The family's columns hold the current governance record; every record made is also appended to
`governance_record`, so re-recording adds to the family's history instead of overwriting it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from storage.codec import encode_optional_time, encode_time
from storage.errors import ConflictError, NotFoundError
from storage.kept import UntilWrite
from storage.models import (
    FAMILY_STATUSES,
    LAWFUL_BASES,
    OPEN_FAMILY_STATUSES,
    Family,
    FamilyStatus,
    GovernanceKind,
    GovernanceRecord,
    LawfulBasis,
)

if TYPE_CHECKING:
    from storage.transaction import Transaction

T = TypeVar("T")

_ACTIVATE_WITH_BASIS = (
    "status = CASE WHEN status = 'pending' AND lawful_basis IS NOT NULL"
    " THEN 'active' ELSE status END"
)


class FamilyRepository:
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        self._rooms: UntilWrite[str, Family | None] = UntilWrite(tx)

    async def create(self, reference: str, room_id: str | None, created_by: str) -> Family:
        """A new family in status `pending`; the reference is unique regardless of case."""
        reference = reference.strip()
        if not reference:
            raise ValueError("a family needs a case reference")
        if await self.by_reference(reference) is not None:
            raise ConflictError(f"a family with reference {reference} already exists")
        if room_id is not None and await self.by_room(room_id) is not None:
            raise ConflictError(f"room {room_id} already belongs to a family")
        now = encode_time(self._tx.now())
        family_id = await self._tx.insert(
            "INSERT INTO family (reference, room_id, created_by, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (reference, room_id, created_by, now, now),
        )
        if family_id is None:
            raise RuntimeError("the family row was not inserted")
        return await self._require(family_id)

    async def get(self, family_id: int) -> Family | None:
        return await self._one("SELECT * FROM family WHERE id = ?", family_id)

    async def many(self, family_ids: Iterable[int]) -> dict[int, Family]:
        """Several families in one query, by id (missing ids are left out)."""
        rows = await self._tx.fetchall_in(
            "SELECT * FROM family WHERE id IN ({in_list})", family_ids
        )
        return {int(row["id"]): Family.from_row(row) for row in rows}

    async def by_room(self, room_id: str) -> Family | None:
        """Kept until the transaction next writes: a command reads its room's family up to
        three times (the room's kind, the command's family, the lead check)."""
        if room_id in self._rooms:
            return self._rooms[room_id]
        family, _ = await self._read_room(room_id, _read_nothing)
        return family

    async def by_room_with(
        self, room_id: str, work: Callable[[sqlite3.Connection], T]
    ) -> tuple[Family | None, T]:
        """`by_room`, and `work` (other reads) in the same trip: the sync loop checks whether
        an event is new together with its room's family, which handling the event reads
        first."""
        if room_id in self._rooms:
            return self._rooms[room_id], await self._tx.run_read(work)
        return await self._read_room(room_id, work)

    async def _read_room(
        self, room_id: str, work: Callable[[sqlite3.Connection], T]
    ) -> tuple[Family | None, T]:
        stamp = self._tx.writes

        def both(connection: sqlite3.Connection) -> tuple[list[Any], T]:
            sql = "SELECT * FROM family WHERE room_id = ?"
            return connection.execute(sql, (room_id,)).fetchall(), work(connection)

        rows, result = await self._tx.run_read(both)
        family = Family.from_row(rows[0]) if rows else None
        self._rooms.keep(room_id, family, stamp)
        return family, result

    async def by_reference(self, reference: str) -> Family | None:
        return await self._one("SELECT * FROM family WHERE reference = ?", reference.strip())

    async def all_open(self) -> list[Family]:
        """Families still being worked with (pending or active), by reference."""
        rows = await self._tx.fetchall(
            "SELECT * FROM family WHERE status IN (?, ?) ORDER BY reference",
            OPEN_FAMILY_STATUSES,
        )
        return [Family.from_row(row) for row in rows]

    async def set_room(self, family_id: int, room_id: str) -> Family:
        """Attach the room once it exists (a family can be recorded before its room is made)."""
        other = await self.by_room(room_id)
        if other is not None and other.id != family_id:
            raise ConflictError(f"room {room_id} already belongs to family {other.reference}")
        return await self._update(family_id, "room_id = ?", (room_id,))

    async def record_basis(
        self,
        family_id: int,
        basis: LawfulBasis,
        recorded_by: str,
        note: str | None,
    ) -> Family:
        """Record the lawful basis. A pending family becomes active only once it also has been
        told (or a reason not to tell it is recorded); `record_informed` may come second."""
        if basis not in LAWFUL_BASES:
            raise ValueError(
                f"unknown lawful basis {basis!r}; expected one of {', '.join(sorted(LAWFUL_BASES))}"
            )
        now = self._tx.now()
        family = await self._update(
            family_id,
            "lawful_basis = ?, basis_recorded_by = ?, basis_recorded_at = ?, basis_note = ?,"
            " status = CASE WHEN status = 'pending' AND (family_informed_at IS NOT NULL"
            " OR not_informed_reason IS NOT NULL) THEN 'active' ELSE status END",
            (basis, recorded_by, encode_time(now), note),
        )
        await self._append(family_id, "basis", basis, note, recorded_by, now)
        return family

    async def record_informed(
        self,
        family_id: int,
        note: str | None = None,
        not_informed_reason: str | None = None,
        *,
        recorded_by: str | None = None,
    ) -> Family:
        """Either the family was told (now), or why telling them would be unsafe; not both.

        A pending family that already has its lawful basis becomes active. `recorded_by` is
        who said so, kept in the family's governance history.
        """
        now = self._tx.now()
        if not_informed_reason is not None:
            if note is not None:
                raise ValueError("give either a note that the family was told, or a reason not to")
            family = await self._update(
                family_id,
                "family_informed_at = NULL, informed_note = NULL, not_informed_reason = ?,"
                f" {_ACTIVATE_WITH_BASIS}",
                (not_informed_reason,),
            )
            await self._append(family_id, "unsafe", None, not_informed_reason, recorded_by, now)
            return family
        family = await self._update(
            family_id,
            "family_informed_at = ?, informed_note = ?, not_informed_reason = NULL,"
            f" {_ACTIVATE_WITH_BASIS}",
            (encode_time(now), note),
        )
        await self._append(family_id, "informed", None, note, recorded_by, now)
        return family

    async def history(self, family_id: int) -> list[GovernanceRecord]:
        """Every governance record made for the family (basis, informed, unsafe), oldest first."""
        rows = await self._tx.fetchall(
            "SELECT * FROM governance_record WHERE family_id = ? ORDER BY id", (family_id,)
        )
        return [GovernanceRecord.from_row(row) for row in rows]

    async def _append(
        self,
        family_id: int,
        kind: GovernanceKind,
        value: str | None,
        note: str | None,
        recorded_by: str | None,
        at: datetime,
    ) -> None:
        """Add one row to the append-only history, at the time the family's columns got."""
        await self._tx.execute(
            "INSERT INTO governance_record (family_id, kind, value, note, recorded_by,"
            " recorded_at) VALUES (?, ?, ?, ?, ?, ?)",
            (family_id, kind, value, note, recorded_by, encode_time(at)),
        )

    async def created_since(self, created_by: str, since: datetime) -> int:
        """How many families `created_by` has created since `since` (whatever became of them)."""
        row = await self._tx.fetchone(
            "SELECT COUNT(*) FROM family WHERE created_by = ? AND created_at >= ?",
            (created_by, encode_time(since)),
        )
        return 0 if row is None else int(row[0])

    async def release(self, family_id: int) -> Family:
        """Give up a family that never got its room: it keeps its id (the audit refers to it)
        but no longer holds its reference, which may be used again."""
        return await self._update(
            family_id, "status = 'purged', reference = ?", (f"~released-{family_id}",)
        )

    async def set_status(self, family_id: int, status: FamilyStatus) -> Family:
        if status not in FAMILY_STATUSES:
            raise ValueError(
                f"unknown family status {status!r}; "
                f"expected one of {', '.join(sorted(FAMILY_STATUSES))}"
            )
        return await self._update(family_id, "status = ?", (status,))

    async def close(
        self, family_id: int, reason: str | None, *, purge_after: datetime | None = None
    ) -> Family:
        return await self._update(
            family_id,
            "status = 'closed', closed_at = ?, close_reason = ?, purge_after = ?",
            (encode_time(self._tx.now()), reason, encode_optional_time(purge_after)),
        )

    async def withdraw_consent(self, family_id: int) -> Family:
        return await self._update(
            family_id, "consent_withdrawn_at = ?", (encode_time(self._tx.now()),)
        )

    async def due_for_purge(self, now: datetime, limit: int) -> list[Family]:
        """Closed families whose retention has run out, longest overdue first."""
        rows = await self._tx.fetchall(
            "SELECT * FROM family WHERE status = 'closed' AND purge_after <= ?"
            " ORDER BY purge_after, id LIMIT ?",
            (encode_time(now), limit),
        )
        return [Family.from_row(row) for row in rows]

    async def purge(self, family_id: int) -> Family:
        """Forget a closed family: its governance records go and its row keeps only its id,
        status and dates (the audit refers to it); its reference may be used again."""
        family = await self._update(
            family_id,
            "status = 'purged', reference = ?, room_id = NULL, lawful_basis = NULL,"
            " basis_recorded_by = NULL, basis_recorded_at = NULL, basis_note = NULL,"
            " family_informed_at = NULL, informed_note = NULL, not_informed_reason = NULL,"
            " close_reason = NULL, purge_after = NULL, created_by = ?",
            (f"~purged-{family_id}", "~purged"),
        )
        await self._tx.execute("DELETE FROM governance_record WHERE family_id = ?", (family_id,))
        return family

    async def _update(self, family_id: int, assignments: str, params: tuple[Any, ...]) -> Family:
        """`assignments` is constant SQL from this module; every value is a bound parameter."""
        changed = await self._tx.execute(
            f"UPDATE family SET {assignments}, updated_at = ? WHERE id = ?",  # noqa: S608
            (*params, encode_time(self._tx.now()), family_id),
        )
        if changed == 0:
            raise NotFoundError(f"no family with id {family_id}")
        return await self._require(family_id)

    async def _one(self, sql: str, key: object) -> Family | None:
        row = await self._tx.fetchone(sql, (key,))
        return None if row is None else Family.from_row(row)

    async def _require(self, family_id: int) -> Family:
        family = await self.get(family_id)
        if family is None:
            raise NotFoundError(f"no family with id {family_id}")
        return family


def _read_nothing(connection: sqlite3.Connection) -> None:
    return None
