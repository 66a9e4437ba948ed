"""The append-only audit trail: who looked at or changed what, chained by SHA-256.

Each row's hash covers the previous row's hash and the row's own content, so editing,
removing or reordering any row breaks the chain at that row and `verify()` finds it.
(Removing rows from the very end leaves no trace in the chain; keep backups for that.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from storage.codec import canonical_json, decode_json_object, encode_json_object, encode_time
from storage.models import AuditEntry

if TYPE_CHECKING:
    from storage.transaction import Transaction

GENESIS_HASH = "0" * 64
_VERIFY_BATCH = 500


def audit_hash(
    prev_hash: str,
    at: str,
    actor: str,
    family_id: int | None,
    action: str,
    detail: Mapping[str, Any],
) -> str:
    """sha256 hex of prev_hash followed by the canonical JSON of the row's content.

    `at` is the stored text, so the hash does not depend on how datetimes are rendered.
    """
    content = canonical_json(
        {"at": at, "actor": actor, "family_id": family_id, "action": action, "detail": detail}
    )
    return hashlib.sha256((prev_hash + content).encode("utf-8")).hexdigest()


class AuditRepository:
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    async def append(
        self,
        actor: str,
        action: str,
        *,
        family_id: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Add a row at the end of the chain; reads are audited as well as writes."""
        content = dict(detail or {})
        # Store exactly the JSON that is hashed, so verify() recomputes the same value.
        stored_detail = encode_json_object(content)
        content = decode_json_object(stored_detail)
        at = encode_time(self._tx.now())
        last = await self._tx.fetchone("SELECT hash FROM audit ORDER BY id DESC LIMIT 1")
        prev_hash = GENESIS_HASH if last is None else str(last["hash"])
        digest = audit_hash(prev_hash, at, actor, family_id, action, content)
        row_id = await self._tx.insert(
            "INSERT INTO audit (at, actor, family_id, action, detail, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (at, actor, family_id, action, stored_detail, prev_hash, digest),
        )
        row = await self._tx.fetchone("SELECT * FROM audit WHERE id = ?", (row_id,))
        if row is None:
            raise RuntimeError("the audit row just written cannot be read back")
        return AuditEntry.from_row(row)

    async def append_many(
        self, actor: str, action: str, rows: Sequence[tuple[int | None, Mapping[str, Any]]]
    ) -> int:
        """Add one row per (family_id, detail), chained in order, reading the chain's end once.

        For the bot's bulk steps (thousands of prompts after an outage), where `append`'s
        read-back of every row would dominate. Returns the number of rows written.
        """
        if not rows:
            return 0
        at = encode_time(self._tx.now())
        last = await self._tx.fetchone("SELECT hash FROM audit ORDER BY id DESC LIMIT 1")
        prev_hash = GENESIS_HASH if last is None else str(last["hash"])
        for family_id, detail in rows:
            stored_detail = encode_json_object(dict(detail))
            content = decode_json_object(stored_detail)
            digest = audit_hash(prev_hash, at, actor, family_id, action, content)
            await self._tx.execute(
                "INSERT INTO audit (at, actor, family_id, action, detail, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (at, actor, family_id, action, stored_detail, prev_hash, digest),
            )
            prev_hash = digest
        return len(rows)

    async def recent(self, family_id: int | None, limit: int) -> list[AuditEntry]:
        """Newest first; one family's rows, or every row when family_id is None."""
        if family_id is None:
            rows = await self._tx.fetchall("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = await self._tx.fetchall(
                "SELECT * FROM audit WHERE family_id = ? ORDER BY id DESC LIMIT ?",
                (family_id, limit),
            )
        return [AuditEntry.from_row(row) for row in rows]

    async def count(self, action: str | None = None) -> int:
        if action is None:
            row = await self._tx.fetchone("SELECT COUNT(*) FROM audit")
        else:
            row = await self._tx.fetchone("SELECT COUNT(*) FROM audit WHERE action = ?", (action,))
        return 0 if row is None else int(row[0])

    async def verify(self) -> int | None:
        """None if the whole chain is intact, else the id of the first row that is not."""
        expected_prev = GENESIS_HASH
        last_id = 0
        while True:
            rows = await self._tx.fetchall(
                "SELECT id, at, actor, family_id, action, detail, prev_hash, hash"
                " FROM audit WHERE id > ? ORDER BY id LIMIT ?",
                (last_id, _VERIFY_BATCH),
            )
            if not rows:
                return None
            for row in rows:
                if row["prev_hash"] != expected_prev or row["hash"] != _recompute(row):
                    return int(row["id"])
                expected_prev = str(row["hash"])
                last_id = int(row["id"])


def _recompute(row: Any) -> str | None:
    try:
        detail = decode_json_object(row["detail"])
    except ValueError:
        return None
    return audit_hash(
        row["prev_hash"], row["at"], row["actor"], row["family_id"], row["action"], detail
    )
