"""A practitioner for tests and benchmarks: a real nio E2EE client, driven by its own sync loop.

The loop does what Element does in the background (sync, upload and query keys, claim one-time
keys, send queued to-device messages) and records what the practitioner sees, so a test can say
"send this, then wait for the bot's notice" and get a decrypted event back, or a clear failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeAlias

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    EncryptionError,
    ErrorResponse,
    Event,
    InviteMemberEvent,
    LoginResponse,
    MegolmEvent,
    RoomCreateResponse,
    RoomMemberEvent,
    RoomMessageNotice,
    RoomMessageText,
    RoomPreset,
    RoomSendResponse,
    RoomVisibility,
    SyncResponse,
)

log = logging.getLogger(__name__)

MEGOLM = "m.megolm.v1.aes-sha2"
# A wide timeline window, so a burst of messages is not cut short by a `limited` sync.
SYNC_FILTER: dict[str, Any] = {"room": {"timeline": {"limit": 100}}}


class HarnessError(AssertionError):
    """The homeserver refused a request, or what a test waited for did not happen in time."""


BotMessage: TypeAlias = RoomMessageNotice | RoomMessageText
"""What the bot says: replies are m.notice; what asks someone to act is m.text."""
NoticePredicate = Callable[[BotMessage], bool]


class Practitioner:
    """One practitioner's device: log in, create and join rooms, send, and wait for replies."""

    def __init__(
        self,
        homeserver_url: str,
        user_id: str,
        password: str,
        store_dir: Path,
        *,
        device_id: str | None = None,
        sync_timeout_ms: int = 10_000,
    ) -> None:
        store_dir.mkdir(parents=True, exist_ok=True)
        self.user_id = user_id
        self.password = password
        self.store_dir = store_dir
        self.sync_timeout_ms = sync_timeout_ms
        config = AsyncClientConfig(
            encryption_enabled=True,
            store_sync_tokens=False,
            pickle_key=_pickle_key(store_dir),
        )
        self.client = AsyncClient(
            homeserver_url,
            user_id,
            device_id=device_id or "",
            store_path=str(store_dir),
            config=config,
        )
        self._timeline: dict[str, list[Event]] = {}
        self._membership: dict[str, dict[str, str]] = {}
        self._pending: list[MegolmEvent] = []
        self._changed = asyncio.Condition()
        self._key_lock = asyncio.Lock()
        self._sync_task: asyncio.Task[None] | None = None
        self._sync_error: BaseException | None = None
        self._syncs = 0

    def __repr__(self) -> str:
        return f"Practitioner({self.user_id})"

    @property
    def device_id(self) -> str:
        return str(self.client.device_id)

    # --- lifecycle -------------------------------------------------------------------------

    async def login(self) -> None:
        """Log in, publish device keys, and start syncing; returns after the first sync."""
        response = await self.client.login(self.password, device_name="Patchwork test client")
        if not isinstance(response, LoginResponse):
            raise HarnessError(f"{self.user_id} could not log in: {response}")
        async with self._key_lock:
            if self.client.should_upload_keys:
                _check(await self.client.keys_upload(), "upload device keys")
        await self.resume()

    async def resume(self, timeout: float = 30) -> None:  # noqa: ASYNC109
        """Start syncing (again); returns after the first sync."""
        first = self._syncs
        self._sync_task = asyncio.create_task(self._sync_forever(), name=f"sync {self.user_id}")
        await self._wait(lambda: self._syncs > first, timeout, "the first sync")

    async def pause(self) -> None:
        """Stop syncing for a while (a benchmark's bystanders), so this process spends no CPU
        on the client until `resume()`; what arrives meanwhile is synced then."""
        task, self._sync_task = self._sync_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """Stop syncing and close the HTTP session (the E2EE store stays on disk)."""
        await self.pause()
        await self.client.close()

    # --- the background sync loop -----------------------------------------------------------

    async def _sync_forever(self) -> None:
        """Sync, record, then do the key work nio's own sync_forever would do."""
        first = True
        while True:
            try:
                response = await self.client.sync(
                    timeout=0 if first else self.sync_timeout_ms,
                    sync_filter=SYNC_FILTER,
                    full_state=first or None,
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("%s: sync failed (%s); retrying", self.user_id, exc)
                await asyncio.sleep(0.5)
                continue
            except Exception as exc:
                await self._fail(exc)
                return
            if not isinstance(response, SyncResponse):
                log.warning("%s: sync refused: %s", self.user_id, response)
                await asyncio.sleep(0.5)
                continue
            first = False
            try:
                self._record(response)
                self._retry_undecryptable()
            except Exception as exc:
                await self._fail(exc)
                return
            try:
                await self._key_maintenance()
            except (aiohttp.ClientError, OSError, TimeoutError, HarnessError) as exc:
                # nio keeps the flags set, so the next round retries (e.g. after an outage).
                log.warning("%s: key upkeep failed (%s); will retry", self.user_id, exc)
            except Exception as exc:
                await self._fail(exc)
                return
            async with self._changed:
                self._syncs += 1
                self._changed.notify_all()

    async def _fail(self, exc: BaseException) -> None:
        """Keep the error for every waiter to report, instead of hanging until its timeout."""
        log.error("%s: sync loop died", self.user_id, exc_info=exc)
        async with self._changed:
            self._sync_error = exc
            self._changed.notify_all()

    async def _key_maintenance(self) -> None:
        client = self.client
        async with self._key_lock:
            if client.outgoing_to_device_messages:
                await client.send_to_device_messages()
            if client.should_upload_keys:
                _check(await client.keys_upload(), "upload keys")
            if client.should_query_keys:
                _check(await client.keys_query(), "query keys")
            if client.should_claim_keys:
                users = client.get_users_for_key_claiming()
                _check(await client.keys_claim(users), "claim one-time keys")

    def _record(self, response: SyncResponse) -> None:
        for room_id, invite in response.rooms.invite.items():
            for event in invite.invite_state:
                if isinstance(event, InviteMemberEvent):
                    self._set_membership(room_id, event.state_key, event.membership)
        for rooms in (response.rooms.join, response.rooms.leave):
            for room_id, info in rooms.items():
                timeline = self._timeline.setdefault(room_id, [])
                for event in info.state:
                    if isinstance(event, RoomMemberEvent):
                        self._set_membership(room_id, event.state_key, event.membership)
                for event in info.timeline.events:
                    timeline.append(event)
                    if isinstance(event, RoomMemberEvent):
                        self._set_membership(room_id, event.state_key, event.membership)
                    elif isinstance(event, MegolmEvent):
                        self._pending.append(event)

    def _set_membership(self, room_id: str, user_id: str, membership: str) -> None:
        self._membership.setdefault(room_id, {})[user_id] = membership

    def _retry_undecryptable(self) -> None:
        """Room keys often arrive a sync after the message; decrypt what we now can, in place."""
        still_pending = []
        for event in self._pending:
            try:
                decrypted = self.client.decrypt_event(event)
            except EncryptionError:
                still_pending.append(event)
                continue
            timeline = self._timeline.get(event.room_id, [])
            for index, seen in enumerate(timeline):
                if seen is event:
                    timeline[index] = decrypted
                    break
        self._pending = still_pending

    # --- waiting ----------------------------------------------------------------------------

    async def _wait(self, ready: Callable[[], bool], seconds: float, what: str) -> None:
        """Re-check `ready` after every sync; fail with `what` after `seconds`, or at once if
        the sync loop has died (so a broken client does not look like a slow bot)."""

        def done() -> bool:
            return self._sync_error is not None or ready()

        try:
            async with asyncio.timeout(seconds), self._changed:
                await self._changed.wait_for(done)
        except TimeoutError:
            raise HarnessError(
                f"{self.user_id}: timed out after {seconds:g} s waiting for {what}"
            ) from None
        if self._sync_error is not None and not ready():
            raise HarnessError(f"{self.user_id}: sync loop died: {self._sync_error!r}")

    async def wait_for_sync(self, timeout: float = 30) -> None:  # noqa: ASYNC109
        """Wait for one more completed sync (and its key work)."""
        target = self._syncs + 1
        await self._wait(lambda: self._syncs >= target, timeout, "a sync")

    async def wait_for_membership(
        self,
        room_id: str,
        user_id: str,
        membership: str,
        timeout: float = 30,  # noqa: ASYNC109
    ) -> None:
        """Wait until our synced view has `user_id` with this membership (join, invite, leave)."""
        await self._wait(
            lambda: self.membership(room_id, user_id) == membership,
            timeout,
            f"{user_id} to have membership {membership!r} in {room_id} "
            f"(now {self.membership(room_id, user_id)!r})",
        )

    async def wait_for_event(
        self,
        room_id: str,
        match: Callable[[Event], bool],
        *,
        after_event_id: str | None = None,
        timeout: float = 30,  # noqa: ASYNC109 (a test's patience, not an I/O timeout)
        what: str = "a matching event",
    ) -> Event:
        """The first timeline event in the room for which `match` is true; with
        `after_event_id`, only events after that one (in timeline order) count."""
        found: list[Event] = []

        def ready() -> bool:
            event = self._find(room_id, match, after_event_id)
            if event is not None:
                found.append(event)
            return event is not None

        await self._wait(ready, timeout, f"{what} in {room_id}")
        return found[0]

    async def wait_for_invite(self, name: str, timeout: float = 30) -> str:  # noqa: ASYNC109
        """The id of a room named `name` that we are invited to (e.g. a new family room)."""
        found: list[str] = []

        def ready() -> bool:
            for room_id, room in self.client.invited_rooms.items():
                if room.name == name and self.membership(room_id, self.user_id) == "invite":
                    found.append(room_id)
                    return True
            return False

        await self._wait(ready, timeout, f"an invite to the room {name!r}")
        return found[0]

    async def wait_for_notice(
        self,
        room_id: str,
        *,
        sender: str,
        predicate: NoticePredicate | None = None,
        after_event_id: str | None = None,
        timeout: float = 30,  # noqa: ASYNC109
    ) -> BotMessage:
        """The first message from `sender` (the bot: an m.notice, or an m.text that asks someone
        to act) matching `predicate`, after `after_event_id` if given; without it, messages
        received before the call count too."""

        def match(event: Event) -> bool:
            return (
                isinstance(event, RoomMessageNotice | RoomMessageText)
                and event.sender == sender
                and (predicate is None or predicate(event))
            )

        try:
            event = await self.wait_for_event(
                room_id,
                match,
                after_event_id=after_event_id,
                timeout=timeout,
                what=f"a notice from {sender}",
            )
        except HarnessError as exc:
            seen = [notice.body for notice in self.notices(room_id, sender)]
            pending = len(self.undecryptable(room_id))
            raise HarnessError(
                f"{exc}; notices from {sender} so far: {seen!r}; "
                f"undecryptable events in the room: {pending}"
            ) from None
        assert isinstance(event, RoomMessageNotice | RoomMessageText)
        return event

    def _find(
        self, room_id: str, match: Callable[[Event], bool], after_event_id: str | None
    ) -> Event | None:
        timeline = self._timeline.get(room_id, [])
        start = 0
        if after_event_id is not None:
            ids = [event.event_id for event in timeline]
            if after_event_id not in ids:
                return None
            start = ids.index(after_event_id) + 1
        return next((event for event in timeline[start:] if match(event)), None)

    # --- what we have seen ------------------------------------------------------------------

    def timeline(self, room_id: str) -> list[Event]:
        """Every timeline event seen in the room, in order, decrypted where we could."""
        return list(self._timeline.get(room_id, []))

    def notices(self, room_id: str, sender: str | None = None) -> list[BotMessage]:
        """All m.notice events received so far in the room; from `sender` (the bot), its
        m.text messages too."""
        return [
            event
            for event in self._timeline.get(room_id, [])
            if (
                isinstance(event, RoomMessageNotice)
                or (isinstance(event, RoomMessageText) and sender is not None)
            )
            and (sender is None or event.sender == sender)
        ]

    def undecryptable(self, room_id: str | None = None) -> list[MegolmEvent]:
        """Encrypted events whose room key has not arrived (yet)."""
        return [e for e in self._pending if room_id is None or e.room_id == room_id]

    def membership(self, room_id: str, user_id: str) -> str | None:
        """The latest membership of `user_id` in the room as our syncs have shown it."""
        return self._membership.get(room_id, {}).get(user_id)

    # --- rooms ------------------------------------------------------------------------------

    async def create_encrypted_room(
        self, invite: Iterable[str] = (), name: str | None = None
    ) -> str:
        """A private, encrypted room; returns once our client knows it is encrypted."""
        response = await self.client.room_create(
            visibility=RoomVisibility.private,
            preset=RoomPreset.private_chat,
            name=name,
            invite=list(invite),
            initial_state=[
                {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}
            ],
        )
        if not isinstance(response, RoomCreateResponse):
            raise HarnessError(f"{self.user_id} could not create a room: {response}")
        room_id = str(response.room_id)
        await self._wait(
            lambda: room_id in self.client.rooms and self.client.rooms[room_id].encrypted,
            30,
            f"the new room {room_id} to sync",
        )
        return room_id

    async def invite(self, room_id: str, user_id: str) -> None:
        _check(await self.client.room_invite(room_id, user_id), f"invite {user_id}")

    async def join(self, room_id: str) -> None:
        """Join, and wait until our own sync shows it (so sending right after works).

        An invite from another server reaches us before its own server has stored it, so a
        join made at once may be refused as not invited; it is asked again for a while."""
        for attempt in range(1, JOIN_TRIES + 1):
            response = await self.client.join(room_id)
            not_invited_yet = (isinstance(response, ErrorResponse)
                               and response.status_code == "M_FORBIDDEN"
                               and "not invited" in str(response.message))
            if not not_invited_yet or attempt == JOIN_TRIES:
                break
            await asyncio.sleep(0.5)
        _check(response, f"join {room_id}")
        await self.wait_for_membership(room_id, self.user_id, "join")
        await self._wait(lambda: room_id in self.client.rooms, 30, f"{room_id} to sync")

    async def leave(self, room_id: str) -> None:
        _check(await self.client.room_leave(room_id), f"leave {room_id}")

    async def kick(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        _check(await self.client.room_kick(room_id, user_id, reason), f"kick {user_id}")

    # --- sending ----------------------------------------------------------------------------

    async def send_text(self, room_id: str, body: str) -> str:
        """Send an m.text message (encrypted in encrypted rooms); returns its event id."""
        return await self.send_message(room_id, {"msgtype": "m.text", "body": body})

    async def send_message(self, room_id: str, content: dict[str, Any]) -> str:
        """Send any m.room.message content, making sure every member's devices get the key."""
        await self._wait(lambda: room_id in self.client.rooms, 30, f"{room_id} to sync")
        async with self._key_lock:
            await self._learn_member_devices(room_id)
            response = await self.client.room_send(
                room_id, "m.room.message", content, ignore_unverified_devices=True
            )
        if not isinstance(response, RoomSendResponse):
            raise HarnessError(f"{self.user_id} could not send to {room_id}: {response}")
        return str(response.event_id)

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        """React to an event in the clear, as nio sends reactions (Element encrypts them in
        encrypted rooms, and the bot counts only those there); returns the id."""
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        response = await self.client.room_send(room_id, "m.reaction", content)
        if not isinstance(response, RoomSendResponse):
            raise HarnessError(f"{self.user_id} could not react in {room_id}: {response}")
        return str(response.event_id)

    async def ask(
        self,
        room_id: str,
        body: str,
        *,
        bot: str,
        predicate: NoticePredicate | None = None,
        timeout: float = 30,  # noqa: ASYNC109
    ) -> BotMessage:
        """Send a text and return the bot's first notice after it (a command and its answer)."""
        event_id = await self.send_text(room_id, body)
        return await self.wait_for_notice(
            room_id, sender=bot, predicate=predicate, after_event_id=event_id, timeout=timeout
        )

    async def _learn_member_devices(self, room_id: str) -> None:
        """Query keys for members whose devices we do not know yet.

        nio queries a user's keys once, when it first sees them; a bot that logs in after that
        query would be missed and never get the room key. Re-querying any member with no known
        device closes that gap; a changed device list invalidates the outbound session, so the
        next send re-shares it.
        """
        client = self.client
        room = client.rooms[room_id]
        if not room.encrypted:
            return
        if not room.members_synced:
            _check(await client.joined_members(room_id), f"members of {room_id}")
        for user_id in room.users:
            if user_id == self.user_id:
                continue  # nio does not list our own device; other devices of ours are optional
            if not list(client.device_store.active_user_devices(user_id)):
                client.olm.users_for_key_query.add(user_id)
        if client.should_query_keys:
            _check(await client.keys_query(), "query keys")


def _pickle_key(store_dir: Path) -> str:
    """One random key per store, kept beside it, so a client can be rebuilt on the same store
    (same device, same keys) as a restarted Element would be."""
    path = store_dir / "pickle_key"
    if not path.exists():
        path.write_text(secrets.token_hex(16), encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()


JOIN_TRIES = 20
"""Joins asked for an invite that its room's server may not have stored yet (0.5 s apart)."""


def _check(response: Any, what: str) -> Any:
    if isinstance(response, ErrorResponse):
        raise HarnessError(f"could not {what}: {response}")
    return response
