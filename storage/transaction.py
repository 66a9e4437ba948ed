"""One open SQLite transaction and the repositories that work inside it.

Repositories are built per transaction and only ever see this object, so nothing can write
outside a transaction, and everything done through one `Transaction` commits or rolls back
together (an event's effects, its inbox row and the sync token, for example).

Every statement is a trip to aiosqlite's thread (~0.1 ms on a busy loop), so a transaction
counts its writes (`writes`): repositories may keep what they read until the next write, and a
savepoint is opened only when the first write inside it comes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

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

IN_LIST_CHUNK = 500
"""Values per `IN (...)` list, well under SQLite's limit on bound parameters."""
ROWS_PARAMETERS = 4000
"""Bound parameters per multi-row INSERT (`insert_rows`), well under SQLite's limit."""


class Transaction:
    """Statements and repositories bound to one BEGIN ... COMMIT on the shared connection."""

    def __init__(
        self,
        connection: aiosqlite.Connection,
        clock: Clock,
        audit_key: bytes | None = None,
        *,
        writable: bool = True,
    ) -> None:
        self._connection = connection
        self._clock = clock
        self._finished = False
        self._writable = writable
        self._savepoints = 0
        self._pending: list[str] = []  # savepoints entered that no write has needed yet
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
        await self._before(sql)
        cursor = await self._connection.execute(sql, params)
        return cursor.rowcount

    async def insert(self, sql: str, params: Params = ()) -> int | None:
        """Run an INSERT; returns the new rowid, or None if nothing was inserted (OR IGNORE)."""
        await self._before(sql)
        cursor = await self._connection.execute(sql, params)
        if cursor.rowcount < 1:
            return None
        return cursor.lastrowid

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
        await self._before(sql)
        # One trip to the database thread instead of three (execute, fetch, close); callers
        # ask for at most one row by id or unique key, so reading them all costs nothing.
        rows = await self._connection.execute_fetchall(sql, params)
        return next(iter(rows), None)

    async def fetchall(self, sql: str, params: Params = ()) -> list[aiosqlite.Row]:
        await self._before(sql)
        return list(await self._connection.execute_fetchall(sql, params))

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested atomic block: on error only its own writes are undone, then it re-raises.

        The SAVEPOINT is issued just before the block's first write, so a block that only
        reads costs no statement. One that succeeds is not RELEASEd: its writes belong to the
        enclosing transaction either way, and COMMIT (or ROLLBACK) ends every savepoint."""
        self._check_open()
        self._savepoints += 1
        name = f"sp_{self._savepoints}"
        self._pending.append(name)
        try:
            yield
        except BaseException:
            if name in self._pending:
                self._pending.remove(name)  # it wrote nothing: nothing to undo
            else:
                self.writes += 1  # what was read since may have been undone
                await self._connection.execute(f"ROLLBACK TO {name}")
                await self._connection.execute(f"RELEASE {name}")
            raise
        if name in self._pending:
            self._pending.remove(name)

    async def _before(self, sql: str) -> None:
        """Before each statement: a write needs the open savepoints and is counted."""
        self._check_open()
        if sql.lstrip()[:6].upper() == "SELECT":
            return
        if not self._writable:
            raise RuntimeError("this is a plain read: it cannot write; open a transaction")
        self.writes += 1
        while self._pending:
            await self._connection.execute(f"SAVEPOINT {self._pending.pop(0)}")

    def _finish(self) -> None:
        self._finished = True

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError("this transaction has already ended; open a new one")


def _in_list_chunks(sql: str, values: Iterable[Any]) -> Iterable[tuple[list[Any], str]]:
    wanted = sorted(set(values))
    for start in range(0, len(wanted), IN_LIST_CHUNK):
        chunk = wanted[start : start + IN_LIST_CHUNK]
        yield chunk, sql.format(in_list=", ".join("?" * len(chunk)))
