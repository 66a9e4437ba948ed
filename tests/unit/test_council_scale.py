"""What keeps the bot's cost flat at a council's size: bulk writes are one statement per batch
(and the audit chain they write still verifies), the sweep writes a question only for an
involvement nothing changed meanwhile, and the outbox's "when is the next item due" and "what
is due" are index look-ups rather than walks over every pending item."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.dbtime import DatabaseTime
from bench.prompt_sweep import POLICY, SETTINGS, build, mark_all_sent
from bot.clock import ManualClock
from rooms.prompts import sweep
from rooms.prompts.asking import Loaded, plan_prompts, write_prompts
from rooms.prompts.sweep import SweepReport
from storage import BACKGROUND, Database

KEY = bytes(range(32))
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday morning, as in bench.prompt_sweep
DUE = START + timedelta(weeks=8, minutes=5)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "p.db", clock=ManualClock(START), audit_key=KEY)
    yield database
    await database.close()


async def test_append_many_is_one_statement_and_keeps_the_chain(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.audit.append("@a:x", "whois", family_id=None)
    meter = DatabaseTime()
    with meter.counting():
        async with db.transaction() as tx:
            written = await tx.audit.append_many(
                "@bot:x", "prompt", [(None, {"n": n}) for n in range(300)]
            )
    assert written == 300
    assert meter.calls <= 4, "BEGIN, the chain's head, one INSERT, COMMIT"
    async with db.read() as tx:
        assert await tx.audit.verify() is None
        rows = await tx.audit.recent(None, 301)
        assert [row.detail.get("n") for row in reversed(rows)] == [None, *range(300)]
        # Each row links to the one before it, in id order.
        ordered = list(reversed(rows))
        assert all(b.prev_hash == a.hash for a, b in zip(ordered, ordered[1:], strict=False))


async def test_append_returns_what_was_stored(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.audit.append("@a:x", "first")
    meter = DatabaseTime()
    with meter.counting():
        async with db.transaction() as tx:
            entry = await tx.audit.append("@a:x", "whois", detail={"shown": ["@b:x"]})
            calls = meter.calls
    assert calls == 1, "BEGIN, the chain's end, the link and the row in one trip"
    async with db.read() as tx:
        assert await tx.audit.head() == entry
        assert await tx.audit.verify() is None


async def test_a_row_appended_later_goes_with_the_commit_in_its_place(db: Database) -> None:
    meter = DatabaseTime()
    with meter.counting():
        async with db.transaction() as tx:
            tx.audit.append_later("@a:x", "whois", family_id=None)
            tx.audit.append_later("@a:x", "cases", detail={"families": 2})
    assert meter.calls == 1, "BEGIN, both rows and COMMIT in one trip"
    async with db.transaction() as tx:
        tx.audit.append_later("@a:x", "audit")
        await tx.audit.append("@bot:x", "membership")  # after it, in the same trip
        tx.audit.append_later("@a:x", "whois")
    async with db.read() as tx:
        assert await tx.audit.verify() is None
        rows = await tx.audit.recent(None, 10)
    assert [row.action for row in reversed(rows)] == [
        "whois", "cases", "audit", "membership", "whois"
    ]


async def test_enqueue_many_keeps_an_item_already_queued(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.outbox.enqueue("t1", "!r:x", "message", {"content": {"body": "first"}})
        await tx.outbox.enqueue_many(
            [("t1", "!r:x", "message", {"content": {"body": "again"}}),
             ("t2", "!r:x", "message", {"content": {"body": "second"}})],
            priority=BACKGROUND,
        )
        first, second = await tx.outbox.get("t1"), await tx.outbox.get("t2")
        priority = await tx.fetchone("SELECT priority FROM outbox WHERE txn_id = 't2'")
    assert first is not None
    assert first.payload["content"]["body"] == "first"
    assert second is not None
    assert second.payload["content"]["body"] == "second"
    assert priority is not None
    assert priority[0] == BACKGROUND


async def test_the_next_due_time_is_an_index_look_up(db: Database) -> None:
    async with db.read() as tx:
        plan = await tx.fetchall(
            "EXPLAIN QUERY PLAN SELECT MIN(COALESCE(next_attempt_at, created_at)) FROM outbox"
            " WHERE sent_at IS NULL AND failed_at IS NULL"
        )
    assert any("outbox_next_attempt" in str(row[3]) for row in plan)


def _steps(path: Path, sql: str, params: dict[str, Any]) -> int:
    """SQLite's virtual machine steps (in hundreds) to run a query: what it reads, untimed."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    with sqlite3.connect(path) as conn:
        conn.set_progress_handler(count, 100)
        conn.execute(sql, params).fetchall()
    return steps


async def test_what_is_due_is_read_without_walking_a_backlog(tmp_path: Path) -> None:
    """With a sweep's prompts waiting (and one item held), reading what is due costs the same
    whether a hundred or three thousand wait: the background ones left out (an answer's
    COMMIT reads them so) are not walked, nor are the never-held ones when looking for held
    ones whose time has come."""
    cost: dict[int, dict[bool, int]] = {}
    for backlog in (100, 3000):
        path = tmp_path / f"backlog{backlog}.db"
        async with await Database.open(path, clock=ManualClock(START)) as db:
            async with db.transaction() as tx:
                await tx.outbox.enqueue_many(
                    [(f"t{n}", f"!r{n % 500}:x", "message", {"render": "prompt"})
                     for n in range(backlog)],
                    priority=BACKGROUND,
                )
                await tx.outbox.enqueue("held", "!invite:x", "invite", {"user_id": "@n:x"})
                item = await tx.outbox.get("held")
                assert item is not None
                await tx.outbox.mark_retry(item.id, "later", START + timedelta(hours=1))
                queries = {background: tx.outbox._due_query(24, {"background": background})
                           for background in (False, True)}
                assert len(await tx.outbox.due(24, background=False)) == 0
                assert len(await tx.outbox.due(24)) == 24
        cost[backlog] = {background: _steps(path, *query)
                         for background, query in queries.items()}
    for background in (False, True):
        assert cost[3000][background] <= 2 * cost[100][background] + 5, cost


async def test_a_sweep_writes_a_batch_in_a_few_statements(tmp_path: Path) -> None:
    path = tmp_path / "sweep.db"
    await build(path, families=100, members=5)
    async with await Database.open(path, clock=ManualClock(DUE), audit_key=KEY) as db:
        meter = DatabaseTime()
        with meter.counting():
            report = await sweep(db, SETTINGS, POLICY)
        assert report.prompted == 500
        batches = report.batches
        # Per batch: a read (due rows, families, practitioners) and a write (check, prompts,
        # outbox, clear, chain head, audit), each with BEGIN and COMMIT, never one per row.
        assert meter.calls <= 14 * batches + 2
        async with db.read() as tx:
            assert await tx.audit.verify() is None
            assert await tx.audit.count("prompt") == 500
            items = await tx.outbox.due(1000)
            prompts = await tx.fetchall("SELECT id, involvement_id FROM prompt")
        assert len(items) == 500
        assert {item.payload["prompt_id"] for item in items} == {row[0] for row in prompts}


async def test_a_lapse_sweep_costs_a_few_trips_a_batch_not_several_a_lapse(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sweep.db"
    await build(path, families=100, members=5)
    clock = ManualClock(DUE)
    async with await Database.open(path, clock=clock, audit_key=KEY) as db:
        await sweep(db, SETTINGS, POLICY)
        await mark_all_sent(db)
        clock.advance(timedelta(days=3))
        await sweep(db, SETTINGS, POLICY)  # the reminders
        clock.advance(timedelta(days=11))
        meter = DatabaseTime()
        with meter.counting():
            report = await sweep(db, SETTINGS, POLICY)
        assert report.lapsed == 500
        # Per batch: the prompts, their involvements, families, leads (no names: the notices
        # are written when sent); then the answers, the involvements ended, the notices and
        # kicks queued (and held with their rooms), the chain head and the audit rows: never
        # one per row.
        assert meter.calls <= 12 * report.batches + 2
        async with db.read() as tx:
            assert await tx.audit.verify() is None
            assert await tx.audit.count("lapse") == 500
            ended = await tx.fetchall(
                "SELECT COUNT(*) FROM involvement WHERE status = 'ended' AND end_reason = 'lapsed'"
            )
            queued = await tx.fetchall(
                "SELECT room_id, kind, json_extract(payload, '$.render') AS type, payload"
                " FROM outbox WHERE priority = ?"
                " AND sent_at IS NULL ORDER BY id",
                (BACKGROUND,),
            )
        assert ended[0][0] == 500
        lapse_items = [row for row in queued if row["kind"] == "kick" or row["type"] == "lapse"]
        kicks = [row for row in lapse_items if row["kind"] == "kick"]
        assert len(kicks) == 500
        assert len(lapse_items) == 1000
        assert not [row for row in queued if "Practitioner" in row["payload"]], "no names queued"
        # In each room a member's notice (notifying its lead or the admins) comes before
        # their kick.
        seen_notice: dict[str, int] = {}
        for row in lapse_items:
            if row["kind"] == "message":
                seen_notice[row["room_id"]] = seen_notice.get(row["room_id"], 0) + 1
            elif row["kind"] == "kick":
                assert seen_notice.get(row["room_id"], 0) > 0, "a kick before its notice"
                seen_notice[row["room_id"]] -= 1


async def test_an_involvement_that_ended_while_its_question_was_written_is_not_asked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sweep.db"
    await build(path, families=2, members=2)
    async with await Database.open(path, clock=ManualClock(DUE), audit_key=KEY) as db:
        async with db.read() as tx:
            due = await tx.involvements.due_for_prompt(tx.now(), 100)
            loaded = await Loaded.of(tx, due)
        plan = await plan_prompts(due, loaded, DUE, SETTINGS)
        assert len(plan.asked) == 4
        async with db.transaction() as tx:  # a `!leave` between planning and writing
            await tx.involvements.end(due[0].id, "left")
        report = SweepReport()
        async with db.transaction() as tx:
            await write_prompts(tx, plan, POLICY, report)
        async with db.read() as tx:
            asked = {row[0] for row in await tx.fetchall("SELECT involvement_id FROM prompt")}
        assert report.prompted == 3
        assert asked == {row.id for row in due[1:]}
