"""Involvements: the roster, one row per practitioner per family, mirroring room membership.

The row records membership as last seen in the room and, separately, whether the practitioner
is still on the team (`status`): a lapsed practitioner may still be in the room, and a
re-invited one gets the same row back with a fresh start time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from storage.codec import decode_optional_time, encode_optional_time, encode_time
from storage.errors import ConflictError, NotFoundError
from storage.kept import UntilWrite
from storage.models import (
    END_REASONS,
    MEMBERSHIPS,
    EndReason,
    Involvement,
    Membership,
    Practitioner,
)

if TYPE_CHECKING:
    from storage.transaction import Transaction

_PRESENT: frozenset[str] = frozenset({"invite", "join"})
_FAMILY_ROWS = "SELECT * FROM involvement WHERE family_id = {family} ORDER BY started_at, id"
_TEAM_PEOPLE = (
    "SELECT * FROM practitioner WHERE user_id IN"
    " (SELECT user_id FROM involvement WHERE family_id = {family} AND status = 'active')"
)
"""SQL: a family's rows in team order, and its active members' practitioner rows, for the
family `{family}`: its id (`?`) or the family of a room (`_OF_ROOM`)."""
_OF_ROOM = "(SELECT id FROM family WHERE room_id = ?)"
_TeamRead = tuple[list[Any], list[Any] | None]
"""A family's involvement rows, and its active members' practitioner rows if they were read."""
_END = (
    "UPDATE involvement SET status = 'ended', ended_at = ?, end_reason = ?,"
    " next_prompt_at = NULL, updated_at = ? WHERE status = 'active' AND {which}"
)
T = TypeVar("T")
_DEFAULT_END_REASON: dict[str, EndReason] = {"leave": "left", "ban": "removed"}


class InvolvementRepository:
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        self._teams: UntilWrite[int, _TeamRead] = UntilWrite(tx)

    async def _family_rows(self, family_id: int) -> list[Any]:
        """A family's rows in team order, kept until the transaction next writes: a command
        reads its sender's row, the lead and the team, one query for all three."""
        read = self._teams.get(family_id)
        if read is None:
            stamp = self._tx.writes
            rows = await self._tx.fetchall(_FAMILY_ROWS.format(family="?"), (family_id,))
            self._teams.keep(family_id, (rows, None), stamp)
            return rows
        return read[0]

    async def with_practitioners(
        self, family_id: int
    ) -> tuple[list[Involvement], dict[str, Practitioner]]:
        """The active team (as `for_family`) and its members' practitioner rows, in one trip
        with the family's rows when those are not read yet: `!whois` shows both."""
        read = self._teams.get(family_id)
        if read is None:
            stamp = self._tx.writes
            read = await self._tx.run_read(_team(family_id, "?", people=True))
            self._teams.keep(family_id, read, stamp)
        rows, people = read
        team = _active(rows)
        if people is None:
            return team, await self._tx.practitioners.many(row.user_id for row in team)
        return team, {row["user_id"]: Practitioner.from_row(row) for row in people}

    async def with_room_team(
        self, room_id: str, work: Callable[[sqlite3.Connection], T], *, people: bool
    ) -> T:
        """`work` (other reads: an event's inbox check) in one trip with the room's family
        and its team (and, if `people`, the active members' practitioner rows), which are
        kept for the transaction; what `work` returned."""
        team = _team(room_id, _OF_ROOM, people=people)

        def both(connection: sqlite3.Connection) -> tuple[T, _TeamRead]:
            return work(connection), team(connection)

        stamp = self._tx.writes
        family, (result, read) = await self._tx.families.by_room_with(room_id, both)
        if family is not None:
            self._teams.keep(family.id, read, stamp)
        return result

    async def get(self, family_id: int, user_id: str) -> Involvement | None:
        for row in await self._family_rows(family_id):
            if row["user_id"] == user_id:
                return Involvement.from_row(row)
        return None

    async def by_id(self, involvement_id: int) -> Involvement | None:
        row = await self._tx.fetchone("SELECT * FROM involvement WHERE id = ?", (involvement_id,))
        return None if row is None else Involvement.from_row(row)

    async def upsert_membership(
        self,
        family_id: int,
        user_id: str,
        membership: Membership,
        *,
        invited_by: str | None = None,
        end_reason: EndReason | None = None,
    ) -> tuple[Involvement, bool]:
        """Mirror a membership seen in the room; returns the row and whether anything changed.

        invite/join from no row (or from leave/ban) starts an active involvement; leave/ban
        ends an active one with `end_reason` (default: left for leave, removed for ban).
        A row that is already ended keeps its original end time and reason, and invite -> join
        on it does not revive it: lapsed practitioners who stayed in the room stay lapsed.
        """
        if membership not in MEMBERSHIPS:
            expected = ", ".join(sorted(MEMBERSHIPS))
            raise ValueError(f"unknown membership {membership!r}; expected one of {expected}")
        present = membership in _PRESENT
        if present and end_reason is not None:
            raise ValueError("end_reason applies only to leave or ban")
        if end_reason is not None and end_reason not in END_REASONS:
            raise ValueError(f"unknown end reason {end_reason!r}")
        reason = None if present else (end_reason or _DEFAULT_END_REASON[membership])
        await self._tx.practitioners.ensure(user_id)
        now = encode_time(self._tx.now())
        current = await self.get(family_id, user_id)

        if current is None:
            involvement_id = await self._tx.insert(
                "INSERT INTO involvement (family_id, user_id, membership, status, invited_by,"
                " started_at, ended_at, end_reason, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    family_id,
                    user_id,
                    membership,
                    "active" if present else "ended",
                    invited_by,
                    now,
                    None if present else now,
                    reason,
                    now,
                ),
            )
            if involvement_id is None:
                raise RuntimeError("the involvement row was not inserted")
            return await self._require(involvement_id), True

        if current.membership == membership:
            return current, False
        if present and current.membership not in _PRESENT:
            # Back on the team after leaving or being removed: a new period of involvement.
            await self._update(
                current.id,
                "membership = ?, status = 'active', invited_by = COALESCE(?, invited_by),"
                " started_at = ?, ended_at = NULL, end_reason = NULL, next_prompt_at = NULL",
                (membership, invited_by, now),
            )
        elif not present and current.is_active:
            await self._update(
                current.id,
                "membership = ?, status = 'ended', ended_at = ?, end_reason = ?,"
                " next_prompt_at = NULL",
                (membership, now, reason),
            )
        else:
            await self._update(current.id, "membership = ?", (membership,))
        return await self._require(current.id), True

    async def for_family(self, family_id: int, active_only: bool = True) -> list[Involvement]:
        """The team, in the order people joined it."""
        return [
            Involvement.from_row(row)
            for row in await self._family_rows(family_id)
            if not active_only or row["status"] == "active"
        ]

    async def for_user(self, user_id: str, active_only: bool = True) -> list[Involvement]:
        rows = await self._tx.fetchall(
            "SELECT * FROM involvement WHERE user_id = ?"
            " AND (? = 0 OR status = 'active') ORDER BY started_at, id",
            (user_id, int(active_only)),
        )
        return [Involvement.from_row(row) for row in rows]

    async def lead(self, family_id: int) -> Involvement | None:
        for row in await self._family_rows(family_id):
            if row["is_lead"]:
                return Involvement.from_row(row)
        return None

    async def leads(self, family_ids: Iterable[int]) -> dict[int, Involvement]:
        """`lead` for several families in one query (those with none are left out)."""
        rows = await self._tx.fetchall_in(
            "SELECT * FROM involvement WHERE is_lead AND family_id IN ({in_list})"
            " ORDER BY started_at, id",
            family_ids,
        )
        found: dict[int, Involvement] = {}
        for row in rows:  # the first in team order, as `lead`
            found.setdefault(int(row["family_id"]), Involvement.from_row(row))
        return found

    async def set_role(self, family_id: int, user_id: str, role: str | None) -> Involvement:
        current = await self._require_member(family_id, user_id)
        await self._update(current.id, "role = ?", (role,))
        return await self._require(current.id)

    async def set_sensitive(self, family_id: int, user_id: str, sensitive: bool) -> Involvement:
        current = await self._require_member(family_id, user_id)
        await self._update(current.id, "sensitive = ?", (int(sensitive),))
        return await self._require(current.id)

    async def set_lead(self, family_id: int, user_id: str) -> Involvement:
        """Make this active member the family's only lead, taking the role from anyone else."""
        current = await self._require_member(family_id, user_id)
        if not current.is_active:
            raise ConflictError(f"{user_id} is no longer on this family's team")
        now = encode_time(self._tx.now())
        # Clear first: the unique index allows one lead per family at any moment.
        await self._tx.execute(
            "UPDATE involvement SET is_lead = 0, updated_at = ?"
            " WHERE family_id = ? AND is_lead = 1 AND id != ?",
            (now, family_id, current.id),
        )
        await self._update(current.id, "is_lead = 1", ())
        return await self._require(current.id)

    async def confirm(self, involvement_id: int, next_prompt_at: datetime) -> Involvement:
        """The practitioner said they are still involved; ask again at `next_prompt_at`."""
        current = await self._require(involvement_id)
        if not current.is_active:
            raise ConflictError("an ended involvement cannot be confirmed")
        await self._update(
            involvement_id,
            "last_confirmed_at = ?, next_prompt_at = ?",
            (encode_time(self._tx.now()), encode_time(next_prompt_at)),
        )
        return await self._require(involvement_id)

    async def set_next_prompt(
        self, involvement_id: int, next_prompt_at: datetime | None
    ) -> Involvement:
        """Schedule the first (or a rescheduled) prompt without recording a confirmation."""
        await self._update(
            involvement_id, "next_prompt_at = ?", (encode_optional_time(next_prompt_at),)
        )
        return await self._require(involvement_id)

    async def by_ids(self, involvement_ids: Iterable[int]) -> dict[int, Involvement]:
        """Several involvements in one query, by id (missing ids are left out)."""
        rows = await self._tx.fetchall_in(
            "SELECT * FROM involvement WHERE id IN ({in_list})", involvement_ids
        )
        return {int(row["id"]): Involvement.from_row(row) for row in rows}

    async def prompt_states(
        self, involvement_ids: Iterable[int]
    ) -> dict[int, tuple[datetime | None, str, str]]:
        """(next_prompt_at, status, membership) by id, read lightly: how the sweep checks that
        nothing changed an involvement between planning its question and queueing it."""
        rows = await self._tx.fetchall_in(
            "SELECT id, next_prompt_at, status, membership FROM involvement"
            " WHERE id IN ({in_list})",
            involvement_ids,
        )
        return {
            int(row[0]): (decode_optional_time(row[1]), str(row[2]), str(row[3])) for row in rows
        }

    async def clear_next_prompts(self, involvement_ids: Sequence[int]) -> int:
        """No next prompt for these involvements (their prompt is open); one statement."""
        return await self._tx.execute_in(
            "UPDATE involvement SET next_prompt_at = NULL, updated_at = ?"
            " WHERE id IN ({in_list})",
            involvement_ids,
            leading=(encode_time(self._tx.now()),),
        )

    async def end(self, involvement_id: int, reason: EndReason) -> bool:
        """End an active involvement; False if it had already ended (its reason is kept)."""
        changed = await self._tx.execute(
            _END.format(which="id = ?"), (*self._ending(reason), involvement_id)
        )
        if changed == 0:
            await self._require(involvement_id)
        return changed > 0

    async def end_many(self, involvement_ids: Iterable[int], reason: EndReason) -> int:
        """`end` for a batch (a sweep's lapses), one statement per chunk; how many ended."""
        return await self._tx.execute_in(
            _END.format(which="id IN ({in_list})"), involvement_ids, self._ending(reason)
        )

    def _ending(self, reason: EndReason) -> tuple[str, str, str]:
        if reason not in END_REASONS:
            raise ValueError(
                f"unknown end reason {reason!r}; expected one of {', '.join(sorted(END_REASONS))}"
            )
        now = encode_time(self._tx.now())
        return now, reason, now

    async def delete_for_family(self, family_id: int) -> int:
        """Remove a purged family's roster and its prompts; rows of the roster removed."""
        await self._tx.execute(
            "DELETE FROM prompt WHERE involvement_id IN"
            " (SELECT id FROM involvement WHERE family_id = ?)",
            (family_id,),
        )
        return await self._tx.execute("DELETE FROM involvement WHERE family_id = ?", (family_id,))

    async def due_for_prompt(self, now: datetime, limit: int) -> list[Involvement]:
        """Active involvements whose next prompt time has come, most overdue first."""
        rows = await self._tx.fetchall(
            "SELECT * FROM involvement WHERE status = 'active' AND next_prompt_at <= ?"
            " ORDER BY next_prompt_at, id LIMIT ?",
            (encode_time(now), limit),
        )
        return [Involvement.from_row(row) for row in rows]

    async def _update(self, involvement_id: int, assignments: str, params: tuple[Any, ...]) -> None:
        """`assignments` is constant SQL from this module; every value is a bound parameter."""
        changed = await self._tx.execute(
            f"UPDATE involvement SET {assignments}, updated_at = ? WHERE id = ?",  # noqa: S608
            (*params, encode_time(self._tx.now()), involvement_id),
        )
        if changed == 0:
            raise NotFoundError(f"no involvement with id {involvement_id}")

    async def _require(self, involvement_id: int) -> Involvement:
        involvement = await self.by_id(involvement_id)
        if involvement is None:
            raise NotFoundError(f"no involvement with id {involvement_id}")
        return involvement

    async def _require_member(self, family_id: int, user_id: str) -> Involvement:
        involvement = await self.get(family_id, user_id)
        if involvement is None:
            raise NotFoundError(f"{user_id} has never been on the team of family {family_id}")
        return involvement


def _team(
    key: object, family: str, *, people: bool
) -> Callable[[sqlite3.Connection], _TeamRead]:
    def read(connection: sqlite3.Connection) -> _TeamRead:
        rows = connection.execute(_FAMILY_ROWS.format(family=family), (key,)).fetchall()
        if not people:
            return rows, None
        return rows, connection.execute(_TEAM_PEOPLE.format(family=family), (key,)).fetchall()

    return read


def _active(rows: Iterable[Any]) -> list[Involvement]:
    return [Involvement.from_row(row) for row in rows if row["status"] == "active"]
