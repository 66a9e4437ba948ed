"""Where the sync loop keeps its place: the next_batch token, processed event ids (the inbox),
events waiting for a room key, and per-room "already said that" flags.

All of it is written in the same transaction as the effects of the events concerned, which is
what makes handling exactly-once across crashes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from storage.codec import encode_json_object, encode_time
from storage.models import UndecryptedEvent

if TYPE_CHECKING:
    from storage.transaction import Transaction

NEXT_BATCH_KEY = "next_batch"


class SyncStateRepository:
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        self._next_batch: str | None = None  # set in this transaction, written as it commits

    async def get_next_batch(self) -> str | None:
        if self._next_batch is not None:
            return self._next_batch
        row = await self._tx.fetchone(
            "SELECT value FROM sync_state WHERE key = ?", (NEXT_BATCH_KEY,)
        )
        return None if row is None else str(row["value"])

    async def set_next_batch(self, token: str) -> None:
        """Written with the COMMIT, in its trip: the token is the last thing a response's
        transaction writes, and nothing reads it back first but `get_next_batch`."""
        if not token:
            raise ValueError("a sync token cannot be empty")
        self._tx.write_later(
            "INSERT OR REPLACE INTO sync_state (key, value) VALUES (?, ?)",
            (NEXT_BATCH_KEY, token),
        )
        self._next_batch = token

    async def is_processed(self, event_id: str) -> bool:
        row = await self._tx.fetchone("SELECT 1 FROM inbox WHERE event_id = ?", (event_id,))
        return row is not None

    async def is_new(self, event_id: str, room_id: str, *, people: bool = False) -> bool:
        """Whether the event was never handled, read in one trip with its room's family and
        the family's team (handling almost any event in a family room reads those first: a
        command its sender's row, a membership change the member's), with the active members'
        practitioner rows too if `people` (a command that shows them, `!whois`). A new one is
        then recorded with `mark_processed_later`, in the same write transaction."""

        def seen(connection: sqlite3.Connection) -> bool:
            sql = "SELECT 1 FROM inbox WHERE event_id = ?"
            return bool(connection.execute(sql, (event_id,)).fetchall())

        return not await self._tx.involvements.with_room_team(room_id, seen, people=people)

    def mark_processed_later(self, event_id: str, room_id: str) -> None:
        """Record an event `is_new` found new as handled, with the COMMIT. Nothing can record
        it in between: a write transaction holds SQLite's write lock from its first
        statement, the one that asked."""
        self._tx.write_later(
            "INSERT OR IGNORE INTO inbox (event_id, room_id, processed_at) VALUES (?, ?, ?)",
            (event_id, room_id, encode_time(self._tx.now())),
        )

    async def mark_processed(self, event_id: str, room_id: str) -> bool:
        """Record the event as handled; True the first time, False if it already was."""
        changed = await self._tx.execute(
            "INSERT OR IGNORE INTO inbox (event_id, room_id, processed_at) VALUES (?, ?, ?)",
            (event_id, room_id, encode_time(self._tx.now())),
        )
        return changed > 0

    async def mark_all_processed(self, events: Sequence[tuple[str, str]]) -> None:
        """Record many (event id, room id) pairs as handled, in one statement per chunk."""
        now = encode_time(self._tx.now())
        await self._tx.insert_rows(
            "INSERT OR IGNORE INTO inbox (event_id, room_id, processed_at)",
            [(event_id, room_id, now) for event_id, room_id in events],
        )

    async def prune_inbox(self, before: datetime) -> int:
        """Forget events processed before `before`; returns how many."""
        return await self._tx.execute(
            "DELETE FROM inbox WHERE processed_at < ?", (encode_time(before),)
        )

    async def has_flag(self, room_id: str, flag: str) -> bool:
        row = await self._tx.fetchone(
            "SELECT 1 FROM room_flag WHERE room_id = ? AND flag = ?", (room_id, flag)
        )
        return row is not None

    async def set_flag(self, room_id: str, flag: str) -> bool:
        """True if the flag is new, so the caller says its one-time message exactly once."""
        changed = await self._tx.execute(
            "INSERT OR IGNORE INTO room_flag (room_id, flag, set_at) VALUES (?, ?, ?)",
            (room_id, flag, encode_time(self._tx.now())),
        )
        return changed > 0

    async def add_undecrypted(
        self,
        event_id: str,
        room_id: str,
        sender: str,
        session_id: str,
        event_json: Mapping[str, Any],
    ) -> bool:
        """Keep an event we cannot decrypt yet; True if it was not already waiting."""
        changed = await self._tx.execute(
            "INSERT OR IGNORE INTO undecrypted"
            " (event_id, room_id, sender, session_id, event_json, first_seen_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                event_id,
                room_id,
                sender,
                session_id,
                encode_json_object(event_json),
                encode_time(self._tx.now()),
            ),
        )
        return changed > 0

    async def undecrypted(self, session_id: str | None = None) -> list[UndecryptedEvent]:
        """Waiting events, oldest first; only those of one megolm session if given."""
        if session_id is None:
            rows = await self._tx.fetchall(
                "SELECT * FROM undecrypted ORDER BY first_seen_at, rowid"
            )
        else:
            rows = await self._tx.fetchall(
                "SELECT * FROM undecrypted WHERE session_id = ? ORDER BY first_seen_at, rowid",
                (session_id,),
            )
        return [UndecryptedEvent.from_row(row) for row in rows]

    async def remove_undecrypted(self, event_id: str) -> bool:
        changed = await self._tx.execute("DELETE FROM undecrypted WHERE event_id = ?", (event_id,))
        return changed > 0

    async def mark_undecrypted_notified(self, event_id: str) -> bool:
        """Note that the sender was told; True only the first time, so they are told once."""
        changed = await self._tx.execute(
            "UPDATE undecrypted SET notified_at = ? WHERE event_id = ? AND notified_at IS NULL",
            (encode_time(self._tx.now()), event_id),
        )
        return changed > 0

    async def forget_room(self, room_id: str) -> None:
        """Drop everything kept about a room the bot is leaving for good."""
        for table in ("inbox", "room_flag", "undecrypted"):
            await self._tx.execute(
                f"DELETE FROM {table} WHERE room_id = ?",  # noqa: S608 - constant names
                (room_id,),
            )
