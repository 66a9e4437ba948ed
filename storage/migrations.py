"""Schema migrations: an ordered list of async steps, version N being MIGRATIONS[N - 1].

The version lives in `PRAGMA user_version`. Each step runs in its own BEGIN IMMEDIATE
transaction together with its version bump, so a crash leaves the database at the previous
version, never half-migrated. Append new steps; never edit or reorder released ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import aiosqlite

from storage.audit import GENESIS_HASH, recompute_content
from storage.codec import canonical_json, decode_json_object
from storage.errors import DatabaseTooNewError
from storage.schema import SCHEMA_V1

if TYPE_CHECKING:
    from storage.db import Database
    from storage.transaction import Transaction

Migration = Callable[["Transaction"], Awaitable[None]]


async def _v1_initial_schema(tx: Transaction) -> None:
    """The whole schema of design section 2."""
    for statement in SCHEMA_V1:
        await tx.execute(statement)


async def _v2_outbox_priority(tx: Transaction) -> None:
    """Replies to practitioners go before background work (a backlog of prompts, say)."""
    await tx.execute("ALTER TABLE outbox ADD COLUMN priority INTEGER NOT NULL DEFAULT 0")
    await tx.execute("DROP INDEX outbox_pending")
    await tx.execute(
        "CREATE INDEX outbox_pending ON outbox (priority DESC, id)"
        " WHERE sent_at IS NULL AND failed_at IS NULL"
    )
    await tx.execute(
        "CREATE INDEX outbox_pending_by_room ON outbox (room_id, id)"
        " WHERE sent_at IS NULL AND failed_at IS NULL"
    )


_GOVERNANCE_RECORD = (
    """
    CREATE TABLE governance_record (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        family_id INTEGER NOT NULL REFERENCES family (id),
        kind TEXT NOT NULL CHECK (kind IN ('basis', 'informed', 'unsafe')),
        value TEXT CHECK ((kind = 'basis' AND value IS NOT NULL AND value IN
            ('public_task', 'legal_obligation', 'consent', 'vital_interests'))
            OR (kind != 'basis' AND value IS NULL)),
        note TEXT,
        recorded_by TEXT,
        recorded_at TEXT NOT NULL
    )
    """,
    "CREATE INDEX governance_record_by_family ON governance_record (family_id, id)",
    # Append-only, like the audit: a record that is made again adds a row.
    """
    CREATE TRIGGER governance_record_no_update BEFORE UPDATE ON governance_record
    BEGIN SELECT RAISE(ABORT, 'governance records are append-only'); END
    """,
    """
    CREATE TRIGGER governance_record_no_delete BEFORE DELETE ON governance_record
    BEGIN SELECT RAISE(ABORT, 'governance records are append-only'); END
    """,
    # The records made so far become each family's first entries, oldest first. Nobody was
    # recorded for `informed`, and no time for `unsafe`: the family's last change stands in.
    """
    INSERT INTO governance_record (family_id, kind, value, note, recorded_by, recorded_at)
    SELECT family_id, kind, value, note, recorded_by, recorded_at FROM (
        SELECT id AS family_id, 'basis' AS kind, lawful_basis AS value, basis_note AS note,
            basis_recorded_by AS recorded_by,
            COALESCE(basis_recorded_at, updated_at) AS recorded_at, 0 AS rank
        FROM family WHERE lawful_basis IS NOT NULL
        UNION ALL
        SELECT id, 'informed', NULL, informed_note, NULL, family_informed_at, 1
        FROM family WHERE family_informed_at IS NOT NULL
        UNION ALL
        SELECT id, 'unsafe', NULL, not_informed_reason, NULL, updated_at, 2
        FROM family WHERE not_informed_reason IS NOT NULL
    ) ORDER BY recorded_at, rank, family_id
    """,
)


async def _v3_governance_history(tx: Transaction) -> None:
    """Re-recording a lawful basis or whether the family was told adds to a history instead of
    overwriting it; the family's columns keep the current value."""
    for statement in _GOVERNANCE_RECORD:
        await tx.execute(statement)


_REDACTABLE_AUDIT = (
    "ALTER TABLE audit ADD COLUMN content_hash TEXT",
    "ALTER TABLE audit ADD COLUMN redacted_at TEXT",
    "DROP TRIGGER audit_no_update",
    "DROP TRIGGER governance_record_no_delete",
    # A purged family's governance records go with it; otherwise they are never deleted.
    """
    CREATE TRIGGER governance_record_no_delete BEFORE DELETE ON governance_record
    WHEN (SELECT status FROM family WHERE id = OLD.family_id) IS NOT 'purged'
    BEGIN SELECT RAISE(ABORT, 'governance records are append-only'); END
    """,
)
_AUDIT_REDACT_ONLY = """
    CREATE TRIGGER audit_redact_only BEFORE UPDATE ON audit
    WHEN NEW.id IS NOT OLD.id OR NEW.at IS NOT OLD.at OR NEW.family_id IS NOT OLD.family_id
        OR NEW.action IS NOT OLD.action OR NEW.prev_hash IS NOT OLD.prev_hash
        OR NEW.hash IS NOT OLD.hash OR NEW.content_hash IS NOT OLD.content_hash
        OR NEW.redacted_at IS NULL
    BEGIN SELECT RAISE(ABORT, 'audit rows are append-only; only redaction may change them'); END
    """


async def _v4_keyed_audit(tx: Transaction) -> None:
    """The audit chain becomes keyed (HMAC) and redactable: the existing rows are checked
    against the old plain chain, chained again under the key, and the result is audited."""
    for statement in _REDACTABLE_AUDIT:
        await tx.execute(statement)
    rows = await tx.fetchall("SELECT * FROM audit ORDER BY id")
    legacy_prev = prev = GENESIS_HASH
    broken: int | None = None
    for row in rows:
        digest = recompute_content(row)
        old = hashlib.sha256((legacy_prev + _legacy_content(row)).encode("utf-8")).hexdigest()
        if broken is None and (row["prev_hash"] != legacy_prev or row["hash"] != old):
            broken = int(row["id"])
        legacy_prev = str(row["hash"])
        link = tx.audit.link(prev, digest or "")
        await tx.execute(
            "UPDATE audit SET prev_hash = ?, content_hash = ?, hash = ? WHERE id = ?",
            (prev, digest, link, row["id"]),
        )
        prev = link
    await tx.execute(_AUDIT_REDACT_ONLY)
    if rows:
        await tx.audit.append(
            "patchwork", "audit_rekeyed", detail={"rows": len(rows), "earlier_break": broken}
        )


def _legacy_content(row: aiosqlite.Row) -> str:
    try:
        detail = decode_json_object(row["detail"])
    except ValueError:
        return ""
    return canonical_json(
        {
            "at": row["at"],
            "actor": row["actor"],
            "family_id": row["family_id"],
            "action": row["action"],
            "detail": detail,
        }
    )


_FAMILY_VIEWS = (
    """
    CREATE TABLE family_view (
        id INTEGER PRIMARY KEY,
        family_id INTEGER NOT NULL REFERENCES family (id),
        user_id TEXT NOT NULL,
        room_id TEXT UNIQUE,
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended')),
        card_event_id TEXT,
        shared_by TEXT NOT NULL,
        shared_at TEXT NOT NULL,
        ended_at TEXT,
        UNIQUE (family_id, user_id)
    )
    """,
    "ALTER TABLE practitioner ADD COLUMN share_family INTEGER NOT NULL DEFAULT 0"
    " CHECK (share_family IN (0, 1))",
    "ALTER TABLE practitioner ADD COLUMN share_family_changed_at TEXT",
)


async def _v5_family_views(tx: Transaction) -> None:
    """A family member's own view of their team (`!family share-with`), and each
    practitioner's separate consent to show their contact details there."""
    for statement in _FAMILY_VIEWS:
        await tx.execute(statement)


async def _v6_outbox_next_attempt(tx: Transaction) -> None:
    """The outbox sender asks after every pass when the next pending item is due; with this
    index that is one look-up, not a walk over every pending item (a backlog of thousands of
    prompts held outside working hours, say)."""
    await tx.execute(
        "CREATE INDEX outbox_next_attempt ON outbox (COALESCE(next_attempt_at, created_at))"
        " WHERE sent_at IS NULL AND failed_at IS NULL"
    )


async def _v7_outbox_by_room(tx: Transaction) -> None:
    """A room's whole outbox history (its last server ACL, the bot's own joins) is read with
    this index, not a walk over every row the bot ever queued: at start-up each family's room
    is checked, and at 3,000 rooms those walks took most of a minute."""
    await tx.execute("CREATE INDEX outbox_by_room ON outbox (room_id, id)")


async def _v8_outbox_waits_with_its_room(tx: Transaction) -> None:
    """Messages queued behind a held one now wait with it, by its time (`OutboxRepository`):
    an index of the items never held, which is what the sender walks (in place of one of every
    pending item), and one of each room's holds; and the messages already waiting behind a
    hold are given its time."""
    await tx.execute("DROP INDEX outbox_pending")
    await tx.execute(
        "CREATE INDEX outbox_fresh ON outbox (priority DESC, id)"
        " WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at IS NULL"
    )
    await tx.execute(
        "CREATE INDEX outbox_room_holds ON outbox (room_id, next_attempt_at)"
        " WHERE sent_at IS NULL AND failed_at IS NULL AND kind IN ('message', 'kick', 'state')"
    )
    await tx.execute(
        "UPDATE outbox AS item SET next_attempt_at = (SELECT MAX(earlier.next_attempt_at)"
        " FROM outbox AS earlier WHERE earlier.room_id = item.room_id AND earlier.id < item.id"
        " AND earlier.sent_at IS NULL AND earlier.failed_at IS NULL"
        " AND earlier.kind IN ('message', 'kick', 'state'))"
        " WHERE item.sent_at IS NULL AND item.failed_at IS NULL AND item.next_attempt_at IS NULL"
        " AND item.kind IN ('message', 'kick', 'state')"
    )


async def _v9_phone_as_shown(tx: Transaction) -> None:
    """A phone number is kept as it is shown too, beside its E.164 form, so a `!whois` does
    not work out each number's layout again (some 20-40 µs a number, the largest part of a
    team's card in Python). Numbers saved before have none, and are laid out when shown."""
    await tx.execute("ALTER TABLE practitioner ADD COLUMN phone_shown TEXT")


async def _v10_outbox_held(tx: Transaction) -> None:
    """The items held to a later time, in an index of their own: the sender's look for those
    whose time has come walked every pending item in `outbox_next_attempt` (the never-held
    ones are in it too, by the time they were queued), 10,000 of them after a sweep, about a
    millisecond at every pass and in every answer's COMMIT trip. Items never held are not in
    it, so queuing them writes nothing more."""
    await tx.execute(
        "CREATE INDEX outbox_held ON outbox (next_attempt_at)"
        " WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at IS NOT NULL"
    )


MIGRATIONS: list[Migration] = [
    _v1_initial_schema,
    _v2_outbox_priority,
    _v3_governance_history,
    _v4_keyed_audit,
    _v5_family_views,
    _v6_outbox_next_attempt,
    _v7_outbox_by_room,
    _v8_outbox_waits_with_its_room,
    _v9_phone_as_shown,
    _v10_outbox_held,
]
LATEST_VERSION = len(MIGRATIONS)


async def read_schema_version(connection: aiosqlite.Connection) -> int:
    async with connection.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return 0 if row is None else int(row[0])


async def run_migrations(database: Database, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database up to len(migrations), one transaction per step; returns the version.

    The version is re-read inside each step's transaction, so two processes starting at once
    cannot both apply the same step.
    """
    latest = len(migrations)
    async with database.read() as tx:
        version = await _schema_version(tx)
    if version > latest:
        raise DatabaseTooNewError(database.path, version, latest)
    for target in range(version + 1, latest + 1):
        async with database.transaction() as tx:
            version = await _schema_version(tx)
            if version > latest:
                raise DatabaseTooNewError(database.path, version, latest)
            if version >= target:
                continue
            await migrations[target - 1](tx)
            # PRAGMA takes no bound parameters; target is an int from range().
            await tx.execute(f"PRAGMA user_version = {target:d}")
            version = target
    return version


async def _schema_version(tx: Transaction) -> int:
    row = await tx.fetchone("PRAGMA user_version")
    return 0 if row is None else int(row[0])
