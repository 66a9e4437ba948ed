"""How long the still-involved sweep takes over 10,000 involvements, on a real SQLite file.

Builds one database (2,000 families of 5 joined practitioners, every involvement due), then on
copies of it measures, in the same run:
- baseline: the least any sweep must do: read the due involvements in batches of the same size,
  one transaction per batch, write one prompt row for each and clear its `next_prompt_at`;
- the first sweep after a long outage: 10,000 prompts queued (prompt rows, outbox items,
  audit rows);
- writing the queued questions as the outbox sends them (a sample, one read each);
- an idle sweep: nothing due, which is what runs every `prompts.sweep_every`;
- 10,000 reminders, then 10,000 lapses (kicks and notices queued);
- writing the queued lapse notices as the outbox sends them (a sample, one read each).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.dbtime import DatabaseTime
from bot.clock import ManualClock
from bot.working_hours import WorkingHours
from rooms.policy import TeamPolicy
from rooms.prompts import PromptSettings, SweepReport, queued_content, sweep
from storage import Database, OutboxItem
from storage.codec import encode_time

LONDON = ZoneInfo("Europe/London")
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday morning
DUE = START + timedelta(weeks=8)
SETTINGS = PromptSettings(
    interval=timedelta(weeks=8),
    remind_after=timedelta(days=3),
    lapse_after=timedelta(days=14),
    remove_on_lapse=True,
    schedule=WorkingHours.from_names(
        ("MO", "TU", "WE", "TH", "FR"),
        datetime(2026, 1, 1, 9).time(),
        datetime(2026, 1, 1, 17).time(),
        LONDON,
    ),
)
POLICY = TeamPolicy(
    bot_user_id="@patchwork:bench.example",
    allowed_servers=frozenset({"bench.example"}),
    admins=frozenset({"@admin:bench.example"}),
    family_creators="anyone",
    prompt_interval=SETTINGS.interval,
)


async def build(path: Path, families: int, members: int) -> None:
    """The starting state, written with plain SQL (building it is not what is measured)."""
    clock = ManualClock(START)
    db = await Database.open(path, clock=clock)
    now, due = encode_time(START), encode_time(DUE)
    try:
        async with db.transaction() as tx:
            for family in range(1, families + 1):
                await tx.execute(
                    "INSERT INTO family (id, reference, room_id, status, created_by, created_at,"
                    " updated_at) VALUES (?, ?, ?, 'active', ?, ?, ?)",
                    (family, f"BEN-{family:05d}", f"!room{family}:bench.example",
                     POLICY.bot_user_id, now, now),
                )
                for member in range(members):
                    user_id = f"@p{family}-{member}:bench.example"
                    await tx.execute(
                        "INSERT INTO practitioner (user_id, display_name, created_at, updated_at)"
                        " VALUES (?, ?, ?, ?)",
                        (user_id, f"Practitioner {family}-{member}", now, now),
                    )
                    await tx.execute(
                        "INSERT INTO involvement (family_id, user_id, membership, status,"
                        " started_at, next_prompt_at, updated_at)"
                        " VALUES (?, ?, 'join', 'active', ?, ?, ?)",
                        (family, user_id, now, due, now),
                    )
    finally:
        await db.close()


async def baseline(db: Database) -> int:
    """The unavoidable work: read each batch of due involvements, write one row for each (its
    prompt) and clear their next prompt time, one transaction per batch."""
    visited = 0
    while True:
        async with db.transaction() as tx:
            due = await tx.involvements.due_for_prompt(tx.now(), SETTINGS.batch_size)
            await tx.prompts.insert_many(
                [(row.id, row.next_prompt_at) for row in due if row.next_prompt_at is not None]
            )
            await tx.involvements.clear_next_prompts([row.id for row in due])
        visited += len(due)
        if len(due) < SETTINGS.batch_size:
            return visited


async def mark_all_sent(db: Database) -> None:
    """What the outbox sender would do once the homeserver had taken every prompt."""
    async with db.transaction() as tx:
        await tx.execute(
            "UPDATE prompt SET sent_at = ?, event_id = '$prompt' || id",
            (encode_time(tx.now()),),
        )


async def timed(
    figures: dict[str, dict[str, float]], key: str, label: str,
    work: Callable[[], Awaitable[object]],
) -> float:
    """Run `work`, print its wall and database time, and keep both under `key`."""
    meter = DatabaseTime()
    with meter.counting():
        started = time.perf_counter()
        result = await work()
        elapsed = time.perf_counter() - started
    detail = ""
    if isinstance(result, SweepReport):
        detail = (
            f"prompted {result.prompted}, reminded {result.reminded}, lapsed {result.lapsed},"
            f" {result.batches} transactions"
        )
    elif isinstance(result, int):
        detail = f"{result} rows"
    print(f"{label:<40} {elapsed * 1000:8.0f} ms {meter.seconds * 1000:8.0f} ms   {detail}")
    figures[key] = {"wall_ms": elapsed * 1000, "database_ms": meter.seconds * 1000,
                    "trips": meter.calls}
    return elapsed


WRITTEN = 1000
"""Questions written as the outbox would, each in a read transaction of its own."""


async def write_when_sent(db: Database, limit: int) -> int:
    """What the sender's content hook does for each question it sends (no write lock held)."""
    async with db.read() as tx:
        items = await tx.outbox.due(limit)
    for item in items:
        async with db.read() as tx:
            content = await queued_content(tx, item.room_id, item.payload, SETTINGS, POLICY)
        assert content is not None
    return len(items)


async def last_item(db: Database) -> int:
    async with db.read() as tx:
        row = await tx.fetchone("SELECT COALESCE(MAX(id), 0) FROM outbox")
    return 0 if row is None else int(row[0])


async def write_notices_when_sent(db: Database, after_id: int, limit: int) -> int:
    """The content hook for lapse notices queued after `after_id` (each in its own read, as
    the sender does); a notice that carries its text (an older version) is sent as it is."""
    async with db.read() as tx:
        rows = await tx.fetchall(
            "SELECT * FROM outbox WHERE id > ? AND kind = 'message' ORDER BY id LIMIT ?",
            (after_id, limit),
        )
    for item in (OutboxItem.from_row(row) for row in rows):
        if "content" in item.payload:
            continue
        async with db.read() as tx:
            content = await queued_content(tx, item.room_id, item.payload, SETTINGS, POLICY)
        assert content is not None
    return len(rows)


async def queued_bytes(db: Database) -> int:
    """What the outbox holds, in payload bytes: what the sweeps wrote into it."""
    async with db.read() as tx:
        row = await tx.fetchone("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox")
    return 0 if row is None else int(row[0])


async def chain_intact(db: Database) -> bool:
    async with db.read() as tx:
        return await tx.audit.verify() is None


async def run(families: int, members: int) -> dict[str, object]:
    total = families * members
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="patchwork-sweep-") as folder:
        template = Path(folder) / "template.db"
        await build(template, families, members)
        print(f"{total} involvements in {families} families, all due; batches of "
              f"{SETTINGS.batch_size}\n")
        print(f"{'':<40} {'wall':>11} {'database':>11}")

        clock = ManualClock(DUE + timedelta(minutes=5))
        base_path = Path(folder) / "baseline.db"
        shutil.copy(template, base_path)
        async with await Database.open(base_path, clock=clock) as db:
            await timed(figures, "baseline", "baseline: one prompt row per due involvement",
                        lambda: baseline(db))

        sweep_path = Path(folder) / "sweep.db"
        shutil.copy(template, sweep_path)
        async with await Database.open(sweep_path, clock=clock, audit_key=bytes(32)) as db:
            await timed(figures, "first", f"first sweep: {total} prompts queued",
                        lambda: sweep(db, SETTINGS, POLICY))
            after_first = await queued_bytes(db)
            figures["first"]["outbox_bytes"] = after_first
            await timed(figures, "written", f"written when sent: {WRITTEN} questions",
                        lambda: write_when_sent(db, WRITTEN))
            await timed(figures, "idle", "idle sweep: nothing due",
                        lambda: sweep(db, SETTINGS, POLICY))
            await mark_all_sent(db)
            clock.advance(timedelta(days=3))
            await timed(figures, "reminders", f"reminder sweep: {total} reminders",
                        lambda: sweep(db, SETTINGS, POLICY))
            figures["reminders"]["outbox_bytes"] = await queued_bytes(db) - after_first
            clock.advance(timedelta(days=11))
            before_lapses, after_reminders = await last_item(db), await queued_bytes(db)
            await timed(figures, "lapses", f"lapse sweep: {total} lapses",
                        lambda: sweep(db, SETTINGS, POLICY))
            figures["lapses"]["outbox_bytes"] = await queued_bytes(db) - after_reminders
            await timed(figures, "notices", f"written when sent: {WRITTEN} lapse notices",
                        lambda: write_notices_when_sent(db, before_lapses, WRITTEN))
            intact = await chain_intact(db)
    first, floor = figures["first"], figures["baseline"]
    print(f"\noutbox payloads written: {first['outbox_bytes'] / 1000:.0f} KB by the first sweep, "
          f"{figures['reminders']['outbox_bytes'] / 1000:.0f} KB by the reminders, "
          f"{figures['lapses']['outbox_bytes'] / 1000:.0f} KB by the lapses")
    print(f"first sweep: {first['database_ms'] / floor['database_ms']:.1f}x the baseline's "
          f"database time, {first['wall_ms'] / total * 1000:.0f} us per involvement; audit "
          f"chain {'intact' if intact else 'BROKEN'}")
    return {"involvements": total, "audit_chain_intact": intact, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--families", type=int, default=2000)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path("build/bench/prompt_sweep.json"))
    args = parser.parse_args()
    result = asyncio.run(run(args.families, args.members))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
