"""The append-only audit trail: who looked at or changed what, chained by keyed hash.

Each row stores `content_hash`, the SHA-256 of its content (time, actor, family, action,
detail), and `hash`, an HMAC-SHA256 under the audit key of the previous row's hash followed by
its own content hash. Editing, removing or reordering any row breaks the chain at that row and
`verify()` finds it; without the key, which lives outside the database, nobody can compute a
chain that verifies. (Removing rows from the very end leaves no trace in the chain; the chain
head is logged every day for that.)

Redaction (a purged family, an erased practitioner) replaces a row's actor and detail with a
pseudonymous minimum and marks the row redacted. Its content hash and link stay, so the chain
still verifies after a purge; a redacted row's former content can no longer be checked, by
design. A trigger allows no other change and no delete.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from storage.codec import (
    canonical_json,
    decode_json_object,
    decode_time,
    encode_json_object,
    encode_time,
)
from storage.models import AuditEntry

if TYPE_CHECKING:
    import aiosqlite

    from storage.transaction import Transaction

GENESIS_HASH = "0" * 64
PSEUDONYM_PREFIX = "pseudonym:"
_VERIFY_BATCH = 500
_HEAD = "SELECT hash FROM audit ORDER BY id DESC LIMIT 1"
_INSERT = (
    "INSERT INTO audit (at, actor, family_id, action, detail, prev_hash, content_hash, hash)"
)


def content_hash(
    at: str, actor: str, family_id: int | None, action: str, detail: Mapping[str, Any]
) -> str:
    """sha256 hex of the canonical JSON of a row's content; `at` is the stored text, so the
    hash does not depend on how datetimes are rendered."""
    content = canonical_json(
        {"at": at, "actor": actor, "family_id": family_id, "action": action, "detail": detail}
    )
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def link_hash(key: bytes | None, prev_hash: str, content: str) -> str:
    """The chain link: HMAC-SHA256 under the audit key, or plain SHA-256 with no key."""
    message = (prev_hash + content).encode("ascii")
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


_Content = tuple[str, str, int | None, str, str, str]
"""A row's at, actor, family_id, action, detail (as stored) and content hash."""
_Row = tuple[str, str, int | None, str, str, str, str, str]
"""A row's values in `_INSERT`'s columns."""


def _end_of(last: Any) -> str:
    """The hash a new row links to: the last row's (`_HEAD`), or the genesis hash."""
    return GENESIS_HASH if last is None else str(last[0])


def _linked(key: bytes | None, prev_hash: str, content: _Content) -> _Row:
    """The row of `content`, linked to `prev_hash`."""
    at, actor, family_id, action, stored_detail, digest = content
    return (at, actor, family_id, action, stored_detail, prev_hash, digest,
            link_hash(key, prev_hash, digest))


def _append_row(connection: sqlite3.Connection, key: bytes | None, content: _Content
                ) -> tuple[_Row, int]:
    """On the database thread: the row of `content` linked to the chain's end and written,
    and its id."""
    row = _linked(key, _end_of(connection.execute(_HEAD).fetchone()), content)
    row_id = connection.execute(_INSERT + " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row).lastrowid
    if row_id is None:
        raise RuntimeError("the audit row was not inserted")
    return row, row_id


def pseudonym(key: bytes | None, user_id: str) -> str:
    """A stable stand-in for a user id that cannot be turned back without the key."""
    if not user_id.startswith("@"):
        return user_id
    return PSEUDONYM_PREFIX + link_hash(key, "pseudonym", user_id)[:16]


class AuditRepository:
    def __init__(self, tx: Transaction, key: bytes | None) -> None:
        self._tx = tx
        self._key = key

    def pseudonym(self, user_id: str) -> str:
        return pseudonym(self._key, user_id)

    def link(self, prev_hash: str, content: str) -> str:
        return link_hash(self._key, prev_hash, content)

    async def append(
        self,
        actor: str,
        action: str,
        *,
        family_id: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Add a row at the end of the chain; reads are audited as well as writes. The chain's
        end is read, the link made and the row written in one trip."""
        content = self._content(actor, action, family_id, detail or {})
        row, row_id = await self._tx.run(
            lambda connection: _append_row(connection, self._key, content)
        )
        # Built from what was written rather than read back.
        at, actor, family_id, action, stored_detail, prev_hash, _, link = row
        return AuditEntry(
            id=row_id,
            at=decode_time(at),
            actor=actor,
            family_id=family_id,
            action=action,
            detail=decode_json_object(stored_detail),
            prev_hash=prev_hash,
            hash=link,
        )

    def append_later(
        self,
        actor: str,
        action: str,
        *,
        family_id: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """`append` for a caller that does not need the row (a look-up): it is written with
        the transaction's next trip (`run_later`), and whatever reads the trail afterwards, in
        this transaction or after it commits, finds it in its place."""
        content = self._content(actor, action, family_id, detail or {})
        self._tx.run_later(lambda connection: _append_row(connection, self._key, content))

    async def append_many(
        self, actor: str, action: str, rows: Sequence[tuple[int | None, Mapping[str, Any]]]
    ) -> int:
        """Add one row per (family_id, detail), chained in order, reading the chain's end once.

        For the bot's bulk steps (thousands of prompts after an outage): the links are
        computed first, then written with one multi-row INSERT per chunk, whose rows get
        ascending ids in the chain's order. Returns the number of rows written.
        """
        if not rows:
            return 0
        prev_hash = _end_of(await self._tx.fetchone(_HEAD))
        values: list[tuple[Any, ...]] = []
        for family_id, detail in rows:
            row = _linked(self._key, prev_hash, self._content(actor, action, family_id, detail))
            values.append(row)
            prev_hash = row[-1]
        await self._tx.insert_rows(_INSERT, values)
        return len(rows)

    def _content(
        self, actor: str, action: str, family_id: int | None, detail: Mapping[str, Any]
    ) -> _Content:
        """A row's content and its hash: `_INSERT`'s columns but the links."""
        # Store exactly the JSON that is hashed, so verify() recomputes the same value.
        stored_detail = encode_json_object(dict(detail))
        at = encode_time(self._tx.now())
        digest = content_hash(at, actor, family_id, action, decode_json_object(stored_detail))
        return (at, actor, family_id, action, stored_detail, digest)

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

    async def for_family(self, family_id: int) -> list[AuditEntry]:
        """Every row about one family, oldest first."""
        rows = await self._tx.fetchall(
            "SELECT * FROM audit WHERE family_id = ? ORDER BY id", (family_id,)
        )
        return [AuditEntry.from_row(row) for row in rows]

    async def about_user(self, user_id: str) -> list[AuditEntry]:
        """Every row made by someone or naming them in its detail, oldest first."""
        return [AuditEntry.from_row(row) for row in await self.rows_about_user(user_id)]

    async def rows_about_user(self, user_id: str) -> list[aiosqlite.Row]:
        return await self._tx.fetchall(
            "SELECT * FROM audit WHERE actor = ? OR instr(detail, ?) > 0 ORDER BY id",
            (user_id, _quoted(user_id)),
        )

    async def head(self) -> AuditEntry | None:
        row = await self._tx.fetchone("SELECT * FROM audit ORDER BY id DESC LIMIT 1")
        return None if row is None else AuditEntry.from_row(row)

    async def count(self, action: str | None = None) -> int:
        if action is None:
            row = await self._tx.fetchone("SELECT COUNT(*) FROM audit")
        else:
            row = await self._tx.fetchone("SELECT COUNT(*) FROM audit WHERE action = ?", (action,))
        return 0 if row is None else int(row[0])

    async def redact_family(self, family_id: int) -> int:
        """Reduce a purged family's rows to time, action and pseudonymous actor; rows changed."""
        rows = await self._tx.fetchall(
            "SELECT id, actor FROM audit WHERE family_id = ? AND redacted_at IS NULL",
            (family_id,),
        )
        now = encode_time(self._tx.now())
        for row in rows:
            await self._tx.execute(
                "UPDATE audit SET actor = ?, detail = '{}', redacted_at = ? WHERE id = ?",
                (self.pseudonym(str(row["actor"])), now, row["id"]),
            )
        return len(rows)

    async def redact_user(self, user_id: str) -> int:
        """Replace a user id by its pseudonym in every row that holds it; rows changed."""
        alias = self.pseudonym(user_id)
        now = encode_time(self._tx.now())
        changed = 0
        for entry in await self.about_user(user_id):
            actor = alias if entry.actor == user_id else entry.actor
            detail = decode_json_object(
                encode_json_object(entry.detail).replace(_quoted(user_id), _quoted(alias))
            )
            changed += await self._tx.execute(
                "UPDATE audit SET actor = ?, detail = ?, redacted_at = ? WHERE id = ?",
                (actor, encode_json_object(detail), now, entry.id),
            )
        return changed

    async def verify(self) -> int | None:
        """None if the whole chain is intact, else the id of the first row that is not."""
        expected_prev = GENESIS_HASH
        last_id = 0
        while True:
            rows = await self._tx.fetchall(
                "SELECT id, at, actor, family_id, action, detail, prev_hash, content_hash, hash,"
                " redacted_at FROM audit WHERE id > ? ORDER BY id LIMIT ?",
                (last_id, _VERIFY_BATCH),
            )
            if not rows:
                return None
            for row in rows:
                if not self._row_intact(row, expected_prev):
                    return int(row["id"])
                expected_prev = str(row["hash"])
                last_id = int(row["id"])

    def _row_intact(self, row: Any, expected_prev: str) -> bool:
        if row["prev_hash"] != expected_prev or row["content_hash"] is None:
            return False
        if row["hash"] != link_hash(self._key, row["prev_hash"], row["content_hash"]):
            return False
        # A redacted row's content was replaced on purpose; only its place in the chain counts.
        return row["redacted_at"] is not None or row["content_hash"] == recompute_content(row)


def recompute_content(row: Any) -> str | None:
    try:
        detail = decode_json_object(row["detail"])
    except ValueError:
        return None
    return content_hash(row["at"], row["actor"], row["family_id"], row["action"], detail)


def _quoted(user_id: str) -> str:
    """The user id as it appears inside stored JSON text."""
    return canonical_json(user_id)
