"""Opening Patchwork's SQLite database and handing out one transaction at a time.

There is a single aiosqlite connection. SQLite has one transaction per connection, so an
asyncio.Lock serialises `transaction()` and `read()`: a second task waits for the first to
commit instead of failing with "cannot start a transaction within a transaction".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType

import aiosqlite

from storage.codec import Clock, utc_now
from storage.errors import DatabaseTooNewError
from storage.migrations import LATEST_VERSION, read_schema_version, run_migrations
from storage.transaction import Transaction, on_database_thread

__all__ = ["Clock", "Database", "DatabaseTooNewError", "Transaction", "utc_now"]

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
BUSY_TIMEOUT_MS = 5000


class Database:
    """The bot's database: build once at start-up with `open()` and pass it down."""

    def __init__(
        self,
        path: Path,
        connection: aiosqlite.Connection,
        clock: Clock,
        audit_key: bytes | None = None,
    ) -> None:
        self._path = path
        self._audit_key = audit_key
        self._connection = connection
        self._clock = clock
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[object] | None = None
        self._schema_version = 0
        self._closed = False

    @classmethod
    async def open(
        cls, path: Path, *, clock: Clock = utc_now, audit_key: bytes | None = None
    ) -> Database:
        """Open (or create) the file, refuse a newer schema, configure it and migrate it.

        `audit_key` keys the audit chain (an HMAC); without one the links are plain SHA-256,
        which detects accidents but not someone who can write the file."""
        path = Path(path)
        _create_private_file(path)
        connection = await aiosqlite.connect(path, isolation_level=None)
        try:
            connection.row_factory = aiosqlite.Row
            await connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # Checked before any setting that writes to the file (journal_mode=WAL does), so a
            # database from a newer Patchwork is left exactly as it was.
            await _refuse_newer_schema(connection, path)
            await _configure(connection)
            _restrict_sidecar_files(path)
            database = cls(path, connection, clock, audit_key)
            database._schema_version = await run_migrations(database)
        except BaseException:
            await connection.close()
            raise
        return database

    @property
    def path(self) -> Path:
        return self._path

    @property
    def schema_version(self) -> int:
        return self._schema_version

    async def close(self) -> None:
        """Wait for the running transaction, then close; safe to call twice."""
        if self._closed:
            return
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            await self._connection.close()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Transaction]:
        """A write transaction: BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if the block raises.

        IMMEDIATE takes SQLite's write lock up front, so a transaction never fails halfway
        because another writer got there first.
        """
        return self._transaction("BEGIN IMMEDIATE")

    def read(self, *, snapshot: bool = True) -> contextlib.AbstractAsyncContextManager[Transaction]:
        """A read transaction (BEGIN DEFERRED): a consistent snapshot across several queries.

        With `snapshot=False` there is no BEGIN or COMMIT (one trip to the database thread
        fewer): each statement sees the latest commit on its own, which is all a block of one
        SELECT needs. Such a block cannot write."""
        return self._transaction("BEGIN DEFERRED" if snapshot else None)

    @asynccontextmanager
    async def _transaction(self, begin: str | None) -> AsyncIterator[Transaction]:
        current = asyncio.current_task()
        if current is not None and self._owner is current:
            # Waiting for our own lock would hang forever; nested work belongs in a savepoint.
            raise RuntimeError("a transaction is already open in this task; use tx.savepoint()")
        async with self._lock:
            if self._closed:
                raise RuntimeError("the database is closed")
            self._owner = current
            tx = Transaction(self._connection, self._clock, self._audit_key, begin=begin)
            try:
                try:
                    yield tx
                except BaseException:
                    tx._finish()
                    await asyncio.shield(self._rollback())
                    raise
                tx._finish()
                if begin is None:
                    return
                try:
                    await asyncio.shield(tx._commit())
                except BaseException:
                    await asyncio.shield(self._rollback())
                    raise
            finally:
                self._owner = None

    async def _rollback(self) -> None:
        """Roll back if a transaction is open. Asked on the database thread, behind anything
        already queued there (a cancelled task's statement may still be on its way), since
        SQLite may have ended the transaction itself and one whose BEGIN was never sent has
        nothing to undo."""
        await on_database_thread(self._connection, _roll_back)


def _roll_back(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.execute("ROLLBACK")


def _create_private_file(path: Path) -> None:
    """Create the database file (and its directory) readable by the bot's user alone.

    The file is created by us, not by SQLite, so it never exists with the umask's wider mode.
    """
    path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    os.close(fd)


async def _refuse_newer_schema(connection: aiosqlite.Connection, path: Path) -> None:
    found = await read_schema_version(connection)
    if found > LATEST_VERSION:
        raise DatabaseTooNewError(path, found, LATEST_VERSION)


async def _configure(connection: aiosqlite.Connection) -> None:
    row = await (await connection.execute("PRAGMA journal_mode = WAL")).fetchone()
    if row is None or str(row[0]).lower() != "wal":
        raise RuntimeError(f"SQLite refused WAL mode (journal_mode is {row and row[0]!r})")
    await connection.execute("PRAGMA synchronous = FULL")
    await connection.execute("PRAGMA foreign_keys = ON")


def _restrict_sidecar_files(path: Path) -> None:
    """Tighten the database, WAL and shared-memory files to 0600 if anything widened them."""
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            mode = stat.S_IMODE(candidate.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode != PRIVATE_FILE_MODE:
            candidate.chmod(PRIVATE_FILE_MODE)
