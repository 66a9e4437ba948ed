"""The retention job: purges closed families whose time has run out, and writes the audit
chain's head to the log, every `retention.purge_every` (and once at start-up).

The logged head lets an auditor tell later that the chain was not rewritten wholesale, even
by someone holding the audit key: every head ever logged must still be in the chain.
"""

from __future__ import annotations

import logging

from rooms.closing import purge_family
from rooms.policy import TeamPolicy
from storage import Database

log = logging.getLogger(__name__)

PURGE_BATCH = 20


async def purge_due_families(db: Database, policy: TeamPolicy) -> int:
    """Purge every closed family past its `purge_after`, a batch per transaction."""
    purged = 0
    while True:
        async with db.transaction() as tx:
            due = await tx.families.due_for_purge(tx.now(), PURGE_BATCH)
            for family in due:
                await purge_family(tx, family, policy=policy)
        purged += len(due)
        if len(due) < PURGE_BATCH:
            break
    if purged:
        log.info("purged %d closed families past their retention", purged)
    return purged


async def log_audit_head(db: Database) -> None:
    async with db.read() as tx:
        head = await tx.audit.head()
    if head is not None:
        log.info("audit chain head: row %d, hash %s", head.id, head.hash)
