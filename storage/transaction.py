"""One open SQLite transaction and the repositories that work inside it.

Repositories are built per transaction and only ever see this object, so nothing can write
outside a transaction, and everything done through one `Transaction` commits or rolls back
together (an event's effects, its inbox row and the sync token, for example).

Every trip to aiosqlite's thread costs more than most statements do in SQLite (about 100 µs
on a quiet 2-core machine, several times that beside a busy homeserver, against a few µs), so
a transaction saves the trips it can without changing what runs or in what order: BEGIN goes
with the first statement, a savepoint is opened with the first write inside it, a write whose
result nobody needs (`write_later`, `run_later`) goes with the next statement or the COMMIT,
reads wanted together go in one trip (`run_read`), and a transaction that ran nothing sends
nothing at all. It also counts its writes (`writes`), so repositories may keep what they read
until the next write.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Generic, TypeVar

import aiosqlite

from storage.audit import AuditRepository
from storage.codec import Clock
from storage.families import FamilyRepository
from storage.involvements import InvolvementRepository
from storage.outbox import OutboxRepository
from storage.practitioners import PractitionerRepository
from storage.prompts import PromptRepository
from storage.sync_state import SyncStateRepository
from storage.views import FamilyViewRepository

Params = Sequence[Any] | Mapping[str, Any]
Work = Callable[[sqlite3.Connection], object]

IN_LIST_CHUNK = 500
"""Values per `IN (...)` list, well under SQLite's limit on bound parameters."""
ROWS_PARAMETERS = 4000
"""Bound parameters per multi-row INSERT (`insert_rows`), well under SQLite's limit."""

T = TypeVar("T")

log = logging.getLogger(__name__)


class AfterCommit(Generic[T]):
    """What a read asked for with the COMMIT (`Transaction.read_after_commit`) returned."""

    def __init__(self) -> None:
        self.value: T | None = None
        """None until the transaction has committed, and for good if it rolled back, had
        nothing to commit, or the read failed."""


async def on_database_thread(
    connection: aiosqlite.Connection, work: Callable[[sqlite3.Connection], T]
) -> T:
    """Run `work` on aiosqlite's thread with its sqlite3 connection: several statements for
    the price of one trip. aiosqlite has no public call for this; `_execute` is the one every
    public method of it goes through (the version is pinned in pyproject.toml)."""
    return await connection._execute(lambda: work(connection._conn))  # noqa: SLF001


class Transaction:
    """Statements and repositories bound to one BEGIN ... COMMIT on the shared connection."""

    def __init__(
        self,
        connection: aiosqlite.Connection,
        clock: Clock,
        audit_key: bytes | None = None,
        *,
        begin: str | None = None,
    ) -> None:
        """`begin` ("BEGIN IMMEDIATE", say) is sent with the first statement; without one
        this is a plain read: each statement on its own, and no writes."""
        self._connection = connection
        self._clock = clock
        self._finished = False
        self._writable = begin is not None
        self._begin = begin  # until it has been sent
        self._savepoints = 0
        self._pending: list[str] = []  # savepoints entered that no write has needed yet
        self._opened: set[str] = set()  # savepoints SQLite has run
        # Work for the next trip: its place in the order asked for, the savepoints entered
        # when it was asked for, and the work itself.
        self._later: list[tuple[int, tuple[str, ...], Work]] = []
        self._asked = 0
        self._failed: BaseException | None = None  # a later write that failed
        self._after: list[tuple[Callable[[sqlite3.Connection], Any], AfterCommit[Any]]] = []
        self.writes = 0
        """Statements other than SELECT run so far (rollbacks to a savepoint included)."""
        self.sync = SyncStateRepository(self)
        self.outbox = OutboxRepository(self)
        self.audit = AuditRepository(self, audit_key)
        self.practitioners = PractitionerRepository(self)
        self.families = FamilyRepository(self)
        self.involvements = InvolvementRepository(self)
        self.prompts = PromptRepository(self)
        self.views = FamilyViewRepository(self)

    def now(self) -> datetime:
        """The injected clock, checked to be aware so stored times are never ambiguous."""
        value = self._clock()
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("the clock returned a naive datetime; it must return aware UTC time")
        return value

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        rowcount, _ = await self._trip(sql, params, fetch=False)
        return int(rowcount)

    async def insert(self, sql: str, params: Params = ()) -> int | None:
        """Run an INSERT; returns the new rowid, or None if nothing was inserted (OR IGNORE)."""
        rowcount, rowid = await self._trip(sql, params, fetch=False)
        return None if rowcount < 1 else rowid

    def write_later(self, sql: str, params: Params = ()) -> None:
        """`run_later` for one statement."""
        self.run_later(lambda connection: connection.execute(sql, params))

    def run_later(self, work: Work) -> None:
        """Writes whose result nobody needs (the sync token, an audit row, a reply queued):
        `work` runs on the database thread ahead of the transaction's next statement, or with
        its COMMIT, in that trip, so it costs no trip of its own. Everything still runs in the
        order it was asked for, and what the block reads afterwards sees it. If the block
        fails it is never run; if a savepoint it was asked for in fails, it is dropped with the
        savepoint's other writes. If it fails itself, the error is raised where that trip was
        awaited, and the transaction cannot go on: whatever catches that error, the rest of
        the block fails and the transaction rolls back whole."""
        self._check_open()
        self._count_write()
        self._asked += 1
        self._later.append((self._asked, tuple(self._pending), work))

    async def fetchall_in(
        self, sql: str, values: Iterable[Any], leading: Sequence[Any] = ()
    ) -> list[aiosqlite.Row]:
        """Rows for `sql` whose `{in_list}` is filled with `values`, in chunks (duplicates and
        order dropped); `leading` are parameters that come before the list."""
        rows: list[aiosqlite.Row] = []
        for chunk, statement in _in_list_chunks(sql, values):
            rows.extend(await self.fetchall(statement, (*leading, *chunk)))
        return rows

    async def execute_in(
        self, sql: str, values: Iterable[Any], leading: Sequence[Any] = ()
    ) -> int:
        """Run `sql` for every chunk of `values` filling its `{in_list}`; rows changed."""
        changed = 0
        for chunk, statement in _in_list_chunks(sql, values):
            changed += await self.execute(statement, (*leading, *chunk))
        return changed

    async def insert_rows(
        self, sql: str, rows: Sequence[Sequence[Any]], returning: str = ""
    ) -> list[aiosqlite.Row]:
        """One multi-row `INSERT ... VALUES (...), (...)` per chunk of `rows`, in their order
        (so rowids ascend with it): a batch costs one trip to the database thread, not one per
        row. `sql` is the statement up to VALUES; `returning` (say "id") gives the rows of a
        RETURNING clause, which for INSERT OR IGNORE are only those inserted."""
        if not rows:
            return []
        width = len(rows[0])
        group = "(" + ", ".join("?" * width) + ")"
        step = max(1, ROWS_PARAMETERS // width)
        suffix = f" RETURNING {returning}" if returning else ""
        returned: list[aiosqlite.Row] = []
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            statement = f"{sql} VALUES {', '.join([group] * len(chunk))}{suffix}"
            params = [value for row in chunk for value in row]
            if returning:
                returned.extend(await self.fetchall(statement, params))
            else:
                await self.execute(statement, params)
        return returned

    async def fetchone(self, sql: str, params: Params = ()) -> aiosqlite.Row | None:
        # Callers ask for at most one row by id or unique key, so reading them all costs
        # nothing, and the cursor is closed in the same trip.
        rows = await self._trip(sql, params, fetch=True)
        return next(iter(rows), None)

    async def fetchall(self, sql: str, params: Params = ()) -> list[aiosqlite.Row]:
        return list(await self._trip(sql, params, fetch=True))

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested atomic block: on error only its own writes are undone, then it re-raises.

        The SAVEPOINT is sent with the block's first write, so a block that only reads costs
        nothing. One that succeeds is not RELEASEd: its writes belong to the enclosing
        transaction either way, and COMMIT (or ROLLBACK) ends every savepoint."""
        self._check_open()
        self._savepoints += 1
        name = f"sp_{self._savepoints}"
        self._pending.append(name)
        asked = self._asked
        try:
            yield
        except BaseException:
            self._later = [item for item in self._later if item[0] <= asked]
            if name in self._pending:
                self._pending.remove(name)  # it wrote nothing: nothing to undo
            else:
                self.writes += 1  # what was read since may have been undone
                await on_database_thread(self._connection, _undo_to(name, self._opened))
            raise
        if name in self._pending:
            self._pending.remove(name)

    async def _trip(self, sql: str, params: Params, *, fetch: bool) -> Any:
        """One statement, after whatever must run first (BEGIN, the work asked for later,
        the savepoints a write needs), in one trip: the rows it read, or its rowcount and
        lastrowid."""
        self._check_open()
        write = sql.lstrip()[:6].upper() != "SELECT"
        if write:
            self._count_write()

        def statement(connection: sqlite3.Connection) -> Any:
            cursor = connection.execute(sql, params)
            try:
                return cursor.fetchall() if fetch else (cursor.rowcount, cursor.lastrowid)
            finally:
                cursor.close()

        return await self._send(statement, write=write)

    def read_after_commit(self, work: Callable[[sqlite3.Connection], T]) -> AfterCommit[T]:
        """`work` that only reads, run on the database thread just after the COMMIT, in its
        trip: what the committed state holds (the replies now due, say) for no trip of its own.
        Its result is the returned object's `value` once the transaction has committed. A read
        that fails is logged and leaves `value` None: the commit stands all the same."""
        self._check_open()
        result: AfterCommit[T] = AfterCommit()
        self._after.append((work, result))
        return result

    async def _commit(self) -> None:
        """COMMIT, with the work asked for later before it and the reads asked for after it,
        in one trip; nothing if nothing ran."""
        if self._failed is not None:
            raise RuntimeError("a write of this transaction failed; it cannot commit")
        if self._begin is not None and not self._later:
            return
        after = self._after

        def commit(connection: sqlite3.Connection) -> None:
            connection.execute("COMMIT")
            for read, result in after:
                try:
                    result.value = read(connection)
                except Exception:
                    log.exception("a read after the commit failed; the commit stands")

        await self._send(commit, write=False)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` on the database thread, as a write, in one trip: several statements that
        need each other's results (read the audit chain's end, then link and write a row)."""
        self._check_open()
        self._count_write()
        return await self._send(work, write=True)

    async def run_read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` that only reads, on the database thread in one trip: SELECTs whose results
        are wanted together (a team and its people)."""
        self._check_open()
        return await self._send(work, write=False)

    async def _send(self, work: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """`work` in one trip, behind BEGIN if it has not been sent, the work asked for later
        (with the savepoints it was asked for in) and, for a write, the savepoints still
        waiting for one."""
        begin, self._begin = self._begin, None
        later: list[tuple[list[str], Work]] = [
            (self._take_pending(entered), job) for _, entered, job in self._later
        ]
        self._later = []
        savepoints = self._take_pending(self._pending) if write else []
        opened = self._opened

        def open_savepoints(connection: sqlite3.Connection, names: list[str]) -> None:
            for name in names:
                connection.execute(f"SAVEPOINT {name}")
                opened.add(name)

        def trip(connection: sqlite3.Connection) -> T:
            if begin is not None:
                connection.execute(begin)
            for names, job in later:
                try:
                    open_savepoints(connection, names)
                    job(connection)
                except Exception as error:
                    raise _LaterFailed from error
            open_savepoints(connection, savepoints)
            return work(connection)

        try:
            return await on_database_thread(self._connection, trip)
        except _LaterFailed as failed:
            self._failed = error = failed.__cause__ or failed
            raise error from None

    def _take_pending(self, names: Iterable[str]) -> list[str]:
        """Of `names`, the savepoints not yet opened, now to be opened, in their order."""
        taken = [name for name in names if name in self._pending]
        self._pending = [name for name in self._pending if name not in taken]
        return taken

    def _finish(self) -> None:
        self._finished = True

    def _count_write(self) -> None:
        if not self._writable:
            raise RuntimeError("this is a plain read: it cannot write; open a transaction")
        self.writes += 1

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError("this transaction has already ended; open a new one")
        if self._failed is not None:
            raise RuntimeError("a write of this transaction failed; it can only roll back")


class _LaterFailed(Exception):
    """Work asked for later failed (its error is the cause), not the statement it went with."""


def _undo_to(name: str, opened: set[str]) -> Callable[[sqlite3.Connection], None]:
    """ROLLBACK TO and RELEASE in one trip, if SQLite did open the savepoint (checked on the
    database thread, behind the trip that was to open it)."""

    def work(connection: sqlite3.Connection) -> None:
        if name in opened:
            opened.discard(name)
            connection.execute(f"ROLLBACK TO {name}")
            connection.execute(f"RELEASE {name}")

    return work


def _in_list_chunks(sql: str, values: Iterable[Any]) -> Iterable[tuple[list[Any], str]]:
    wanted = sorted(set(values))
    for start in range(0, len(wanted), IN_LIST_CHUNK):
        chunk = wanted[start : start + IN_LIST_CHUNK]
        yield chunk, sql.format(in_list=", ".join("?" * len(chunk)))
