"""Sends what the bot has decided to say or do, exactly once, from the outbox table.

Every item was written with a deterministic transaction id in the same database transaction
as the event that caused it. Synapse deduplicates a transaction id per device, so a retry after
a crash (sent, but not yet marked as sent) cannot produce a second message.

Every item ends sent or failed in a bounded time: an answer that retrying cannot change fails
at once, any other error is retried with back-off up to `MAX_ATTEMPTS` times (about nine
minutes), and only a homeserver that cannot be reached at all (an outage, which the sync loop
waits out too) is retried without counting. A failed item goes to the `on_failed` hook, which
tells the person who asked. Within a room, messages, kicks and state keep their order: when one
cannot be sent, the room's later ones wait for it.

Rooms are sent concurrently, each in a lane of its own (at most `MAX_LANES` at once), and every
invite, join and leave has a lane of its own too, from a separate pool of `MAX_LANES`: an invite
to a homeserver that does not answer (each try can take seconds) holds back neither its room's
replies nor any other room. A pass reads only what a free lane could take (never the items of a
lane already running), and none runs while both pools are full. A transaction that queues a
reply can hand it over (`hand_over`, then `take`): what is due is read in its COMMIT's trip and
its lane starts at once, with no wake and no pass in between. Background sends wait while
answers are on their way (`bot.foreground`). The requests themselves are made by
`bot.outbox_actions`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
from nio import AsyncClient, ErrorResponse, RoomCreateResponse

from bot.backoff import Backoff
from bot.faults import CREATE_ROOM_RETURNED, NO_FAULTS, SEND_ACCEPTED, Faults
from bot.foreground import Foreground
from bot.lanes import Lanes
from bot.metrics import Metrics
from bot.outbox_actions import (
    NOT_IN_ROOM,
    NOTHING_TO_SAY,
    AttachmentHook,
    ContentHook,
    Performer,
    kick_found_nobody,
)
from rooms.actions import ANNOUNCE_KEY
from storage import (
    INTERACTIVE,
    ORDERED_KINDS,
    AfterCommit,
    Database,
    LeaveOut,
    OutboxItem,
    Transaction,
    transaction_id,
)

log = logging.getLogger(__name__)

# Answers that retrying will never change: the item fails at once.
PERMANENT_ERRORS = {
    "M_FORBIDDEN", "M_NOT_FOUND", "M_BAD_JSON", "M_NOT_JSON", "M_TOO_LARGE", "M_INVALID_PARAM",
    "M_UNSUPPORTED_ROOM_VERSION", "M_USER_DEACTIVATED", "M_ROOM_IN_USE", "M_INVALID_ROOM_STATE",
}
MAX_ATTEMPTS = 8
MAX_RETRY_DELAY = timedelta(minutes=5)
UNREACHABLE = (OSError, TimeoutError, aiohttp.ClientError)
"""The homeserver itself did not answer: an outage, retried without counting."""
IDLE_POLL_SECONDS = 30.0
BUSY_POLL_SECONDS = 1.0
"""While lanes are busy, how often items that came due in the meantime are looked for."""
MAX_LANES = 4
"""At most this many rooms, and this many stand-alone invites, joins and leaves, at once."""
BACKGROUND_LANES = 1
"""Background work (prompts, reminders, start-up work) starts a room's lane only while fewer
than this many room lanes are busy: a sweep's thousands of prompts go one room at a time, so
an answer neither waits for a lane nor queues at the homeserver behind a burst of them."""
PASS_ROWS_PER_LANE = 8
"""A pass reads at most this many items for each free lane (and never more than 50): reading
fifty items to start the one lane that has just ended is work thrown away. A room with more
sends the rest in its next turn."""
STOP_GRACE_SECONDS = 5.0
ALONE = "item:"

# Called in the same transaction that marks a create_room item sent: (tx, item, new room id).
RoomCreatedHook = Callable[[Transaction, OutboxItem, str], Awaitable[None]]
# Called in the same transaction that marks any other item sent: (tx, item, its event id if
# the homeserver returned one). What it writes commits with the "sent" mark, so a crash in
# between replays both together (the homeserver deduplicates the resend).
SentHook = Callable[[Transaction, OutboxItem, str | None], Awaitable[None]]
# Called in the transaction that marks an item failed for good: (tx, item, why).
FailedHook = Callable[[Transaction, OutboxItem, str], Awaitable[None]]
# When an item may not go yet (a question outside working hours): (item, now) -> (go at, why).
HoldHook = Callable[[OutboxItem, datetime], tuple[datetime, str] | None]


@dataclass(frozen=True)
class Handover:
    """What a transaction queued (`queued`, its transaction ids) and what was due when it
    committed (`due`, read in the COMMIT's trip, if it was read), for `OutboxSender.take`."""

    queued: tuple[str, ...]
    due: AfterCommit[list[OutboxItem]] | None
    now: datetime


class OutboxSender:
    """Drains the outbox in order. After committing new items, `take` what `hand_over` read
    in that transaction, or `wake()`, for an immediate send."""

    def __init__(
        self,
        db: Database,
        client: AsyncClient,
        *,
        on_room_created: RoomCreatedHook | None = None,
        on_sent: SentHook | None = None,
        on_failed: FailedHook | None = None,
        hold_until: HoldHook | None = None,
        attachment: AttachmentHook | None = None,
        content: ContentHook | None = None,
        faults: Faults = NO_FAULTS,
        metrics: Metrics | None = None,
        foreground: Foreground | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._foreground = foreground or Foreground()
        self._held = 0.0
        """Set by a pass that left background sends out for answers: how long until it may
        ask again."""
        self._db = db
        self._on_room_created = on_room_created
        self._on_sent = on_sent
        self._on_failed = on_failed
        self._hold_until = hold_until
        self._performer = Performer(client, attachment=attachment, content=content)
        self._faults = faults
        self._wake = asyncio.Event()
        self._stop: asyncio.Event | None = None  # while `run` runs
        self._backoff = Backoff(initial=1.0, maximum=60.0)
        self._rooms = Lanes(MAX_LANES, self._wake.set)
        self._alone = Lanes(MAX_LANES, self._wake.set)
        """Invites, joins and leaves wait on other homeservers; rooms never wait for them."""

    def wake(self) -> None:
        self._wake.set()

    def hand_over(self, tx: Transaction) -> Handover:
        """Last in a transaction: what it queued, and (unless nothing can start: the sender
        not running, every lane busy) what is due, read in its COMMIT's trip, for `take`."""
        queued = tuple(tx.outbox.queued)
        due = None
        if queued and self._stop is not None and self._rooms.free + self._alone.free:
            due = tx.outbox.due_after_commit(
                self._pass_rows(), **self._leave_out(background=False)
            )
        return Handover(queued, due, tx.now())

    def take(self, handover: Handover) -> None:
        """Start the lanes of what `hand_over` read, right after its transaction has ended,
        with no await in between: the database was the transaction's until then, so no pass
        can have read those items and started them meanwhile. Wakes the sender for whatever
        the transaction queued that does not start here (its room's lane is busy, say)."""
        if not handover.queued:
            return
        items = None if handover.due is None else handover.due.value
        if items is None or self._stop is None or self._stop.is_set():
            self.wake()
            return
        started = self._start_lanes(items, handover.now, self._stop)
        going = {item.txn_id for queued in started.values() for item in queued}
        if not going.issuperset(handover.queued):
            self.wake()

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        try:
            while not stop.is_set():
                self._wake.clear()
                for lanes in (self._rooms, self._alone):
                    if lanes.crash is not None:
                        raise lanes.crash
                if self._rooms.full and self._alone.full:
                    await self._wait_for_work(stop, lane_end=True)
                    continue
                try:
                    items, now = await self._due(self._pass_rows())
                    self._start_lanes(items, now, stop)
                except Exception:
                    log.exception("outbox pass failed; retrying")
                    await self._backoff.wait(stop)
                    continue
                await self._wait_for_work(stop)
        finally:
            self._stop = None
            await self._rooms.finish(STOP_GRACE_SECONDS)
            await self._alone.finish(STOP_GRACE_SECONDS)

    def _pass_rows(self) -> int:
        return min(50, PASS_ROWS_PER_LANE * (self._rooms.free + self._alone.free))

    def _leave_out(self, *, background: bool | None = None) -> LeaveOut:
        """What a pass does not read: the items of a lane already running (it sends its
        room's later items when its turn comes again), those of a pool that is full, and
        background items while their lane is taken or answers go, unless `background` says
        (a transaction handing its answer over reads none, a drain all)."""
        if background is None:
            lane_free = len(self._rooms.busy) < BACKGROUND_LANES
            self._held = self._foreground.ask() if lane_free else 0.0
            background = lane_free and not self._held
        return LeaveOut(
            busy_rooms=self._rooms.busy,
            busy_items=[int(key.removeprefix(ALONE)) for key in self._alone.busy],
            ordered=not self._rooms.full,
            background=background,
            standalone=not self._alone.full,
        )

    async def _due(
        self, limit: int, *, background: bool | None = None
    ) -> tuple[list[OutboxItem], datetime]:
        """The due items a lane could start for now."""
        async with self._db.read(snapshot=False) as tx:
            return await tx.outbox.due(limit, **self._leave_out(background=background)), tx.now()

    async def _wait_for_work(self, stop: asyncio.Event, *, lane_end: bool = False) -> None:
        """Until woken (new items, or a lane finished), stopped, or the next item is due; with
        `lane_end` (every lane busy), only woken or stopped."""
        timeout: float | None = None
        if not lane_end:
            async with self._db.read(snapshot=False) as tx:
                next_time = await tx.outbox.next_attempt_time()
                now = tx.now()
            timeout = IDLE_POLL_SECONDS
            if next_time is not None:
                timeout = max(0.0, min(timeout, (next_time - now).total_seconds()))
            if self._rooms.busy or self._alone.busy:
                # The earliest item may be one a running lane holds: look again when a lane
                # ends (it wakes this loop), or soon, never in a busy loop.
                timeout = max(timeout, BUSY_POLL_SECONDS)
            if self._held:
                # Background items wait for answers (they are due, so not in a busy loop).
                timeout = max(timeout, self._held)
        wake_task = asyncio.ensure_future(self._wake.wait())
        stop_task = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait(
                {wake_task, stop_task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            wake_task.cancel()
            stop_task.cancel()

    async def drain_once(self, limit: int = 50, *, stop: asyncio.Event | None = None) -> bool:
        """One pass: send the due items, lanes concurrently, and wait for every lane it
        started; return True if anything was due. Background items do not wait for quiet."""
        items, now = await self._due(limit, background=True)
        started = self._start_lanes(items, now, stop)
        await asyncio.gather(*started)
        return bool(items)

    def _start_lanes(
        self, items: list[OutboxItem], now: datetime, stop: asyncio.Event | None
    ) -> dict[asyncio.Task[None], list[OutboxItem]]:
        """Start a lane for each room (or stand-alone item) with due items, unless it is busy
        or its pool is full; returns the lanes started, with their items."""
        lanes: dict[str, list[OutboxItem]] = {}
        for item in items:
            key = item.room_id if item.kind in ORDERED_KINDS else f"{ALONE}{item.id}"
            lanes.setdefault(key, []).append(item)
        started: dict[asyncio.Task[None], list[OutboxItem]] = {}
        for key, queued in lanes.items():
            if key.startswith(ALONE):
                task = self._alone.start(key, self._run_lane(queued, now, stop))
            else:
                background = queued[0].priority < INTERACTIVE
                spare = MAX_LANES - BACKGROUND_LANES if background else 0
                task = self._rooms.start(key, self._run_lane(queued, now, stop), spare=spare)
                if task is not None and not background:
                    self._foreground.begin()
                    task.add_done_callback(lambda _: self._foreground.end())
            if task is not None:
                started[task] = queued
        return started

    async def _run_lane(
        self, items: list[OutboxItem], now: datetime, stop: asyncio.Event | None
    ) -> None:
        """Send one lane's items in order. When an ordered item of a room is not sent, the
        room's later items wait for the next pass, so "goodbye" never overtakes a kick that is
        still to come. A stop request ends the lane between items, and so does an answer on
        its way before a background item (the pass that started the lane let its first go)."""
        for index, item in enumerate(items):
            if stop is not None and stop.is_set():
                return
            if index and item.priority < INTERACTIVE and self._foreground.busy:
                return
            if not await self._attempt(item, now) and item.kind in ORDERED_KINDS:
                return

    async def _attempt(self, item: OutboxItem, now: datetime) -> bool:
        """Send the item unless it must wait (outside working hours, say); True if sent."""
        hold = None if self._hold_until is None else self._hold_until(item, now)
        if hold is not None:
            later, why = hold
            async with self._db.transaction() as tx:
                await tx.outbox.mark_retry(item.id, why, later, counted=False)
            return False
        return await self._send_one(item)

    async def _send_one(self, item: OutboxItem) -> bool:
        """Try the item once; True if the homeserver accepted it."""
        if item.kind == "create_room":
            async with self._db.transaction() as tx:
                await tx.outbox.mark_attempt(item.id)
        try:
            response = await self._performer.perform(item)
        except UNREACHABLE as exc:
            log.debug("outbox item %s: homeserver not reachable", item.id, exc_info=True)
            await self._retry(item, f"{type(exc).__name__}: {exc}", counted=False)
            return False
        except Exception as exc:
            # A room not yet known to the client, a key-sharing error: worth a few more tries.
            log.debug("outbox item %s raised", item.id, exc_info=True)
            await self._retry(item, f"{type(exc).__name__}: {exc}")
            return False
        if response is NOTHING_TO_SAY:
            # A question whose involvement ended, or whose family was purged, since it was
            # queued: nobody is waiting for it, so it is dropped without telling anyone.
            log.info("outbox item %s: no longer to be sent", item.id)
            async with self._db.transaction() as tx:
                await tx.outbox.mark_failed(item.id, "no longer to be sent")
            return False
        if response is NOT_IN_ROOM or kick_found_nobody(item, response):
            # Someone else's kick, or their own leave, came first: nothing to do or announce.
            log.info("outbox item %s (kick): its target is no longer in the room", item.id)
            async with self._db.transaction() as tx:
                await tx.outbox.mark_failed(item.id, "the target was no longer in the room")
            return False
        if isinstance(response, ErrorResponse) and not self._performer.already_done(item, response):
            code = response.status_code or ""
            message = f"{code} {response.message}"
            if code in PERMANENT_ERRORS:
                await self._fail(item, message)
            else:
                await self._retry(item, message)
            return False
        self._backoff.reset()
        if isinstance(response, RoomCreateResponse):
            self._faults.reached(CREATE_ROOM_RETURNED)
            await self._room_created(item, str(response.room_id))
            return True
        self._faults.reached(SEND_ACCEPTED)
        result = getattr(response, "event_id", None)
        if item.kind == "kick":
            self._performer.kicked(item)
        async with self._db.transaction() as tx:
            announce = item.payload.get(ANNOUNCE_KEY)
            if item.kind == "kick" and isinstance(announce, dict):
                await tx.outbox.enqueue_message(
                    transaction_id(item.txn_id, ANNOUNCE_KEY), item.room_id, announce
                )
            if self._on_sent is not None:
                try:
                    async with tx.savepoint():
                        await self._on_sent(tx, item, None if result is None else str(result))
                except Exception:
                    # The send itself succeeded; a failing follow-up must not resend it forever.
                    log.exception("follow-up of outbox item %s failed", item.id)
            tx.outbox.mark_sent_later(item.id, result)  # with the COMMIT, in its trip
        self._metrics.sent(item.kind)
        return True

    async def _room_created(self, item: OutboxItem, room_id: str) -> None:
        """Attach the new room in the transaction that marks the item sent. If that fails, the
        item fails (it is never retried: that would make another room) and the creator is
        told; the room was recorded as tried, so nothing creates it again."""
        try:
            async with self._db.transaction() as tx:
                if self._on_room_created is not None:
                    await self._on_room_created(tx, item, room_id)
                await tx.outbox.mark_sent(item.id, room_id)
        except Exception as exc:
            log.exception("setting up room %s of outbox item %s failed", room_id, item.id)
            await self._fail(item, f"room {room_id} was created, then: {type(exc).__name__}")

    async def _retry(self, item: OutboxItem, error: str, *, counted: bool = True) -> None:
        attempts = item.attempts + 1  # this one included (a createRoom counted it before)
        if counted and attempts >= MAX_ATTEMPTS:
            await self._fail(item, f"{error} (after {attempts} attempts)")
            return
        delay = min(MAX_RETRY_DELAY, timedelta(seconds=2 ** min(item.attempts + 1, 10)))
        log.warning(
            "outbox item %s (%s) will be retried in %s: %s", item.id, item.kind, delay, error
        )
        async with self._db.transaction() as tx:
            await tx.outbox.mark_retry(
                item.id,
                error,
                tx.now() + delay,
                counted=counted and item.kind != "create_room",
            )

    async def _fail(self, item: OutboxItem, error: str) -> None:
        log.error("outbox item %s (%s) failed for good: %s", item.id, item.kind, error)
        self._metrics.error("outbox_failed")
        async with self._db.transaction() as tx:
            if self._on_failed is not None:
                try:
                    async with tx.savepoint():
                        await self._on_failed(tx, item, error)
                except Exception:
                    log.exception("follow-up of failed outbox item %s failed", item.id)
            await tx.outbox.mark_failed(item.id, error)
