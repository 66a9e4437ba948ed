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
replies nor any other room.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    ErrorResponse,
    JoinedRoomsResponse,
    JoinResponse,
    RoomCreateResponse,
    RoomGetStateEventResponse,
    RoomInviteResponse,
    RoomKickResponse,
    RoomLeaveResponse,
    RoomPutStateResponse,
)
from nio.api import Api

from bot.attachments import upload_encrypted
from bot.backoff import Backoff
from bot.faults import CREATE_ROOM_RETURNED, NO_FAULTS, SEND_ACCEPTED, Faults
from bot.lanes import Lanes
from bot.matrix import forget_member, refresh_device_keys, refresh_members, share_room_key
from bot.metrics import Metrics
from rooms.actions import ANNOUNCE_KEY
from rooms.exports import EXPORT, Attachment
from rooms.family_room import FAMILY_STATE_EVENT
from storage import ORDERED_KINDS, Database, OutboxItem, Transaction, transaction_id

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
STOP_GRACE_SECONDS = 5.0
ALONE = "item:"
KICK_SETTLE_SECONDS = 60.0
"""For this long after the bot removed someone, its encrypted sends in that room first ask the
homeserver who is still a member, so a late sync cannot put the removed person back."""

# Called in the same transaction that marks a create_room item sent: (tx, item, new room id).
RoomCreatedHook = Callable[[Transaction, OutboxItem, str], Awaitable[None]]
# Called in the same transaction that marks any other item sent: (tx, item, its event id if
# the homeserver returned one). What it writes commits with the "sent" mark, so a crash in
# between replays both together (the homeserver deduplicates the resend).
SentHook = Callable[[Transaction, OutboxItem, str | None], Awaitable[None]]
# Called in the transaction that marks an item failed for good: (tx, item, why).
FailedHook = Callable[[Transaction, OutboxItem, str], Awaitable[None]]
# When an item may not go yet (a question outside working hours): (item, now) -> go at.
HoldHook = Callable[[OutboxItem, datetime], datetime | None]
# The file an export item stands for, built when it is sent (nothing personal is queued).
AttachmentHook = Callable[[OutboxItem], Awaitable[Attachment]]


class OutboxSender:
    """Drains the outbox in order; wake() after committing new items for an immediate send."""

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
        faults: Faults = NO_FAULTS,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._db = db
        self._client = client
        self._on_room_created = on_room_created
        self._on_sent = on_sent
        self._on_failed = on_failed
        self._hold_until = hold_until
        self._attachment = attachment
        self._faults = faults
        self._wake = asyncio.Event()
        self._backoff = Backoff(initial=1.0, maximum=60.0)
        self._rooms = Lanes(MAX_LANES, self._wake.set)
        self._alone = Lanes(MAX_LANES, self._wake.set)
        """Invites, joins and leaves wait on other homeservers; rooms never wait for them."""
        self._keys = asyncio.Lock()
        """nio's key upload, query and claim are not safe to run twice at once."""
        self._kicked_at: dict[str, float] = {}

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                self._wake.clear()
                for lanes in (self._rooms, self._alone):
                    if lanes.crash is not None:
                        raise lanes.crash
                try:
                    async with self._db.read() as tx:
                        items = await tx.outbox.due(50)
                        now = tx.now()
                    _, busy = self._start_lanes(items, now, stop)
                except Exception:
                    log.exception("outbox pass failed; retrying")
                    await self._backoff.wait(stop)
                    continue
                await self._wait_for_work(stop, busy=busy)
        finally:
            await self._rooms.finish(STOP_GRACE_SECONDS)
            await self._alone.finish(STOP_GRACE_SECONDS)

    async def _wait_for_work(self, stop: asyncio.Event, *, busy: bool = False) -> None:
        """Until woken (new items, or a lane finished), stopped, or the next item is due."""
        async with self._db.read() as tx:
            next_time = await tx.outbox.next_attempt_time()
            now = tx.now()
        timeout = IDLE_POLL_SECONDS
        if next_time is not None:
            timeout = max(0.0, min(timeout, (next_time - now).total_seconds()))
        if busy:
            # Items of busy lanes are due already; look again when a lane ends, or soon.
            timeout = max(timeout, BUSY_POLL_SECONDS)
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
        started; return True if anything was due."""
        async with self._db.read() as tx:
            items = await tx.outbox.due(limit)
            now = tx.now()
        started, _ = self._start_lanes(items, now, stop)
        await asyncio.gather(*started)
        return bool(items)

    def _start_lanes(
        self, items: list[OutboxItem], now: datetime, stop: asyncio.Event | None
    ) -> tuple[list[asyncio.Task[None]], bool]:
        """Start a lane for each room (or stand-alone item) with due items, unless it is busy
        or its pool is full; returns the lanes started and whether any items had to wait."""
        lanes: dict[str, list[OutboxItem]] = {}
        for item in items:
            key = item.room_id if item.kind in ORDERED_KINDS else f"{ALONE}{item.id}"
            lanes.setdefault(key, []).append(item)
        started: list[asyncio.Task[None]] = []
        for key, queued in lanes.items():
            pool = self._alone if key.startswith(ALONE) else self._rooms
            task = pool.start(key, self._run_lane(queued, now, stop))
            if task is not None:
                started.append(task)
        return started, len(started) < len(lanes)

    async def _run_lane(
        self, items: list[OutboxItem], now: datetime, stop: asyncio.Event | None
    ) -> None:
        """Send one lane's items in order. When an ordered item of a room is not sent, the
        room's later items wait for the next pass, so "goodbye" never overtakes a kick that is
        still to come. A stop request ends the lane between items."""
        for item in items:
            if stop is not None and stop.is_set():
                return
            if not await self._attempt(item, now) and item.kind in ORDERED_KINDS:
                return

    async def _attempt(self, item: OutboxItem, now: datetime) -> bool:
        """Send the item unless it must wait (outside working hours); True if sent."""
        later = None if self._hold_until is None else self._hold_until(item, now)
        if later is not None:
            async with self._db.transaction() as tx:
                await tx.outbox.mark_retry(item.id, "outside working hours", later, counted=False)
            return False
        return await self._send_one(item)

    async def _send_one(self, item: OutboxItem) -> bool:
        """Try the item once; True if the homeserver accepted it."""
        if item.kind == "create_room":
            async with self._db.transaction() as tx:
                await tx.outbox.mark_attempt(item.id)
        try:
            response = await self._perform(item)
        except UNREACHABLE as exc:
            log.debug("outbox item %s: homeserver not reachable", item.id, exc_info=True)
            await self._retry(item, f"{type(exc).__name__}: {exc}", counted=False)
            return False
        except Exception as exc:
            # A room not yet known to the client, a key-sharing error: worth a few more tries.
            log.debug("outbox item %s raised", item.id, exc_info=True)
            await self._retry(item, f"{type(exc).__name__}: {exc}")
            return False
        if response is NOT_IN_ROOM or _kick_found_nobody(item, response):
            # Someone else's kick, or their own leave, came first: nothing to do or announce.
            log.info("outbox item %s (kick): its target is no longer in the room", item.id)
            async with self._db.transaction() as tx:
                await tx.outbox.mark_failed(item.id, "the target was no longer in the room")
            return False
        if isinstance(response, ErrorResponse) and not self._already_done(item, response):
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
            forget_member(self._client, item.room_id, str(item.payload["user_id"]))
            self._kicked_at[item.room_id] = time.monotonic()
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
            await tx.outbox.mark_sent(item.id, result)
        self._metrics.sent(item.kind)
        return True

    def _already_done(self, item: OutboxItem, response: ErrorResponse) -> bool:
        """An invite refused because its target is already invited or in the room: an earlier
        try was accepted and then lost (a crash, or a response lost on the way back), so the
        invite has done its work."""
        if item.kind != "invite" or response.status_code != "M_FORBIDDEN":
            return False
        room = self._client.rooms.get(item.room_id)
        user_id = item.payload.get("user_id")
        in_room = room is not None and user_id in room.users
        return in_room or "already in the room" in (response.message or "")

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

    async def _perform(self, item: OutboxItem) -> Any:
        payload = item.payload
        client = self._client
        if item.kind == EXPORT and self._attachment is not None:
            content = await upload_encrypted(client, await self._attachment(item))
            if isinstance(content, ErrorResponse):
                return content
            return await self._send_event(item, "m.room.message", content)
        if item.kind == "message":
            return await self._send_event(
                item, payload.get("type", "m.room.message"), payload["content"]
            )
        if item.kind == "invite":
            return _ok_if(await client.room_invite(item.room_id, payload["user_id"]),
                          RoomInviteResponse)
        if item.kind == "kick":
            if not await self._in_room(item.room_id, payload["user_id"]):
                return NOT_IN_ROOM
            return _ok_if(
                await client.room_kick(item.room_id, payload["user_id"], payload.get("reason")),
                RoomKickResponse,
            )
        if item.kind == "join":
            return _ok_if(await client.join(item.room_id), JoinResponse)
        if item.kind == "leave":
            left = _ok_if(await client.room_leave(item.room_id), RoomLeaveResponse)
            if payload.get("forget") and not isinstance(left, ErrorResponse):
                # A purged family's room: gone from the bot's room list for good.
                await client.room_forget(item.room_id)
            return left
        if item.kind == "state":
            return _ok_if(
                await client.room_put_state(
                    item.room_id,
                    payload["event_type"],
                    payload["content"],
                    payload.get("state_key", ""),
                ),
                RoomPutStateResponse,
            )
        if item.kind == "create_room":
            return await self._create_room(item)
        raise ValueError(f"unknown outbox item kind {item.kind!r}")

    async def _send_event(self, item: OutboxItem, event_type: str, content: dict[str, Any]) -> Any:
        client = self._client
        room = client.rooms.get(item.room_id)
        if room is not None and room.encrypted:
            async with self._keys:
                kicked_at = self._kicked_at.get(item.room_id)
                if kicked_at is not None and time.monotonic() - kicked_at < KICK_SETTLE_SECONDS:
                    await refresh_members(client, item.room_id)
                # Know every member's devices before encrypting, or someone misses the key.
                await refresh_device_keys(client)
                await share_room_key(client, item.room_id)
        return await client.room_send(
            item.room_id,
            event_type,
            content,
            tx_id=item.txn_id,
            ignore_unverified_devices=True,
        )

    async def _in_room(self, room_id: str, user_id: str) -> bool:
        """Whether the homeserver says the user is invited or joined (else a kick is moot)."""
        state = await self._client.room_get_state_event(room_id, "m.room.member", user_id)
        if isinstance(state, RoomGetStateEventResponse):
            return state.content.get("membership") in ("invite", "join")
        return getattr(state, "status_code", None) != "M_NOT_FOUND"

    async def _create_room(self, item: OutboxItem) -> Any:
        """createRoom has no transaction id, so a retry first looks for the room an earlier
        try may have created (marked by its family state event) before creating another."""
        request = item.payload["request"]
        marker = _family_marker(request)
        if item.attempts > 0 and marker is not None:
            # An earlier try was recorded before its request: it may have made the room.
            existing = await self._find_room_with_marker(marker)
            if existing is not None:
                log.info("found the room %s created by an earlier try", existing)
                return RoomCreateResponse(existing)
        path = Api._build_path(["createRoom"], {"access_token": self._client.access_token})
        return await self._client._send(RoomCreateResponse, "POST", path, Api.to_json(request))

    async def _find_room_with_marker(self, marker: dict[str, Any]) -> str | None:
        rooms = await self._client.joined_rooms()
        if not isinstance(rooms, JoinedRoomsResponse):
            return None
        for room_id in rooms.rooms:
            state = await self._client.room_get_state_event(room_id, FAMILY_STATE_EVENT, "")
            if isinstance(state, RoomGetStateEventResponse) and state.content == marker:
                return str(room_id)
        return None


NOT_IN_ROOM = object()
"""What performing a kick returns when its target has already gone."""


def _kick_found_nobody(item: OutboxItem, response: object) -> bool:
    return (
        item.kind == "kick"
        and isinstance(response, ErrorResponse)
        and "not in the room" in (response.message or "")
    )


def _family_marker(request: dict[str, Any]) -> dict[str, Any] | None:
    for event in request.get("initial_state", []):
        if event.get("type") == FAMILY_STATE_EVENT:
            content: dict[str, Any] = event.get("content", {})
            return content
    return None


def _ok_if(response: Any, expected: type) -> Any:
    """Room actions answer with their own response types; pass errors through unchanged."""
    if isinstance(response, expected | ErrorResponse):
        return response
    raise TypeError(f"unexpected response {type(response).__name__}")

