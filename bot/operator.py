"""The operator's governance tools: `patchwork audit verify`, `patchwork practitioner erase`
and `patchwork roster export`. Each opens the database the bot uses (safe while it runs: one
short transaction each) and is itself audited when it reads or changes personal data."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from bot.app import DATABASE_FILE
from bot.auditkey import AuditKeyError, audit_key_path, load_audit_key
from bot.config import Config
from storage import Database
from storage.dossier import roster

OPERATOR = "operator"
"""The audit actor for what the operator does from the command line."""


@dataclass(frozen=True)
class Outcome:
    """What to print, and the exit status."""

    text: str
    status: int = 0


async def _open(config: Config) -> Database:
    path = config.storage.path / DATABASE_FILE
    if not path.exists():
        raise AuditKeyError(f"there is no database at {path}; check storage.path")
    key = load_audit_key(config.storage.path, create=False)
    if key is None:
        raise AuditKeyError(
            f"the audit key {audit_key_path(config.storage.path)} is missing; restore it from "
            "your backup (the bot creates it on its first start)"
        )
    return await Database.open(path, audit_key=key)


async def verify_audit(config: Config) -> Outcome:
    """Exit 0 when the whole chain verifies under the key, else 1 naming the first broken row."""
    async with await _open(config) as db, db.read() as tx:
        broken = await tx.audit.verify()
        head = await tx.audit.head()
        rows = await tx.audit.count()
    if broken is not None:
        return Outcome(
            f"audit chain BROKEN at row {broken}: that row or the one before it was changed, "
            "removed or written without the audit key",
            1,
        )
    if head is None:
        return Outcome("audit chain intact: no rows yet")
    return Outcome(f"audit chain intact: {rows} rows, head row {head.id} hash {head.hash}")


async def erase_practitioner(config: Config, user_id: str) -> Outcome:
    """Delete someone's contact details and pseudonymise them in the audit; refused while
    they are still involved with a family."""
    async with await _open(config) as db, db.transaction() as tx:
        active = await tx.involvements.for_user(user_id)
        if active:
            families = [await tx.families.get(item.family_id) for item in active]
            references = sorted(family.reference for family in families if family is not None)
            return Outcome(
                f"{user_id} is still involved with {len(active)} families "
                f"({', '.join(references)}); they must leave those teams, or the families be "
                "closed, before their details can be erased",
                1,
            )
        if not await tx.practitioners.erase(user_id):
            return Outcome(f"Patchwork holds nothing about {user_id}", 1)
        rows = await tx.audit.redact_user(user_id)
        alias = tx.audit.pseudonym(user_id)
        await tx.audit.append(OPERATOR, "practitioner_erased", detail={"user": alias})
    return Outcome(
        f"erased the contact details of {user_id}; {rows} audit rows now name them as {alias}"
    )


async def export_roster(config: Config, fmt: str) -> Outcome:
    """Every involvement of every family not yet purged, as CSV or JSON on standard output."""
    async with await _open(config) as db, db.transaction() as tx:
        rows = await roster(tx)
        await tx.audit.append(
            OPERATOR, "roster_export", detail={"rows": len(rows), "format": fmt}
        )
    if fmt == "json":
        return Outcome(json.dumps(rows, indent=2, ensure_ascii=False))
    out = io.StringIO()
    columns = list(rows[0]) if rows else ["reference", "user_id"]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return Outcome(out.getvalue().rstrip("\n"))
