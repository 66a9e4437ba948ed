"""Each statement is a trip to the database thread, so the storage layer saves the ones it can
without giving anything up: a savepoint costs nothing until its block writes (and still undoes
exactly its own writes), a plain read has no BEGIN or COMMIT and cannot write, and a room's
family is read once per transaction until something is written."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.dbtime import DatabaseTime
from bot.clock import ManualClock
from storage import Database, Transaction

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


async def test_a_savepoint_that_only_reads_costs_no_statement(db: Database) -> None:
    assert await _statements(db, write=False, fail=False) == 3, "BEGIN, SELECT, COMMIT"
    assert await _statements(db, write=False, fail=True) == 3


async def test_a_savepoint_is_opened_before_its_first_write_and_undoes_only_its_own(
    db: Database,
) -> None:
    bare = await _statements(db, write=True, fail=False, savepoint=False, who="@bare:x")
    written = await _statements(db, write=True, fail=False)
    assert written == bare + 1, "SAVEPOINT before the first write; no RELEASE on success"
    failed = await _statements(db, write=True, fail=True, who="@failed:x")
    assert failed == bare + 3, "SAVEPOINT, then ROLLBACK TO and RELEASE"
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


async def test_a_rooms_outbox_history_is_read_without_walking_every_room(db: Database) -> None:
    # Start-up checks each family's last server ACL in its room's outbox history; a walk over
    # every row the bot ever queued, per room, took most of a minute at 3,000 rooms.
    async with db.transaction() as tx:
        await tx.outbox.enqueue_many(
            [(f"t{n}", f"!room{n % 500}:x", "state", {"event_type": "m.room.server_acl"})
             for n in range(5000)],
            priority=0,
        )
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    connection = db._connection  # noqa: SLF001 - the statement's cost in SQLite's own steps
    await connection.set_progress_handler(count, 100)
    async with db.read(snapshot=False) as tx:
        history = await tx.outbox.for_room("!room7:x", ("state",))
    await connection.set_progress_handler(None, 100)
    assert len(history) == 10
    assert steps[0] < 20, f"{steps[0] * 100} SQLite steps for one room's ten rows"
