"""Storage foundations: opening, file safety, PRAGMAs, migrations and transaction semantics."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.clock import ManualClock
from storage import LATEST_VERSION, MIGRATIONS, Database, DatabaseTooNewError, Transaction
from storage.migrations import _v9_phone_as_shown, run_migrations

START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)

EXPECTED_TABLES = {
    "practitioner",
    "family",
    "involvement",
    "prompt",
    "audit",
    "sync_state",
    "inbox",
    "undecrypted",
    "room_flag",
    "outbox",
}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "patchwork.sqlite3"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(db_path, clock=ManualClock(START))
    yield database
    await database.close()


def raw_user_version(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("PRAGMA user_version").fetchone()[0])
    finally:
        connection.close()


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- opening and migrations -------------------------------------------------------------------


async def test_open_migrates_empty_database_to_latest(db: Database, db_path: Path) -> None:
    assert db.schema_version == LATEST_VERSION == len(MIGRATIONS)
    assert raw_user_version(db_path) == LATEST_VERSION
    async with db.read() as tx:
        rows = await tx.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    assert EXPECTED_TABLES <= {row["name"] for row in rows}


async def test_reopen_keeps_data_and_does_not_rerun_migrations(db_path: Path) -> None:
    first = await Database.open(db_path)
    async with first.transaction() as tx:
        await tx.sync.set_next_batch("s72594_4483_1934")
    await first.close()

    second = await Database.open(db_path)
    try:
        assert second.schema_version == LATEST_VERSION
        async with second.read() as tx:
            assert await tx.sync.get_next_batch() == "s72594_4483_1934"
    finally:
        await second.close()
    assert raw_user_version(db_path) == LATEST_VERSION


async def test_newer_database_is_refused_and_left_untouched(db_path: Path) -> None:
    database = await Database.open(db_path)
    await database.close()
    newer = LATEST_VERSION + 5
    connection = sqlite3.connect(db_path)
    connection.execute(f"PRAGMA user_version = {newer}")
    connection.close()
    before = await asyncio.to_thread(db_path.read_bytes)

    with pytest.raises(DatabaseTooNewError) as caught:
        await Database.open(db_path)

    message = str(caught.value)
    assert f"schema version {newer}" in message
    assert f"versions up to {LATEST_VERSION}" in message
    assert str(db_path) in message
    assert "Upgrade Patchwork" in message
    assert (caught.value.found, caught.value.known) == (newer, LATEST_VERSION)
    assert await asyncio.to_thread(db_path.read_bytes) == before
    assert raw_user_version(db_path) == newer


async def test_rollback_journal_database_from_newer_version_is_not_switched_to_wal(
    tmp_path: Path,
) -> None:
    path = tmp_path / "foreign.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE something_new (x)")
    connection.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    connection.commit()
    connection.close()
    before = await asyncio.to_thread(path.read_bytes)

    with pytest.raises(DatabaseTooNewError):
        await Database.open(path)

    assert await asyncio.to_thread(path.read_bytes) == before
    assert not await asyncio.to_thread(Path(f"{path}-wal").exists)


async def test_failed_migration_step_leaves_previous_version(db: Database, db_path: Path) -> None:
    async def broken_step(tx: Transaction) -> None:
        await tx.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("step failed halfway")

    with pytest.raises(RuntimeError, match="halfway"):
        await run_migrations(db, [*MIGRATIONS, broken_step])

    assert raw_user_version(db_path) == LATEST_VERSION
    async with db.read() as tx:
        leftover = await tx.fetchone("SELECT name FROM sqlite_master WHERE name = 'half_done'")
    assert leftover is None


async def test_new_step_applies_once_and_older_code_then_refuses(db_path: Path) -> None:
    applied: list[int] = []

    async def add_column(tx: Transaction) -> None:
        applied.append(1)
        await tx.execute("ALTER TABLE practitioner ADD COLUMN pronouns TEXT")

    database = await Database.open(db_path)
    try:
        assert await run_migrations(database, [*MIGRATIONS, add_column]) == LATEST_VERSION + 1
        assert await run_migrations(database, [*MIGRATIONS, add_column]) == LATEST_VERSION + 1
    finally:
        await database.close()
    assert applied == [1]

    with pytest.raises(DatabaseTooNewError):
        await Database.open(db_path)


async def test_numbers_saved_before_the_shown_form_was_kept_are_kept_without_one(
    db_path: Path,
) -> None:
    database = await Database.open(db_path)
    async with database.transaction() as tx:
        await tx.practitioners.ensure("@sam:x")
        await tx.practitioners.update_contact("@sam:x", phone="+442079460555")
    await database.close()
    with sqlite3.connect(db_path) as connection:  # as a database of the version before was
        connection.execute("ALTER TABLE practitioner DROP COLUMN phone_shown")
        connection.execute("DROP INDEX outbox_held")  # the step after it
        connection.execute(f"PRAGMA user_version = {MIGRATIONS.index(_v9_phone_as_shown)}")

    database = await Database.open(db_path)
    try:
        async with database.read() as tx:
            sam = await tx.practitioners.get("@sam:x")
    finally:
        await database.close()
    assert sam is not None
    assert (sam.phone, sam.phone_shown) == ("+442079460555", None)


# --- file safety and connection settings ------------------------------------------------------


async def test_database_files_are_private(db: Database, db_path: Path) -> None:
    async with db.transaction() as tx:
        await tx.sync.set_next_batch("token")
    assert file_mode(db_path) == 0o600
    assert file_mode(db_path.parent) == 0o700
    sidecars = [Path(f"{db_path}-wal"), Path(f"{db_path}-shm")]
    assert any(path.exists() for path in sidecars)
    for path in sidecars:
        if path.exists():
            assert file_mode(path) == 0o600


async def test_existing_world_readable_file_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    path.touch()
    os.chmod(path, 0o644)
    database = await Database.open(path)
    await database.close()
    assert file_mode(path) == 0o600


async def test_connection_pragmas_are_in_force(db: Database) -> None:
    async with db.read() as tx:
        journal = await tx.fetchone("PRAGMA journal_mode")
        synchronous = await tx.fetchone("PRAGMA synchronous")
        foreign_keys = await tx.fetchone("PRAGMA foreign_keys")
        busy_timeout = await tx.fetchone("PRAGMA busy_timeout")
    assert journal is not None
    assert journal[0] == "wal"
    assert synchronous is not None
    assert synchronous[0] == 2
    assert foreign_keys is not None
    assert foreign_keys[0] == 1
    assert busy_timeout is not None
    assert busy_timeout[0] == 5000


async def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        async with db.transaction() as tx:
            await tx.execute(
                "INSERT INTO prompt (involvement_id, due_at) VALUES (?, ?)",
                (999, "2026-11-26T09:00:00.000000+00:00"),
            )


async def test_times_are_stored_as_fixed_width_utc_text(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.outbox.enqueue("txn-1", "!room:example.org", "notice", {"body": "hi"})
        row = await tx.fetchone("SELECT created_at FROM outbox WHERE txn_id = 'txn-1'")
    assert row is not None
    assert row["created_at"] == "2026-11-26T09:00:00.000000+00:00"


async def test_naive_clock_is_rejected(db_path: Path) -> None:
    database = await Database.open(db_path, clock=lambda: datetime(2026, 1, 1))
    try:
        with pytest.raises(ValueError, match="naive"):
            async with database.transaction() as tx:
                tx.now()
    finally:
        await database.close()


# --- transactions -----------------------------------------------------------------------------


async def test_failed_transaction_rolls_back_everything(db: Database) -> None:
    async def handle_event() -> None:
        async with db.transaction() as tx:
            await tx.sync.mark_processed("$event1", "!room:example.org")
            await tx.sync.set_next_batch("s2")
            await tx.outbox.enqueue("reply-$event1", "!room:example.org", "notice", {})
            await tx.audit.append("@alice:example.org", "whois")
            raise RuntimeError("handler crashed")

    with pytest.raises(RuntimeError, match="handler crashed"):
        await handle_event()

    async with db.read() as tx:
        assert not await tx.sync.is_processed("$event1")
        assert await tx.sync.get_next_batch() is None
        assert await tx.outbox.pending_count() == 0
        assert await tx.audit.count() == 0


async def test_savepoint_rollback_keeps_earlier_outer_writes(db: Database) -> None:
    async def failing_block(tx: Transaction, event_id: str) -> None:
        async with tx.savepoint():
            await tx.sync.mark_processed(event_id, "!r")
            raise ValueError(event_id)

    async with db.transaction() as tx:
        await tx.sync.mark_processed("$before", "!r")
        with pytest.raises(ValueError, match="inside"):
            await failing_block(tx, "$inside")
        async with tx.savepoint():
            await tx.sync.mark_processed("$outer_savepoint", "!r")
            with pytest.raises(ValueError, match="nested"):
                await failing_block(tx, "$nested")
        await tx.sync.mark_processed("$after", "!r")

    async with db.read() as tx:
        assert await tx.sync.is_processed("$before")
        assert not await tx.sync.is_processed("$inside")
        assert await tx.sync.is_processed("$outer_savepoint")
        assert not await tx.sync.is_processed("$nested")
        assert await tx.sync.is_processed("$after")


async def test_concurrent_transactions_are_serialised(db: Database) -> None:
    timeline: list[tuple[str, int]] = []

    async def increment(worker: int) -> None:
        async with db.transaction() as tx:
            timeline.append(("begin", worker))
            row = await tx.fetchone("SELECT value FROM sync_state WHERE key = 'counter'")
            value = 0 if row is None else int(row["value"])
            await asyncio.sleep(0.002)  # let the other tasks try to get in
            await tx.execute(
                "INSERT OR REPLACE INTO sync_state (key, value) VALUES ('counter', ?)",
                (str(value + 1),),
            )
            timeline.append(("end", worker))

    await asyncio.gather(*(increment(worker) for worker in range(8)))

    async with db.read() as tx:
        row = await tx.fetchone("SELECT value FROM sync_state WHERE key = 'counter'")
    assert row is not None
    assert row["value"] == "8"
    for index in range(0, len(timeline), 2):
        begin, end = timeline[index], timeline[index + 1]
        assert begin[0] == "begin"
        assert end == ("end", begin[1])


async def test_reads_and_writes_share_the_queue(db: Database) -> None:
    writer_inside = asyncio.Event()
    release_writer = asyncio.Event()

    async def writer() -> None:
        async with db.transaction() as tx:
            await tx.sync.set_next_batch("written")
            writer_inside.set()
            await release_writer.wait()

    async def reader() -> str | None:
        async with db.read() as tx:
            return await tx.sync.get_next_batch()

    writing = asyncio.create_task(writer())
    await writer_inside.wait()
    reading = asyncio.create_task(reader())
    await asyncio.sleep(0.01)
    assert not reading.done()
    release_writer.set()
    await writing
    assert await reading == "written"


async def test_nested_transaction_in_same_task_fails_instead_of_hanging(db: Database) -> None:
    async def nested() -> None:
        async with db.transaction(), db.transaction():
            pass

    with pytest.raises(RuntimeError, match="savepoint"):
        await asyncio.wait_for(nested(), timeout=2)


async def test_cancelled_transaction_rolls_back_and_database_stays_usable(db: Database) -> None:
    inside = asyncio.Event()

    async def stuck() -> None:
        async with db.transaction() as tx:
            await tx.sync.mark_processed("$cancelled", "!r")
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(stuck())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async with db.transaction() as tx:
        assert not await tx.sync.is_processed("$cancelled")
        assert await tx.sync.mark_processed("$next", "!r")


async def test_transaction_object_is_dead_after_commit(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.sync.set_next_batch("a")
    with pytest.raises(RuntimeError, match="already ended"):
        await tx.sync.set_next_batch("b")
    async with db.read() as check:
        assert await check.sync.get_next_batch() == "a"


async def test_close_is_idempotent_and_blocks_new_transactions(db_path: Path) -> None:
    database = await Database.open(db_path)
    await database.close()
    await database.close()
    with pytest.raises(RuntimeError, match="closed"):
        async with database.transaction():
            pass
