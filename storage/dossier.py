"""Everything stored about one family or one practitioner, exactly as stored, for subject
access requests and the council's records.

Rows are returned as plain dicts keyed by column name, with JSON columns decoded, so an export
holds what the database holds field for field and nothing is lost in translation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from storage.codec import decode_json_object

if TYPE_CHECKING:
    import aiosqlite

    from storage.transaction import Transaction

_JSON_COLUMNS = frozenset({"detail"})


def _plain(row: aiosqlite.Row) -> dict[str, Any]:
    return {
        key: decode_json_object(row[key]) if key in _JSON_COLUMNS else row[key]
        for key in row.keys()  # noqa: SIM118 - sqlite rows are not mappings
    }


async def _rows(tx: Transaction, sql: str, *params: Any) -> list[dict[str, Any]]:
    return [_plain(row) for row in await tx.fetchall(sql, params)]


async def family_dossier(tx: Transaction, family_id: int) -> dict[str, Any]:
    """The family row, its governance history, roster, prompts and audit rows."""
    family = await _rows(tx, "SELECT * FROM family WHERE id = ?", family_id)
    if not family:
        raise LookupError(f"no family with id {family_id}")
    return {
        "family": family[0],
        "governance_records": await _rows(
            tx, "SELECT * FROM governance_record WHERE family_id = ? ORDER BY id", family_id
        ),
        "involvements": await _rows(
            tx, "SELECT * FROM involvement WHERE family_id = ? ORDER BY id", family_id
        ),
        "prompts": await _rows(
            tx,
            "SELECT prompt.* FROM prompt JOIN involvement ON involvement.id = prompt.involvement_id"
            " WHERE involvement.family_id = ? ORDER BY prompt.id",
            family_id,
        ),
        "family_views": await _rows(
            tx, "SELECT * FROM family_view WHERE family_id = ? ORDER BY id", family_id
        ),
        "audit": await _rows(tx, "SELECT * FROM audit WHERE family_id = ? ORDER BY id", family_id),
    }


async def practitioner_dossier(tx: Transaction, user_id: str) -> dict[str, Any]:
    """Someone's contact record (with consent dates), involvements, prompts and audit rows.

    Each involvement carries its family's reference, so the practitioner can tell them apart.
    """
    practitioner = await _rows(tx, "SELECT * FROM practitioner WHERE user_id = ?", user_id)
    return {
        "practitioner": practitioner[0] if practitioner else None,
        "involvements": await _rows(
            tx,
            "SELECT involvement.*, family.reference AS family_reference FROM involvement"
            " JOIN family ON family.id = involvement.family_id"
            " WHERE involvement.user_id = ? ORDER BY involvement.id",
            user_id,
        ),
        "prompts": await _rows(
            tx,
            "SELECT prompt.* FROM prompt JOIN involvement ON involvement.id = prompt.involvement_id"
            " WHERE involvement.user_id = ? ORDER BY prompt.id",
            user_id,
        ),
        "audit": [_plain(row) for row in await tx.audit.rows_about_user(user_id)],
    }


async def roster(tx: Transaction) -> list[dict[str, Any]]:
    """Every involvement with its family's reference and status, for the operator's export."""
    return await _rows(
        tx,
        "SELECT family.reference, family.status AS family_status, involvement.user_id,"
        " involvement.role, involvement.is_lead, involvement.sensitive, involvement.status,"
        " involvement.membership, involvement.started_at, involvement.ended_at,"
        " involvement.end_reason, involvement.last_confirmed_at"
        " FROM involvement JOIN family ON family.id = involvement.family_id"
        " WHERE family.status != 'purged' ORDER BY family.reference, involvement.id",
    )
