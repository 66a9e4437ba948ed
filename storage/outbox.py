"""The outbox: every message and room action the bot will send, stored before the first try.

Each item carries a deterministic Matrix transaction id, so a retry after a crash or a timeout
is deduplicated by the homeserver instead of being sent twice.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from storage.codec import decode_optional_time, encode_json_object, encode_time
from storage.errors import NotFoundError
from storage.models import OutboxItem

if TYPE_CHECKING:
    from storage.transaction import AfterCommit, Transaction


def transaction_id(*parts: str) -> str:
    """A stable transaction id derived from what caused the send (e.g. an event id and an index).

    The same cause always gives the same id, so replaying an event cannot queue a second item.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]
    return f"pw{digest}"


# Items are sent in priority order, then in the order they were queued.
INTERACTIVE = 0  # replies and notices caused by what someone just did
BACKGROUND = -10  # scheduled work (prompts, reminders, lapses) that may wait behind replies

ORDERED_KINDS = ("message", "kick", "state")
"""Kinds that keep their order within a room ("goodbye" before the kick). Invites, joins and
leaves stand alone, so an invite to a server that does not answer holds nothing else back.
`due` and `next_attempt_time` spell the same list out in their SQL."""


class LeaveOut(TypedDict, total=False):
    """What `due` leaves out, the sender sending it already: the ordered items of
    `busy_rooms`, the stand-alone `busy_items`, every ordered item unless `ordered`, every
    `BACKGROUND` one unless `background` (by priority, so a backlog of thousands is not walked
    to be left out), every stand-alone one unless `standalone`."""

    busy_rooms: Collection[str]
    busy_items: Collection[int]
    ordered: bool
    background: bool
    standalone: bool


_SENT = (
    "sent_at = ?, result = ?, next_attempt_at = NULL,"
    " payload = CASE WHEN kind = 'message' THEN json_remove(payload, '$.content')"
    " ELSE payload END"
)
"""What `mark_sent` sets: the message's content goes (no copies of what the bot said)."""
_NOT_WAITING_BEHIND = (
    "(item.kind NOT IN ('message', 'kick', 'state')"
    " OR NOT EXISTS (SELECT 1 FROM outbox AS earlier"
    " WHERE earlier.room_id = item.room_id AND earlier.id < item.id"
    " AND earlier.kind IN ('message', 'kick', 'state')"
    " AND earlier.sent_at IS NULL AND earlier.failed_at IS NULL"
    " AND earlier.next_attempt_at > {until}))"
)
"""SQL: `item` is not an ordered item waiting behind an earlier one of its room that is held
past `{until}` (backing off, or held for a join): it cannot go before that one."""

_ROOM_HOLD = (
    "(SELECT MAX(held.next_attempt_at) FROM outbox AS held WHERE held.room_id = {room}"
    " AND held.sent_at IS NULL AND held.failed_at IS NULL"
    " AND held.kind IN ('message', 'kick', 'state') AND held.next_attempt_at > :now)"
)
"""SQL: the latest time an ordered item of room `{room}` is held to, if later than now (one
look-up in `outbox_room_holds`); what an item queued last in the room waits for."""

# An ordered message queued behind a held one waits with it: it takes that one's time when it
# is queued, and again whenever the one ahead is held again or let go. So the sender's walk over
# what is due never passes the thousands of welcomes queued behind one that waits for its
# recipient to join: they are held themselves, outside the index of items never held.


class OutboxRepository:
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        self.queued: list[str] = []
        """The transaction ids of the items this transaction asked to queue, in order: what
        the sender may start as soon as it commits."""

    async def enqueue_message(
        self,
        txn_id: str,
        room_id: str,
        content: Mapping[str, Any],
        *,
        event_type: str = "m.room.message",
        priority: int = INTERACTIVE,
    ) -> bool:
        """Queue a room event (encrypted on sending when the room is encrypted)."""
        return await self.enqueue(
            txn_id, room_id, "message", message_payload(content, event_type), priority=priority
        )

    def enqueue_message_later(
        self, txn_id: str, room_id: str, content: Mapping[str, Any]
    ) -> None:
        """`enqueue_message` for a caller that need not know whether it was new (a reply): the
        row goes with the transaction's next trip (`run_later`)."""
        payload = message_payload(content)
        self._tx.write_later(*self._insert(txn_id, room_id, "message", payload, INTERACTIVE))

    async def enqueue(
        self,
        txn_id: str,
        room_id: str,
        kind: str,
        payload: Mapping[str, Any],
        *,
        priority: int = INTERACTIVE,
    ) -> bool:
        """Queue an item; True if new, False if this txn_id was already queued (or sent)."""
        changed = await self._tx.execute(*self._insert(txn_id, room_id, kind, payload, priority))
        return changed > 0

    def _insert(
        self, txn_id: str, room_id: str, kind: str, payload: Mapping[str, Any], priority: int
    ) -> tuple[str, dict[str, Any]]:
        """The statement that queues an item, if its txn_id is new, held with its room."""
        if not txn_id:
            raise ValueError("an outbox item needs a transaction id")
        self.queued.append(txn_id)
        hold = _ROOM_HOLD.format(room=":room")
        return (
            "INSERT OR IGNORE INTO outbox"  # noqa: S608 - constant SQL
            " (txn_id, room_id, kind, payload, created_at, priority, next_attempt_at)"
            " VALUES (:txn_id, :room, :kind, :payload, :now, :priority,"
            f" CASE WHEN :kind IN ('message', 'kick', 'state') THEN {hold} END)",
            {
                "txn_id": txn_id,
                "room": room_id,
                "kind": kind,
                "payload": encode_json_object(payload),
                "now": encode_time(self._tx.now()),
                "priority": priority,
            },
        )

    async def enqueue_many(
        self, items: Sequence[tuple[str, str, str, Mapping[str, Any]]], *, priority: int
    ) -> None:
        """`enqueue` for a batch of (txn_id, room_id, kind, payload), one statement per chunk
        (the sweep queues thousands); a txn_id already queued is left as it was."""
        if any(not txn_id for txn_id, *_ in items):
            raise ValueError("an outbox item needs a transaction id")
        self.queued.extend(txn_id for txn_id, *_ in items)
        now = encode_time(self._tx.now())
        added = await self._tx.insert_rows(
            "INSERT OR IGNORE INTO outbox (txn_id, room_id, kind, payload, created_at, priority)",
            [
                (txn_id, room_id, kind, encode_json_object(payload), now, priority)
                for txn_id, room_id, kind, payload in items
            ],
            returning="id",
        )
        if added:  # those queued behind a held one wait with it (they are their rooms' last)
            hold = _ROOM_HOLD.format(room="item.room_id")
            await self._tx.execute(
                f"UPDATE outbox AS item SET next_attempt_at = {hold}"  # noqa: S608
                " WHERE item.id >= :first AND item.kind IN ('message', 'kick', 'state')"
                f" AND {hold} IS NOT NULL",
                {"now": now, "first": min(row["id"] for row in added)},
            )

    async def due(self, limit: int = 50, **leave_out: Unpack[LeaveOut]) -> list[OutboxItem]:
        """Pending items whose retry time has come, highest priority first, then oldest first.

        An ordered item (`ORDERED_KINDS`) waits while an older ordered item in the same room is
        still backing off, so messages and kicks in one room go out in the order they were
        queued. The sender leaves out what it is sending already (`LeaveOut`), so `limit` items
        of busy rooms never hide the items of an idle one.
        """
        rows = await self._tx.fetchall(*self._due_query(limit, leave_out))
        return [OutboxItem.from_row(row) for row in rows]

    def due_after_commit(
        self, limit: int = 50, **leave_out: Unpack[LeaveOut]
    ) -> AfterCommit[list[OutboxItem]]:
        """`due`, read in the COMMIT's trip as the commit leaves it (`read_after_commit`): the
        reply a command has just queued, for no trip of its own."""
        sql, params = self._due_query(limit, leave_out)
        return self._tx.read_after_commit(
            lambda connection: [
                OutboxItem.from_row(row) for row in connection.execute(sql, params).fetchall()
            ]
        )

    def _due_query(self, limit: int, leave_out: LeaveOut) -> tuple[str, dict[str, Any]]:
        wanted = (
            f" AND {_NOT_WAITING_BEHIND.format(until=':now')}"  # noqa: S608 - constant SQL
            " AND (CASE WHEN item.kind IN ('message', 'kick', 'state')"
            "   THEN :ordered AND item.room_id NOT IN (SELECT value FROM json_each(:busy_rooms))"
            "   ELSE :standalone AND item.id NOT IN (SELECT value FROM json_each(:busy_items))"
            "   END)"
        )
        # Items never held, walked in order (`outbox_fresh`, from the lowest priority wanted:
        # background ones left out are not walked), and the held ones whose time has come,
        # found by it (`outbox_held`), not by walking every pending one.
        return (
            "SELECT * FROM (SELECT * FROM outbox AS item"  # noqa: S608 - constant SQL
            " WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at IS NULL"
            f" AND priority >= :lowest{wanted} ORDER BY priority DESC, id LIMIT :limit)"
            " UNION ALL SELECT * FROM outbox AS item INDEXED BY outbox_held"
            " WHERE sent_at IS NULL AND failed_at IS NULL"
            " AND next_attempt_at IS NOT NULL AND next_attempt_at <= :now"
            f" AND priority >= :lowest{wanted} ORDER BY priority DESC, id LIMIT :limit",
            {
                "now": encode_time(self._tx.now()),
                "limit": limit,
                "busy_rooms": json.dumps(sorted(leave_out.get("busy_rooms", ()))),
                "busy_items": json.dumps(sorted(leave_out.get("busy_items", ()))),
                "ordered": leave_out.get("ordered", True),
                "lowest": BACKGROUND if leave_out.get("background", True) else INTERACTIVE,
                "standalone": leave_out.get("standalone", True),
            },
        )

    async def get(self, txn_id: str) -> OutboxItem | None:
        row = await self._tx.fetchone("SELECT * FROM outbox WHERE txn_id = ?", (txn_id,))
        return None if row is None else OutboxItem.from_row(row)

    async def for_user(self, room_id: str, kind: str, user_id: str) -> list[OutboxItem]:
        """Every item of one kind aimed at one user in a room (invites, kicks), oldest first.

        Lets a caller that has no event id to derive a transaction id from (start-up
        reconciliation) see whether the same action is already queued.
        """
        rows = await self._tx.fetchall(
            "SELECT * FROM outbox WHERE room_id = ? AND kind = ?"
            " AND json_extract(payload, '$.user_id') = ? ORDER BY id",
            (room_id, kind, user_id),
        )
        return [OutboxItem.from_row(row) for row in rows]

    async def for_room(self, room_id: str, kinds: tuple[str, ...]) -> list[OutboxItem]:
        """Every item of these kinds for a room (the bot's own joins and leaves), oldest first."""
        rows = await self._tx.fetchall_in(
            "SELECT * FROM outbox WHERE room_id = ? AND kind IN ({in_list}) ORDER BY id",
            kinds,
            (room_id,),
        )
        return sorted((OutboxItem.from_row(row) for row in rows), key=lambda item: item.id)

    async def mark_sent(self, item_id: int, result: str | None) -> None:
        """Record success; `result` is what the homeserver returned (an event id, say).

        A sent message's content is cleared: the bot keeps no copies of what it said (a
        `!whois` card holds contact details). What idempotency needs stays: the transaction id,
        the room, the kind, and the payload's other keys.
        """
        await self._update(item_id, _SENT, (encode_time(self._tx.now()), result))

    def mark_sent_later(self, item_id: int, result: str | None) -> None:
        """`mark_sent` with the transaction's next trip (the sender's COMMIT, say). An item
        that is not there fails that trip, and the transaction cannot commit."""
        params = (encode_time(self._tx.now()), result, item_id)

        def work(connection: sqlite3.Connection) -> None:
            sql = f"UPDATE outbox SET {_SENT} WHERE id = ?"  # noqa: S608 - constant SQL
            if connection.execute(sql, params).rowcount == 0:
                raise NotFoundError(f"no outbox item with id {item_id}")

        self._tx.run_later(work)

    async def mark_attempt(self, item_id: int) -> None:
        """Record that an attempt is about to be made, before a request that has no
        transaction id (createRoom), so a crash during it is known after a restart."""
        await self._update(item_id, "attempts = attempts + 1", ())

    async def mark_retry(
        self, item_id: int, error: str, next_attempt_at: datetime, *, counted: bool = True
    ) -> None:
        """Hold the item back until `next_attempt_at`, counting the attempt unless `counted`
        is False (it was counted already, or the homeserver itself could not be reached)."""
        until = encode_time(next_attempt_at)
        await self._update(
            item_id,
            "attempts = attempts + ?, last_error = ?, next_attempt_at = ?",
            (int(counted), error, until),
        )
        # The ordered items behind it in its room wait as long, or go with it if it is let go
        # early (a join): a room's later items are never tried before it, so their own time
        # is only ever one taken from an item ahead.
        await self._tx.execute(
            "UPDATE outbox AS later SET next_attempt_at = :until"
            " WHERE later.room_id = (SELECT room_id FROM outbox WHERE id = :id"
            " AND kind IN ('message', 'kick', 'state')) AND later.id > :id"
            " AND later.kind IN ('message', 'kick', 'state')"
            " AND later.sent_at IS NULL AND later.failed_at IS NULL"
            " AND later.next_attempt_at IS NOT :until",
            {"id": item_id, "until": until},
        )

    async def mark_failed(self, item_id: int, error: str) -> None:
        """Give up on the item: count the attempt and take it out of the queue for good."""
        await self._update(
            item_id,
            "attempts = attempts + 1, last_error = ?, failed_at = ?, next_attempt_at = NULL,"
            " payload = CASE WHEN kind = 'message' THEN json_remove(payload, '$.content')"
            " ELSE payload END",
            (error, encode_time(self._tx.now())),
        )

    async def prune(self, before: datetime) -> int:
        """Forget items sent or failed before `before`; returns how many."""
        return await self._tx.execute(
            "DELETE FROM outbox WHERE sent_at < :before OR failed_at < :before",
            {"before": encode_time(before)},
        )

    async def set_content(self, item_id: int, content: Mapping[str, Any]) -> None:
        """Rewrite a pending message before it is sent (a card that changed meanwhile)."""
        await self._tx.execute(
            "UPDATE outbox SET payload = json_set(payload, '$.content', json(?))"
            " WHERE id = ? AND sent_at IS NULL AND failed_at IS NULL",
            (encode_json_object(content), item_id),
        )

    async def add_to_list(self, item_id: int, key: str, value: Mapping[str, Any]) -> None:
        """Append `value` to the list under `key` in a pending item's payload (a message
        that waits, with others, for a direct chat being opened)."""
        await self._update(
            item_id, "payload = json_insert(payload, '$.' || ? || '[#]', json(?))",
            (key, encode_json_object(value)),
        )

    async def forget_room(self, room_id: str) -> int:
        """Drop every item for a room the bot is leaving for good, sent or not."""
        return await self._tx.execute("DELETE FROM outbox WHERE room_id = ?", (room_id,))

    async def pending_count(self) -> int:
        row = await self._tx.fetchone(
            "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL"
        )
        return 0 if row is None else int(row[0])

    async def next_attempt_time(self) -> datetime | None:
        """When the earliest pending item becomes due (None if nothing is pending).

        An item that was never retried counts as due from the moment it was queued, so the
        sender can sleep until this time without missing fresh items. An item waiting behind an
        earlier one of its room does not count (the earlier one's time does): otherwise the
        messages queued behind one held for someone's join would look due all the time, and
        the sender would ask again and again, finding nothing to send.
        """
        # One held past both now and this item's own time counts instead; an item that waits
        # with the one ahead has that one's time already, so the walk stops at the first.
        until = "MAX(:now, COALESCE(item.next_attempt_at, item.created_at))"
        row = await self._tx.fetchone(
            "SELECT COALESCE(next_attempt_at, created_at) FROM outbox AS item"  # noqa: S608
            " WHERE sent_at IS NULL AND failed_at IS NULL"
            f" AND {_NOT_WAITING_BEHIND.format(until=until)}"
            " ORDER BY COALESCE(next_attempt_at, created_at) LIMIT 1",
            {"now": encode_time(self._tx.now())},
        )
        return None if row is None else decode_optional_time(row[0])

    async def _update(self, item_id: int, assignments: str, params: tuple[Any, ...]) -> None:
        """`assignments` is constant SQL from this module; every value is a bound parameter."""
        changed = await self._tx.execute(
            f"UPDATE outbox SET {assignments} WHERE id = ?",  # noqa: S608
            (*params, item_id),
        )
        if changed == 0:
            raise NotFoundError(f"no outbox item with id {item_id}")


def message_payload(
    content: Mapping[str, Any], event_type: str = "m.room.message"
) -> dict[str, Any]:
    """A message item's payload: the room event to send."""
    return {"type": event_type, "content": dict(content)}
