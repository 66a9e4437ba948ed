"""The bot's own sync loop: every event's effects are committed exactly once.

nio's own token persistence saves the token before callbacks run, so a crash would lose
events. Instead the token lives in our database. For each event we open a transaction, check
the inbox of processed event ids, record the event's effects (roster rows, outbox replies) and
its inbox row, and commit; the token advances only with the last event of a sync response
(in its transaction: no COMMIT of its own). A crash anywhere replays at most the events of one
response, and the inbox makes the replay a no-op.

An event whose handling fails is tried again with the whole response (the token does not
advance), up to `MAX_EVENT_ATTEMPTS` times: a busy database or a dropped connection loses
nothing. After that it is poison: it is recorded as processed so it cannot deafen the bot, and
if it was a command its sender gets a reply with a reference id, never silence.

To-device key verification requests are cancelled as each response is read (`bot.verification`),
and once a response has committed, each command it held gets a read receipt.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from nio import (
    AsyncClient,
    EncryptionError,
    Event,
    InviteMemberEvent,
    MatrixRoom,
    MegolmEvent,
    SyncResponse,
)

from bot.backfill import missed_events
from bot.backoff import Backoff
from bot.config import Config
from bot.direct_chats import direct_rooms_of
from bot.faults import BEFORE_TOKEN, NO_FAULTS, Faults
from bot.matrix import refresh_device_keys
from bot.metrics import Metrics
from bot.outbox import OutboxSender
from bot.router import EventRouter
from bot.verification import VerificationRefuser
from commands.framework.dispatcher import new_reference
from markup import Reply
from rooms.policy import TeamPolicy
from rooms.reconcile import reconcile_family
from storage import Database, Transaction, UndecryptedEvent, transaction_id

log = logging.getLogger(__name__)


class EventRetry(Exception):
    """An event failed for now: the response is replayed after a back-off."""

MAX_EVENT_ATTEMPTS = 3


def sync_filter(timeline_limit: int) -> dict[str, Any]:
    """What the bot asks its syncs for: timelines and state, not the typing notices, read
    receipts and presence it never uses (each would wake its sync for a response of nothing,
    its own read receipts included)."""
    return {
        "presence": {"not_types": ["*"]},
        "room": {"timeline": {"limit": timeline_limit}, "ephemeral": {"not_types": ["*"]}},
    }


RECEIPT_DELAY_SECONDS = 1.0
"""How long after a response its read receipts go: the answer goes first."""
PARKED_HORIZON = timedelta(days=1)
"""How long an undecryptable event is kept after its sender was told, in case the key comes."""
UNDECRYPTABLE_NOTICE = (
    "I could not read the message you sent, because its encryption key never reached me. "
    "Please send it again. If this keeps happening, check that your session is verified."
)


class SyncLoop:
    """Long-polls /sync and feeds each event through the router exactly once."""

    def __init__(
        self,
        *,
        client: AsyncClient,
        db: Database,
        router: EventRouter,
        outbox: OutboxSender,
        config: Config,
        policy: TeamPolicy,
        faults: Faults = NO_FAULTS,
        metrics: Metrics | None = None,
        verification: VerificationRefuser | None = None,
    ) -> None:
        self._verification = verification
        self._metrics = metrics or Metrics()
        self._policy = policy
        self._faults = faults
        self._client = client
        self._db = db
        self._router = router
        self._outbox = outbox
        self._config = config
        self._backoff = Backoff(initial=1.0, maximum=60.0)
        self._filter = sync_filter(config.bot.timeline_limit)
        self._key_requested: set[str] = set()
        self._failures: dict[str, int] = {}
        # Whether events may be parked: unknown at start (they wait in the database across a
        # restart), then known, so a response with none parked makes no trip to look for them.
        self._maybe_parked = True
        self.synced_once = asyncio.Event()
        self._receipts: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self._run(stop)
        finally:
            for task in self._receipts:
                task.cancel()

    async def _run(self, stop: asyncio.Event) -> None:
        async with self._db.read(snapshot=False) as tx:
            token = await tx.sync.get_next_batch()
        first = True
        while not stop.is_set():
            response = await self._sync_unless_stopped(token, full_state=first, stop=stop)
            if response is None:
                return
            if not isinstance(response, SyncResponse):
                log.warning("sync failed: %s; backing off", response)
                self._metrics.error("sync")
                await self._backoff.wait(stop)
                continue
            self._backoff.reset()
            try:
                await refresh_device_keys(self._client)
                await self.process(response, initial=token is None)
            except Exception:
                log.exception("processing a sync response failed; it will be replayed")
                self._metrics.error("sync")
                # nio skips a response whose token it has already seen; forget it so the
                # replay is decrypted and applied to nio's room state again.
                self._client.next_batch = token
                await self._backoff.wait(stop)
                continue
            token = response.next_batch
            first = False
            if not self.synced_once.is_set():
                await self.reconcile_rooms()
                self.synced_once.set()
                log.info("Patchwork is ready")
            self._metrics.synced()

    async def _sync_unless_stopped(
        self, token: str | None, *, full_state: bool, stop: asyncio.Event
    ) -> Any:
        """One /sync call that a stop request interrupts; None means stop."""
        timeout_ms = int(self._config.bot.sync_timeout.total_seconds() * 1000)
        sync_task = asyncio.ensure_future(
            self._client.sync(
                timeout=timeout_ms,
                since=token,
                full_state=full_state,
                sync_filter=self._filter,
                set_presence="online",
            )
        )
        stop_task = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sync_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_task.cancel()
        if not sync_task.done():
            sync_task.cancel()
            await asyncio.gather(sync_task, return_exceptions=True)
            return None
        exc = sync_task.exception()
        if exc is not None:
            return exc
        return sync_task.result()

    async def process(self, response: SyncResponse, *, initial: bool) -> None:
        """Apply one sync response; the token is stored only after every event is committed."""
        if self._verification is not None:
            await self._verification.refuse_to_device(response.to_device_events)
        for room_id, info in response.rooms.invite.items():
            await self._handle_invite(room_id, info.invite_state)
        missed = await self._missed_events(response, initial=initial)
        events = [
            (room, event)
            for room_id, info in response.rooms.join.items()
            if (room := self._client.rooms.get(room_id)) is not None
            for event in [*missed.get(room_id, []), *info.timeline.events]
        ]
        if initial:
            await self._record_as_seen(events, response.next_batch)
        else:
            await self._apply_all(events, response.next_batch)
        await self.retry_undecrypted()  # parked events wait in the database, not on the token
        self._outbox.wake()
        self._send_receipts()

    async def _apply_all(self, events: list[tuple[MatrixRoom, Any]], next_batch: str) -> None:
        """Each event in a transaction of its own; the token is stored only after every event
        has committed."""
        stored = False  # whether the token was stored
        for index, (room, event) in enumerate(events):
            # The last event's transaction stores the token too (one COMMIT fewer): all the
            # others have committed by then, and if it fails the token stays where it was.
            token = next_batch if index == len(events) - 1 else None
            stored = await self.process_event(room, event, apply_effects=True,
                                              next_batch=token)
        if not stored:  # nothing to apply, or the last event was parked or skipped
            async with self._db.transaction() as tx:
                await self._store_token(tx, next_batch)

    async def _record_as_seen(self, events: list[tuple[MatrixRoom, Any]], next_batch: str) -> None:
        """A start with no sync token (a new install, a lost database) acts on nothing its
        first sync shows: every event is only recorded as seen, with the token, in one
        transaction (one each would take minutes at thousands of rooms)."""
        seen = [(str(event.event_id), room.room_id) for room, event in events
                if getattr(event, "event_id", None)]
        async with self._db.transaction() as tx:
            await tx.sync.mark_all_processed(seen)
            await self._store_token(tx, next_batch)

    def _send_receipts(self) -> None:
        """A read receipt for the last command handled in each room (Element shows the person
        it was read), sent in the background a moment later: the sync loop does not wait for
        it, and it does not reach the asker's client just before the answer (waking it for a
        sync of its own, one more trip before the answer shows)."""
        latest = dict(self._router.take_receipts())  # in order: the last one per room wins
        if latest:
            task = asyncio.create_task(self._receipts_later(latest))
            self._receipts.add(task)
            task.add_done_callback(self._receipts.discard)

    async def _receipts_later(self, latest: dict[str, str]) -> None:
        """A receipt that cannot be sent only loses the tick, so it is not retried."""
        await asyncio.sleep(RECEIPT_DELAY_SECONDS)
        for room_id, event_id in latest.items():
            try:
                await self._client.update_receipt_marker(room_id, event_id)
            except Exception:
                log.debug("read receipt for %s not sent", event_id, exc_info=True)

    async def reconcile_rooms(self) -> None:
        """Record membership changes that happened while the bot was down.

        Runs after the first full-state sync, when nio knows every room's current members.
        """
        async with self._db.read(snapshot=False) as tx:
            families = await tx.families.all_open()
        for family in families:
            room = self._client.rooms.get(family.room_id) if family.room_id else None
            if room is None:
                continue
            members = {user: "join" for user in room.users}
            members.update({user: "invite" for user in room.invited_users})
            try:
                async with self._db.transaction() as tx:
                    changes = await reconcile_family(
                        tx, family, members, self._policy, direct_rooms_of(self._client)
                    )
            except Exception:
                # One family that cannot be reconciled must not stop the bot (or the others).
                log.exception("reconciling family %s failed; the next start tries again", family.id)
                self._metrics.error("reconcile")
                continue
            if changes:
                log.info("reconciled %d roster changes in family %s", len(changes), family.id)
        self._outbox.wake()

    async def process_event(
        self, room: MatrixRoom, event: Any, *, apply_effects: bool, next_batch: str | None = None
    ) -> bool:
        """Handle one event of a response; `next_batch` (for its last event) commits with the
        event. True if the token was stored."""
        event_id = getattr(event, "event_id", None)
        if not event_id:
            return False
        if isinstance(event, MegolmEvent) and apply_effects:
            await self._park_undecrypted(room.room_id, event)
            return False
        if not await self._apply(room, event, event_id, apply_effects, next_batch):
            raise EventRetry(event_id)
        return next_batch is not None

    async def _apply(
        self, room: MatrixRoom, event: Any, event_id: str, apply_effects: bool = True,
        next_batch: str | None = None,
    ) -> bool:
        """Handle an event once, `next_batch` in its transaction; True when it is recorded as
        processed (handled, or given up on as poison), False when it should be tried again."""
        try:
            matrix = await self._router.prepare(room, event) if apply_effects else None
            people = apply_effects and self._router.shows_team(event)
            async with self._db.transaction() as tx:
                # The inbox row commits or rolls back with the effects, and the token.
                if await tx.sync.is_new(event_id, room.room_id, people=people):
                    if apply_effects:
                        await self._router.handle(tx, room, event, matrix)
                    tx.sync.mark_processed_later(event_id, room.room_id)
                await self._store_token(tx, next_batch)
                handover = self._outbox.hand_over(tx)
            # What it queued is committed: a reply goes now, not after the response's later
            # events and the parked ones' retry (and not a trip later, after a wake).
            self._outbox.take(handover)
        except Exception:
            failures = self._failures.get(event_id, 0) + 1
            self._failures[event_id] = failures
            if failures < MAX_EVENT_ATTEMPTS:
                log.warning(
                    "event %s in %s failed (attempt %d of %d); it will be tried again",
                    event_id, room.room_id, failures, MAX_EVENT_ATTEMPTS, exc_info=True,
                )
                return False
            reference = new_reference()
            self._metrics.error("event")
            log.exception(
                "event %s in %s failed %d times; giving up on it, reference %s",
                event_id, room.room_id, failures, reference,
            )
            async with self._db.transaction() as tx:
                if not await tx.sync.is_processed(event_id):
                    await self._router.poisoned(tx, room, event, reference)
                    await tx.sync.mark_processed(event_id, room.room_id)
                await self._store_token(tx, next_batch)
        self._failures.pop(event_id, None)
        return True

    async def _store_token(self, tx: Transaction, next_batch: str | None) -> None:
        """The response's token, in the transaction of the last thing the response did."""
        if next_batch is not None:
            self._faults.reached(BEFORE_TOKEN)
            await tx.sync.set_next_batch(next_batch)

    async def _park_undecrypted(self, room_id: str, event: MegolmEvent) -> None:
        """Keep an event we cannot decrypt yet; it is retried whenever keys may have arrived."""
        self._maybe_parked = True
        async with self._db.transaction() as tx:
            if await tx.sync.is_processed(event.event_id):
                return
            await tx.sync.add_undecrypted(
                event.event_id, room_id, event.sender, event.session_id, event.source
            )
        self._metrics.undecryptable()
        if event.session_id in self._key_requested:
            return
        self._key_requested.add(event.session_id)
        try:
            await self._client.request_room_key(event)
        except Exception:  # nio refuses a second request for the same session
            log.debug("room key request for %s not sent", event.session_id, exc_info=True)

    async def retry_undecrypted(self) -> None:
        """Decrypt parked events whose keys have arrived; tell senders once after a grace
        period, and stop trying `PARKED_HORIZON` after that. One parked event that cannot be
        handled never stops the others, or the sync token."""
        if not self._maybe_parked:
            return
        async with self._db.read(snapshot=False) as tx:
            parked = await tx.sync.undecrypted()
            now = tx.now()
        self._maybe_parked = bool(parked)  # those handled now are gone by the next pass
        for item in parked:
            try:
                await self._retry_parked(item, now)
            except Exception:
                log.exception("parked event %s could not be retried", item.event_id)

    async def _retry_parked(self, item: UndecryptedEvent, now: datetime) -> None:
        event = MegolmEvent.from_dict(item.event_json)
        decrypted: Event | None = None
        if isinstance(event, MegolmEvent):
            event.room_id = item.room_id
            try:
                decrypted = self._client.decrypt_event(event)
            except EncryptionError:
                decrypted = None
        room = self._client.rooms.get(item.room_id)
        if decrypted is not None and isinstance(decrypted, Event) and room is not None:
            if await self._apply(room, decrypted, item.event_id):
                async with self._db.transaction() as tx:
                    await tx.sync.remove_undecrypted(item.event_id)
            return
        grace = self._config.bot.undecryptable_grace
        if item.notified_at is None and now - item.first_seen_at >= grace:
            async with self._db.transaction() as tx:
                await tx.sync.mark_undecrypted_notified(item.event_id)
                reply = Reply.mention(item.sender, UNDECRYPTABLE_NOTICE)
                await tx.outbox.enqueue_message(
                    transaction_id(item.event_id, "undecryptable"),
                    item.room_id,
                    reply.to_content(),
                )
        elif item.notified_at is not None and now - item.notified_at >= PARKED_HORIZON:
            async with self._db.transaction() as tx:
                await tx.sync.mark_processed(item.event_id, item.room_id)
                await tx.sync.remove_undecrypted(item.event_id)

    async def _missed_events(
        self, response: SyncResponse, *, initial: bool
    ) -> dict[str, list[Any]]:
        return {} if initial else await missed_events(self._client, self._db, response)

    async def _handle_invite(self, room_id: str, invite_state: list[Any]) -> None:
        inviter = None
        for event in invite_state:
            if (
                isinstance(event, InviteMemberEvent)
                and event.state_key == self._client.user_id
                and event.membership == "invite"
            ):
                inviter = event.sender
        if inviter is not None and self._policy.allows(inviter):
            kind = "join"
            log.info("joining %s, invited by %s", room_id, inviter)
        else:
            kind = "leave"
            log.info("refusing invite to %s from %s: not on an allowed server", room_id, inviter)
        # Through the outbox, so a join that fails for now is retried with back-off. Each
        # invitation is answered once: a replay finds the answer still queued.
        async with self._db.transaction() as tx:
            earlier = await tx.outbox.for_room(room_id, ("join", "leave"))
            if not any(item.is_pending for item in earlier):
                await tx.outbox.enqueue(
                    transaction_id(room_id, "invited", kind, str(len(earlier))), room_id, kind, {}
                )
