"""Practitioners: the people on family teams, their contact details and their consent to share.

Contact details are hidden from teams until the practitioner says yes (`share_contact`), and
the time of every change of mind is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import TYPE_CHECKING

from storage.codec import encode_optional_date, encode_time
from storage.errors import NotFoundError
from storage.models import Practitioner

if TYPE_CHECKING:
    from storage.transaction import Transaction


CONTACT_FIELDS: frozenset[str] = frozenset(
    {"display_name", "organisation", "job_title", "phone", "phone_shown", "email"}
)


class PractitionerRepository:
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    async def get(self, user_id: str) -> Practitioner | None:
        row = await self._tx.fetchone("SELECT * FROM practitioner WHERE user_id = ?", (user_id,))
        return None if row is None else Practitioner.from_row(row)

    async def ensure(self, user_id: str, display_name: str | None = None) -> Practitioner:
        """The practitioner's row, created (not sharing contact details) if it is missing."""
        now = encode_time(self._tx.now())
        await self._tx.execute(
            "INSERT OR IGNORE INTO practitioner (user_id, display_name, created_at, updated_at)"
            " VALUES (?, ?, ?, ?)",
            (user_id, display_name, now, now),
        )
        return await self._require(user_id)

    async def update_contact(self, user_id: str, **fields: str | None) -> Practitioner:
        """Set any of display_name, organisation, job_title, phone, email (None clears one).
        A phone number set without `phone_shown` clears it: it was the old number's."""
        unknown = sorted(set(fields) - CONTACT_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown contact field(s) {', '.join(unknown)}; "
                f"expected one of {', '.join(sorted(CONTACT_FIELDS))}"
            )
        if not fields:
            return await self._require(user_id)
        if "phone" in fields:
            fields.setdefault("phone_shown", None)
        names = sorted(fields)
        # Column names come only from CONTACT_FIELDS, checked above.
        assignments = ", ".join(f"{name} = ?" for name in names)
        changed = await self._tx.execute(
            f"UPDATE practitioner SET {assignments}, updated_at = ? WHERE user_id = ?",  # noqa: S608
            (*(fields[name] for name in names), encode_time(self._tx.now()), user_id),
        )
        if changed == 0:
            raise NotFoundError(f"no practitioner {user_id}")
        return await self._require(user_id)

    async def set_share_contact(self, user_id: str, share: bool) -> Practitioner:
        """Record consent given or withdrawn; the time changes only when the answer does.

        A first answer is recorded even when it is "no", so a practitioner who declined is
        told apart from one who was never asked.
        """
        now = encode_time(self._tx.now())
        current = await self._require(user_id)
        if current.share_contact == share and current.share_contact_changed_at is not None:
            return current
        await self._tx.execute(
            "UPDATE practitioner SET share_contact = ?, share_contact_changed_at = ?,"
            " updated_at = ? WHERE user_id = ?",
            (int(share), now, now, user_id),
        )
        return await self._require(user_id)

    async def set_share_family(self, user_id: str, share: bool) -> Practitioner:
        """The separate consent to show contact details on families' own views; the time
        changes only when the answer does."""
        current = await self._require(user_id)
        if current.share_family == share and current.share_family_changed_at is not None:
            return current
        now = encode_time(self._tx.now())
        await self._tx.execute(
            "UPDATE practitioner SET share_family = ?, share_family_changed_at = ?,"
            " updated_at = ? WHERE user_id = ?",
            (int(share), now, now, user_id),
        )
        return await self._require(user_id)

    async def set_away_until(self, user_id: str, until: date | None) -> Practitioner:
        changed = await self._tx.execute(
            "UPDATE practitioner SET away_until = ?, updated_at = ? WHERE user_id = ?",
            (encode_optional_date(until), encode_time(self._tx.now()), user_id),
        )
        if changed == 0:
            raise NotFoundError(f"no practitioner {user_id}")
        return await self._require(user_id)

    async def erase(self, user_id: str) -> bool:
        """Delete someone's contact details and consent; the row stays as the roster's anchor.
        False if there was no such practitioner."""
        changed = await self._tx.execute(
            "UPDATE practitioner SET display_name = NULL, organisation = NULL, job_title = NULL,"
            " phone = NULL, phone_shown = NULL, email = NULL, share_contact = 0,"
            " share_contact_changed_at = NULL, share_family = 0, share_family_changed_at = NULL,"
            " away_until = NULL, updated_at = ? WHERE user_id = ?",
            (encode_time(self._tx.now()), user_id),
        )
        return changed > 0

    async def many(self, user_ids: Iterable[str]) -> dict[str, Practitioner]:
        """Several practitioners in one query (those with no row are left out)."""
        rows = await self._tx.fetchall_in(
            "SELECT * FROM practitioner WHERE user_id IN ({in_list})", user_ids
        )
        return {row["user_id"]: Practitioner.from_row(row) for row in rows}

    async def _require(self, user_id: str) -> Practitioner:
        practitioner = await self.get(user_id)
        if practitioner is None:
            raise NotFoundError(f"no practitioner {user_id}")
        return practitioner
