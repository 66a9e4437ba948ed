"""Forgetting what is no longer needed: processed event ids and sent or failed outbox items
older than `HISTORY_RETENTION`. Run with every prompt sweep.

The inbox of processed event ids is what makes a replay harmless, so the sync loop never
pages back further than this horizon (`bot.sync`): an event older than it that is no longer in
the inbox is not handled again.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from storage import Database

log = logging.getLogger(__name__)

HISTORY_RETENTION = timedelta(days=14)


async def prune_history(db: Database) -> None:
    async with db.transaction() as tx:
        before = tx.now() - HISTORY_RETENTION
        items = await tx.outbox.prune(before)
        events = await tx.sync.prune_inbox(before)
    if items or events:
        log.debug("forgot %d outbox items and %d processed event ids", items, events)
