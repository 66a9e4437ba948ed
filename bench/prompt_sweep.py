"""How long the still-involved sweep takes over 10,000 involvements, on a real SQLite file.

Builds one database (2,000 families of 5 joined practitioners, every involvement due), then on
copies of it measures, in the same run:
- baseline: the least any sweep must do: read the due involvements in batches of the same size,
  one transaction per batch, write one prompt row for each and clear its `next_prompt_at`;
- the first sweep after a long outage: 10,000 prompts queued (prompt rows, outbox items,
  audit rows);
- an idle sweep: nothing due, which is what runs every `prompts.sweep_every`;
- 10,000 reminders, then 10,000 lapses (kicks and notices queued).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.clock import ManualClock
from bot.working_hours import WorkingHours
from rooms.policy import TeamPolicy
from rooms.prompts import PromptSettings, SweepReport, sweep
from storage import Database
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
            for row in due:
                assert row.next_prompt_at is not None
                await tx.prompts.insert(row.id, row.next_prompt_at)
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


async def timed(label: str, work: Callable[[], Awaitable[object]]) -> float:
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
    print(f"{label:<44} {elapsed:8.2f} s   {detail}")
    return elapsed


async def run(families: int, members: int) -> None:
    total = families * members
    with tempfile.TemporaryDirectory(prefix="patchwork-sweep-") as folder:
        template = Path(folder) / "template.db"
        await build(template, families, members)
        print(f"{total} involvements in {families} families, all due; batches of "
              f"{SETTINGS.batch_size}\n")

        clock = ManualClock(DUE + timedelta(minutes=5))
        base_path = Path(folder) / "baseline.db"
        shutil.copy(template, base_path)
        async with await Database.open(base_path, clock=clock) as db:
            floor = await timed(
                "baseline: one prompt row per due involvement", lambda: baseline(db)
            )

        sweep_path = Path(folder) / "sweep.db"
        shutil.copy(template, sweep_path)
        async with await Database.open(sweep_path, clock=clock) as db:
            first = await timed(
                f"first sweep: {total} prompts queued", lambda: sweep(db, SETTINGS, POLICY)
            )
            idle = await timed("idle sweep: nothing due", lambda: sweep(db, SETTINGS, POLICY))
            await mark_all_sent(db)
            clock.advance(timedelta(days=3))
            await timed(f"reminder sweep: {total} reminders", lambda: sweep(db, SETTINGS, POLICY))
            clock.advance(timedelta(days=11))
            await timed(f"lapse sweep: {total} lapses", lambda: sweep(db, SETTINGS, POLICY))

        print(f"\nfirst sweep: {first / floor:.1f}x the baseline, "
              f"{first / total * 1e6:.0f} us per involvement; idle sweep {idle * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--families", type=int, default=2000)
    parser.add_argument("--members", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.families, args.members))


if __name__ == "__main__":
    main()
