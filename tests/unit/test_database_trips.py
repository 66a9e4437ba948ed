"""Each trip to the database thread costs more than most statements do in SQLite, so the
storage layer saves the trips it can without changing what runs or in what order: BEGIN goes
with the first statement, a savepoint is opened with its block's first write (and still undoes
exactly its own writes), a write whose result nobody needs goes with the next trip (and one
that fails there ends the transaction), so the sync token goes with the COMMIT, a plain read
has no BEGIN or COMMIT and cannot write, a room's family and a family's involvements are
read once per transaction until something is written, reads wanted together go in one trip
(an event's inbox check with its room's family and team, a team with its people), and a read
of what a commit leaves goes with the COMMIT."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.dbtime import DatabaseTime
from bot.clock import ManualClock
from storage import Database, Family, Transaction

ROOM = "!family:x"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    clock = ManualClock(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
    database = await Database.open(tmp_path / "p.db", clock=clock)
    async with database.transaction() as tx:
        await tx.families.create("REF-1", ROOM, "@lead:x")
    yield database
    await database.close()


async def _statements(
    db: Database, *, write: bool, fail: bool, savepoint: bool = True, who: str = "@a:x"
) -> int:
    meter = DatabaseTime()
    with meter.counting():
        async with db.transaction() as tx:
            try:
                async with tx.savepoint() if savepoint else contextlib.nullcontext():
                    await tx.families.by_reference("REF-1")
                    if write:
                        await tx.practitioners.ensure(who, "A")
                    if fail:
                        raise ValueError("the command failed")
            except ValueError:
                pass
    return meter.calls


async def _write_then_fail(tx: Transaction) -> None:
    async with tx.savepoint():
        await tx.practitioners.ensure("@inside:x", "Inside")
        async with tx.savepoint():  # nested, and it succeeds
            await tx.practitioners.ensure("@nested:x", "Nested")
        raise ValueError("failed")


async def _status(tx: Transaction) -> str:
    family = await tx.families.by_room(ROOM)
    assert family is not None
    return family.status


async def test_a_savepoint_that_only_reads_costs_no_trip(db: Database) -> None:
    assert await _statements(db, write=False, fail=False) == 2, "BEGIN with the SELECT, COMMIT"
    assert await _statements(db, write=False, fail=True) == 2, "the same, then ROLLBACK"


async def test_a_savepoint_is_opened_before_its_first_write_and_undoes_only_its_own(
    db: Database,
) -> None:
    bare = await _statements(db, write=True, fail=False, savepoint=False, who="@bare:x")
    written = await _statements(db, write=True, fail=False)
    assert written == bare, "SAVEPOINT with the first write; no RELEASE on success"
    failed = await _statements(db, write=True, fail=True, who="@failed:x")
    assert failed == bare + 1, "SAVEPOINT with the write, then ROLLBACK TO and RELEASE together"
    async with db.read() as tx:
        assert await tx.practitioners.get("@a:x") is not None
    async with db.transaction() as tx:
        await tx.practitioners.ensure("@before:x", "Before")
        with pytest.raises(ValueError, match="failed"):
            await _write_then_fail(tx)
        async with tx.savepoint():
            await tx.practitioners.ensure("@after:x", "After")
    async with db.read() as tx:
        assert await tx.practitioners.get("@before:x") is not None
        assert await tx.practitioners.get("@inside:x") is None
        assert await tx.practitioners.get("@nested:x") is None, "undone with its parent"
        assert await tx.practitioners.get("@after:x") is not None
        assert await tx.practitioners.get("@failed:x") is None


async def test_a_plain_read_has_no_begin_and_cannot_write(db: Database) -> None:
    meter = DatabaseTime()
    with meter.counting():
        async with db.read(snapshot=False) as tx:
            assert await tx.families.by_room(ROOM) is not None
    assert meter.calls == 1
    with pytest.raises(RuntimeError, match="plain read"):
        async with db.read(snapshot=False) as tx:
            await tx.practitioners.ensure("@a:x", "A")
    async with db.read() as tx:
        assert await tx.practitioners.get("@a:x") is None
    async with db.transaction() as tx:  # the connection is free for the next transaction
        await tx.practitioners.ensure("@a:x", "A")


async def test_a_rooms_family_is_read_once_until_the_transaction_writes(db: Database) -> None:
    meter = DatabaseTime()
    with meter.counting():
        async with db.transaction() as tx:
            first = await tx.families.by_room(ROOM)
            calls = meter.calls
            assert await tx.families.by_room(ROOM) == first
            assert await tx.families.by_room("!other:x") is None
            assert await tx.families.by_room("!other:x") is None
            assert meter.calls == calls + 1, "one read for the other room, none again"
            assert first is not None
            await tx.families.close(first.id, "done")
            assert await _status(tx) == "closed", "re-read after a write"
            try:
                async with tx.savepoint():
                    await tx.families.set_status(first.id, "active")
                    assert await _status(tx) == "active"
                    raise ValueError("undo")
            except ValueError:
                pass
            assert await _status(tx) == "closed", "re-read after the rollback"


async def test_an_events_inbox_check_reads_its_rooms_family_in_the_same_trip(
    db: Database,
) -> None:
    meter = DatabaseTime()
    with meter.counting():
        async with db.transaction() as tx:
            assert await tx.sync.is_new("$e", ROOM)
            family = await tx.families.by_room(ROOM)
            assert meter.calls == 1, "the room's family took a trip of its own"
            tx.sync.mark_processed_later("$e", ROOM)
        commit = meter.calls
    assert commit == 2, "the inbox row went with the COMMIT"
    assert family is not None
    assert family.reference == "REF-1"
    async with db.transaction() as tx:
        assert not await tx.sync.is_new("$e", ROOM), "recorded as handled"
        assert await tx.sync.is_new("$f", "!other:x")
        assert await tx.families.by_room("!other:x") is None


@contextlib.asynccontextmanager
async def sqlite_steps(db: Database) -> AsyncIterator[list[int]]:
    """SQLite's own steps, in hundreds, while the block runs: what a statement costs,
    whatever the machine's speed."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    connection = db._connection  # noqa: SLF001 - the cost in SQLite's own steps
    await connection.set_progress_handler(count, 100)
    try:
        yield steps
    finally:
        await connection.set_progress_handler(None, 100)


async def test_a_rooms_outbox_history_is_read_without_walking_every_room(db: Database) -> None:
    # Start-up checks each family's last server ACL in its room's outbox history; a walk over
    # every row the bot ever queued, per room, took most of a minute at 3,000 rooms.
    async with db.transaction() as tx:
        await tx.outbox.enqueue_many(
            [(f"t{n}", f"!room{n % 500}:x", "state", {"event_type": "m.room.server_acl"})
             for n in range(5000)],
            priority=0,
        )
    async with sqlite_steps(db) as steps, db.read(snapshot=False) as tx:
        history = await tx.outbox.for_room("!room7:x", ("state",))
    assert len(history) == 10
    assert steps[0] < 20, f"{steps[0] * 100} SQLite steps for one room's ten rows"


class Failed(Exception):
    """The block's own failure, which the transaction rolls back for."""


async def _fail_after(tx: Transaction, *writes: str) -> None:
    for token in writes:
        if token.startswith("@"):
            await tx.practitioners.ensure(token, "A")
        else:
            await tx.sync.set_next_batch(token)
    raise Failed


async def test_a_transaction_that_runs_nothing_costs_no_trip(db: Database) -> None:
    meter = DatabaseTime()
    with meter.counting():
        async with db.transaction():
            pass
        with contextlib.suppress(Failed):
            async with db.transaction() as tx:
                await _fail_after(tx)
    assert meter.calls == 1, "only the rollback's check, which finds nothing to undo"


async def test_the_sync_token_goes_with_the_commit_and_only_if_it_commits(db: Database) -> None:
    meter = DatabaseTime()
    with meter.counting():
        async with db.transaction() as tx:
            await tx.sync.set_next_batch("s1")
            assert await tx.sync.get_next_batch() == "s1", "read back before it is written"
    assert meter.calls == 1, "BEGIN, the token and COMMIT in one trip"
    with contextlib.suppress(Failed):
        async with db.transaction() as tx:
            await _fail_after(tx, "@a:x", "s2")
    async with db.transaction() as tx:
        with contextlib.suppress(Failed):
            async with tx.savepoint():
                await _fail_after(tx, "s3")
    async with db.read() as tx:
        assert await tx.sync.get_next_batch() == "s1"
        assert await tx.practitioners.get("@a:x") is None
    with pytest.raises(RuntimeError, match="plain read"):
        async with db.read(snapshot=False) as tx:
            tx.write_later("DELETE FROM sync_state")


async def test_a_task_cancelled_with_its_first_statement_on_the_way_leaves_nothing_open(
    db: Database,
) -> None:
    # The BEGIN travels with the statement, so the rollback must not ask the connection
    # whether a transaction is open before that trip has run: it asks behind it.
    connection = db._connection  # noqa: SLF001 - to keep the database thread busy
    await connection.create_function("pause", 1, time.sleep)

    async def queued() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO sync_state (key, value) VALUES ('k', 'v')")

    busy = asyncio.create_task(connection.execute_fetchall("SELECT pause(0.3)"))
    await asyncio.sleep(0.05)
    task = asyncio.create_task(queued())  # its BEGIN and INSERT wait behind the pause
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await busy
    async with db.transaction() as tx:  # would fail: "cannot start a transaction within..."
        await tx.practitioners.ensure("@next:x", "Next")
    async with db.read() as tx:
        assert await tx.fetchone("SELECT * FROM sync_state WHERE key = 'k'") is None
        assert await tx.practitioners.get("@next:x") is not None


async def _seed_team(db: Database, *joined: str, left: str | None = None) -> Family:
    """REF-1's team: each of `joined` with a practitioner row named by its first letter,
    the first of them the lead, and `left` joined and gone."""
    async with db.transaction() as tx:
        family = await tx.families.by_reference("REF-1")
        assert family is not None
        for user_id in (*joined, *([left] if left else [])):
            await tx.practitioners.ensure(user_id, user_id[1:2].upper())
            await tx.involvements.upsert_membership(family.id, user_id, "join")
        await tx.involvements.set_lead(family.id, joined[0])
        if left:
            await tx.involvements.upsert_membership(family.id, left, "leave")
    return family


async def test_a_familys_involvements_are_read_once_until_the_transaction_writes(
    db: Database,
) -> None:
    family = await _seed_team(db, "@lead:x", "@b:x", left="@gone:x")
    meter = DatabaseTime()
    with meter.counting():
        async with db.read() as tx:
            sender = await tx.involvements.get(family.id, "@b:x")
            lead = await tx.involvements.lead(family.id)
            team = await tx.involvements.for_family(family.id)
            everyone = await tx.involvements.for_family(family.id, active_only=False)
            assert await tx.involvements.get(family.id, "@nobody:x") is None
    assert meter.calls == 2, "one read for all of them, then COMMIT"
    assert sender is not None
    assert sender.user_id == "@b:x"
    assert lead is not None
    assert lead.user_id == "@lead:x"
    assert [row.user_id for row in team] == ["@lead:x", "@b:x"]
    assert [row.user_id for row in everyone] == ["@lead:x", "@b:x", "@gone:x"]
    async with db.transaction() as tx:
        assert (await tx.involvements.lead(family.id)) == lead
        await tx.involvements.set_role(family.id, "@b:x", "teacher")
        changed = await tx.involvements.get(family.id, "@b:x")
        assert changed is not None
        assert changed.role == "teacher", "re-read after a write"


async def test_a_team_and_its_people_are_read_in_one_trip(db: Database) -> None:
    family = await _seed_team(db, "@lead:x", "@b:x", left="@gone:x")
    meter = DatabaseTime()
    with meter.counting():
        async with db.transaction() as tx:
            team, people = await tx.involvements.with_practitioners(family.id)
            assert await tx.involvements.get(family.id, "@b:x") is not None  # kept
            first = meter.calls
            await tx.involvements.set_role(family.id, "@b:x", "teacher")
            again, _ = await tx.involvements.with_practitioners(family.id)
    assert first == 1, "the team and its people took more than one trip"
    assert [row.user_id for row in team] == ["@lead:x", "@b:x"]
    assert sorted(people) == ["@b:x", "@lead:x"], "only the active team's people are read"
    assert people["@b:x"].display_name == "B"
    assert [row.role for row in again] == [None, "teacher"], "re-read after a write"


async def test_an_events_inbox_check_reads_its_rooms_team_and_if_asked_its_people(
    db: Database,
) -> None:
    family = await _seed_team(db, "@lead:x", "@b:x")
    meter = DatabaseTime()
    with meter.counting():
        async with db.transaction() as tx:
            assert await tx.sync.is_new("$whois", ROOM, people=True)
            assert await tx.involvements.get(family.id, "@b:x") is not None
            team, people = await tx.involvements.with_practitioners(family.id)
            with_people = meter.calls
        committed = meter.calls
        async with db.transaction() as tx:
            assert await tx.sync.is_new("$message", ROOM)
            assert await tx.involvements.get(family.id, "@b:x") is not None
            without = meter.calls - committed
            await tx.involvements.with_practitioners(family.id)
            people_later = meter.calls - committed - without
            await tx.involvements.set_role(family.id, "@b:x", "teacher")
            again = await tx.involvements.get(family.id, "@b:x")
    assert (with_people, without, people_later) == (1, 1, 1), "one trip each, people apart"
    assert [row.user_id for row in team] == ["@lead:x", "@b:x"]
    assert people["@b:x"].display_name == "B"
    assert again is not None
    assert again.role == "teacher", "re-read after a write"
    async with db.transaction() as tx:
        assert await tx.sync.is_new("$elsewhere", "!no-family:x", people=True)


async def _values(db: Database) -> list[str]:
    async with db.read() as tx:
        rows = await tx.fetchall("SELECT value FROM sync_state WHERE key LIKE 'k%' ORDER BY key")
    return [str(row["value"]) for row in rows]


def _later(tx: Transaction, value: str) -> None:
    tx.write_later("INSERT INTO sync_state (key, value) VALUES (?, ?)", (f"k-{value}", value))


async def test_a_write_nobody_needs_a_result_of_goes_with_the_next_trip_in_its_order(
    db: Database,
) -> None:
    meter = DatabaseTime()
    with meter.counting():
        async with db.transaction() as tx:
            _later(tx, "first")
            assert meter.calls == 0
            row = await tx.fetchone("SELECT value FROM sync_state WHERE key = 'k-first'")
            assert row is not None, "what the block reads afterwards sees it"
            assert meter.calls == 1, "BEGIN, the write and the read in one trip"
            tx.write_later("UPDATE sync_state SET value = 'second' WHERE key = 'k-first'")
    assert meter.calls == 2, "the next with the COMMIT"
    assert await _values(db) == ["second"]


async def test_a_write_asked_for_later_is_undone_with_its_savepoint(db: Database) -> None:
    async with db.transaction() as tx:
        _later(tx, "a-before")
        with contextlib.suppress(Failed):
            async with tx.savepoint():
                _later(tx, "dropped")  # never sent
                raise Failed
        with contextlib.suppress(Failed):
            async with tx.savepoint():  # entered before the inner one, opened after it failed
                with contextlib.suppress(Failed):
                    async with tx.savepoint():
                        _later(tx, "inner")
                        raise Failed
                _later(tx, "outer")
                await tx.fetchone("SELECT 1")  # sent, inside its savepoint
                raise Failed
        async with tx.savepoint():
            _later(tx, "kept")
    assert await _values(db) == ["a-before", "kept"]


async def _carry_a_failing_write(tx: Transaction) -> None:
    """A write that fails at a later trip, inside a block that catches errors (a command's),
    after which the block goes on."""
    await tx.practitioners.ensure("@before:x", "Before")
    tx.write_later("INSERT INTO no_such_table VALUES (1)")
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        async with tx.savepoint():
            await tx.families.by_reference("REF-1")  # the trip that carries it
    with pytest.raises(RuntimeError, match="can only roll back"):
        await tx.practitioners.ensure("@after:x", "After")


async def test_a_write_asked_for_later_that_fails_ends_the_transaction(db: Database) -> None:
    # The transaction must not commit without the write, whatever caught its error.
    with pytest.raises(RuntimeError, match="cannot commit"):
        async with db.transaction() as tx:
            await _carry_a_failing_write(tx)
    async with db.read() as tx:
        assert await tx.practitioners.get("@before:x") is None
        assert await tx.practitioners.get("@after:x") is None


def _tokens(connection: sqlite3.Connection) -> list[str]:
    return [row[0] for row in connection.execute("SELECT value FROM sync_state")]


def _broken(connection: sqlite3.Connection) -> object:
    return connection.execute("SELECT no_such_column FROM sync_state").fetchall()


async def test_a_read_after_the_commit_goes_in_its_trip_and_sees_what_it_committed(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    meter = DatabaseTime()
    with meter.counting():
        async with db.transaction() as tx:
            await tx.sync.set_next_batch("s1")
            after = tx.read_after_commit(_tokens)
            assert after.value is None, "nothing is read before the commit"
    assert meter.calls == 1, "BEGIN, the token, COMMIT and the read in one trip"
    assert after.value == ["s1"]
    with contextlib.suppress(Failed):
        async with db.transaction() as tx:
            await tx.sync.set_next_batch("s2")
            rolled_back = tx.read_after_commit(_tokens)
            raise Failed
    assert rolled_back.value is None, "no commit, no read"
    async with db.transaction() as tx:
        await tx.sync.set_next_batch("s3")
        broken = tx.read_after_commit(_broken)
    assert broken.value is None
    assert "the commit stands" in caplog.text
    async with db.read() as tx:
        assert await tx.sync.get_next_batch() == "s3", "a failing read leaves the commit be"
