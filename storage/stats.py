"""Counts for the operator's metrics, read in one snapshot: how much is waiting in the outbox
and for how long, prompts due, sent and lapsed, families and involvements by status. Only
numbers and the fixed status names leave this module, never ids, names or references."""

from __future__ import annotations

from dataclasses import dataclass, field

from storage.codec import decode_time, encode_time
from storage.transaction import Transaction


@dataclass(frozen=True)
class StorageStats:
    outbox_pending: int = 0
    outbox_oldest_age_seconds: float = 0.0
    prompts_due: int = 0
    prompts_sent: int = 0
    prompts_lapsed: int = 0
    families: dict[str, int] = field(default_factory=dict)
    involvements: dict[str, int] = field(default_factory=dict)


async def read_stats(tx: Transaction) -> StorageStats:
    """The counts as of `tx.now()`."""
    now = tx.now()
    outbox = await tx.fetchone(
        "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox"
        " WHERE sent_at IS NULL AND failed_at IS NULL"
    )
    oldest = 0.0
    if outbox is not None and outbox["oldest"] is not None:
        oldest = max(0.0, (now - decode_time(outbox["oldest"])).total_seconds())
    due = await tx.fetchone(
        "SELECT COUNT(*) AS n FROM involvement WHERE status = 'active' AND next_prompt_at <= ?",
        (encode_time(now),),
    )
    prompts = await tx.fetchone(
        "SELECT COUNT(sent_at) AS sent,"
        " COALESCE(SUM(answer = 'lapsed'), 0) AS lapsed FROM prompt"
    )
    families = await tx.fetchall("SELECT status, COUNT(*) AS n FROM family GROUP BY status")
    involvements = await tx.fetchall(
        "SELECT status, COUNT(*) AS n FROM involvement GROUP BY status"
    )
    return StorageStats(
        outbox_pending=int(outbox["n"]) if outbox is not None else 0,
        outbox_oldest_age_seconds=oldest,
        prompts_due=int(due["n"]) if due is not None else 0,
        prompts_sent=int(prompts["sent"]) if prompts is not None else 0,
        prompts_lapsed=int(prompts["lapsed"]) if prompts is not None else 0,
        families={str(row["status"]): int(row["n"]) for row in families},
        involvements={str(row["status"]): int(row["n"]) for row in involvements},
    )
