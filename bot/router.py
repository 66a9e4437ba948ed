"""Decides what one room event means for Patchwork and records its effects.

Before the event's database transaction, `prepare` makes the only network calls a command may
need (whether the accounts `!invite` names exist), so nothing waits on a homeserver while the
database's single write lock is held. Then the handler chain, for each event the sync loop hands
over (inside the event's database transaction, after the inbox says it is new):
1. messages sent by the bot itself are ignored;
2. a text message in a room that is not end-to-end encrypted gets, once per room, a notice
   saying why the bot will not work there, and nothing else;
3. a text message that was not decrypted (plain text in an encrypted room) is ignored;
4. chatter (a message that is not a command) is ignored;
5. a command from a user whose server is not on `policy.allowed_servers` gets a refusal saying
   so, wherever it was sent (a "direct chat" included); a sender over the per-sender rate limit
   (`bot.ratelimit`) is asked once to slow down and otherwise ignored; any other command goes
   to the dispatcher, whose replies are written to the outbox in the same transaction;
6. every `m.room.member` event (the bot's own kicks included) goes to `rooms.membership`,
   which mirrors it into the roster of a family room and ignores other rooms;
7. an `m.reaction` from anyone but the bot goes to `rooms.prompts.on_reaction`, which takes a
   ✅ or ❌ from a practitioner on their own open still-involved prompt as their answer and
   ignores every other reaction. In an encrypted room only an encrypted reaction counts: one
   sent in the clear could have been put there by anyone with access to the homeserver. A vote
   in the prompt's poll (`org.matrix.msc3381.poll.response`) is taken the same way;
8. a key verification request (`m.key.verification.request` or `.start`) is cancelled at once
   with an explanation (`bot.verification`): the bot never accepts one.
A command that was handled is remembered so the sync loop can send its read receipt once the
transaction has committed (`take_receipts`).
Errors inside a command are handled by the dispatcher (see `commands.framework.dispatcher`);
an error here propagates to the sync loop, which logs it and records the event as processed so
one bad event cannot block the room.
"""

from __future__ import annotations

import logging
from typing import Any

from nio import AsyncClient, MatrixRoom, ReactionEvent, RoomMemberEvent, RoomMessageText

from bot.direct_chats import direct_rooms_of, is_direct_chat
from bot.matrix import NioGateway
from bot.metrics import Metrics
from bot.ratelimit import SLOW_DOWN, SenderRateLimit
from bot.typing import is_slow, set_typing
from bot.verification import refuse_in_room
from commands.framework.context import CommandContext, RoomKind, Services
from commands.framework.dispatcher import FAILURE_MESSAGE, Dispatcher
from commands.framework.parser import command_text, parse_invocation
from commands.framework.registry import CommandRegistry
from commands.view import build_view_registry
from markup import Reply
from rooms.admission import server_rule
from rooms.direct_chat import on_joined
from rooms.gateway import MatrixGateway
from rooms.membership import on_member_event
from rooms.policy import TeamPolicy
from rooms.prompts import PromptSettings, on_poll_response, on_reaction, poll_answers
from storage import Transaction, transaction_id

log = logging.getLogger(__name__)

UNENCRYPTED_FLAG = "unencrypted_warning"
UNENCRYPTED_WARNING = (
    "I only work in end-to-end encrypted rooms, because the people we support deserve "
    "privacy. Please turn on encryption in this room's security settings (it cannot be "
    "turned off again), or start a new encrypted room and invite me there."
)


class EventRouter:
    """Routes decrypted room events to commands; later, membership to the roster."""

    def __init__(
        self,
        *,
        client: AsyncClient,
        registry: CommandRegistry,
        gateway: NioGateway,
        policy: TeamPolicy,
        prompts: PromptSettings,
        rate_limit: SenderRateLimit | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._client = client
        self._metrics = metrics or Metrics()
        self._rate_limit = rate_limit or SenderRateLimit()
        self._policy = policy
        self._prompts = prompts
        self._services = Services(policy=policy, prompts=prompts)
        self._registry = registry
        self._dispatcher = Dispatcher(registry, prefix=policy.command_prefix)
        self._view_registry = build_view_registry()
        self._view_dispatcher = Dispatcher(self._view_registry, prefix=policy.command_prefix)
        self._gateway = gateway
        self._direct_rooms = direct_rooms_of(client)
        self._receipts: list[tuple[str, str]] = []

    def take_receipts(self) -> list[tuple[str, str]]:
        """(room id, event id) of the commands handled since the last call."""
        receipts, self._receipts = self._receipts, []
        return receipts

    async def prepare(self, room: MatrixRoom, event: Any) -> MatrixGateway:
        """Outside any transaction: the gateway the event's command will use, with the accounts
        it names already looked up, and a typing notice if its answer is slow to prepare."""
        if isinstance(event, RoomMessageText) and event.sender != self._client.user_id:
            body = command_text(event.body, event.formatted_body)
            invocation = parse_invocation(body, self._policy.command_prefix)
            if invocation is not None and room.encrypted and is_slow(
                invocation.name, invocation.remainder
            ):
                await set_typing(self._client, room.room_id, True)
            named = self._dispatcher.accounts_named(body)
            if named:
                return await self._gateway.look_up_accounts(named)
        return self._gateway

    def shows_team(self, event: Any) -> bool:
        """Whether the event is a command that shows the team (`!whois`): the transaction's
        first trip reads the team's practitioner rows with the event's inbox check."""
        return (
            isinstance(event, RoomMessageText)
            and event.sender != self._client.user_id
            and self._dispatcher.shows_team(command_text(event.body, event.formatted_body))
        )

    async def handle(
        self, tx: Transaction, room: MatrixRoom, event: Any, matrix: MatrixGateway | None = None
    ) -> None:
        if isinstance(event, RoomMemberEvent):
            await on_member_event(
                tx,
                room_id=room.room_id,
                user_id=event.state_key,
                membership=event.membership,
                prev_membership=event.prev_membership,
                sender=event.sender,
                display_name=event.content.get("displayname"),
                reason=event.content.get("reason"),
                event_id=event.event_id,
                policy=self._policy,
                direct_rooms=self._direct_rooms,
            )
            if event.membership == "join":
                await on_joined(tx, room.room_id, event.state_key)
        elif isinstance(event, RoomMessageText) and event.sender != self._client.user_id:
            await self._handle_text(tx, room, event, matrix or self._gateway)
        elif isinstance(event, ReactionEvent) and event.sender != self._client.user_id:
            if room.encrypted and not event.decrypted:
                log.info("ignoring a reaction sent in the clear in encrypted room %s", room.room_id)
                return
            await on_reaction(
                tx,
                room_id=room.room_id,
                sender=event.sender,
                reacts_to=event.reacts_to,
                key=event.key,
                event_id=event.event_id,
                settings=self._prompts,
                prefix=self._policy.command_prefix,
            )
        elif event.sender == self._client.user_id:
            return
        elif await refuse_in_room(tx, room.room_id, event):
            return
        elif (answers := poll_answers(event.source)) is not None:
            if room.encrypted and not getattr(event, "decrypted", False):
                log.info("ignoring a poll vote sent in the clear in room %s", room.room_id)
                return
            await on_poll_response(
                tx,
                room_id=room.room_id,
                sender=event.sender,
                answers=answers,
                event_id=event.event_id,
                settings=self._prompts,
                prefix=self._policy.command_prefix,
            )

    async def poisoned(self, tx: Transaction, room: MatrixRoom, event: Any, reference: str) -> None:
        """An event that could not be handled however often it was tried: a command gets a
        reply with the reference in the log, so its sender is never left in silence."""
        if (
            isinstance(event, RoomMessageText)
            and event.sender != self._client.user_id
            and parse_invocation(event.body, self._policy.command_prefix) is not None
        ):
            reply = Reply.plain(FAILURE_MESSAGE.format(reference=reference))
            enqueue_reply(tx, event, room.room_id, 0, reply)

    async def _handle_text(
        self, tx: Transaction, room: MatrixRoom, event: RoomMessageText, matrix: MatrixGateway
    ) -> None:
        if not room.encrypted:
            if parse_invocation(
                event.body, self._policy.command_prefix
            ) is not None and await tx.sync.set_flag(
                room.room_id, UNENCRYPTED_FLAG
            ):
                self._metrics.command("unknown", "unencrypted_room")
                enqueue_reply(tx, event, room.room_id, 0, Reply.plain(UNENCRYPTED_WARNING))
            return
        if not event.decrypted:
            log.info("ignoring an unencrypted message in encrypted room %s", room.room_id)
            return
        body = command_text(event.body, event.formatted_body)
        invocation = parse_invocation(body, self._policy.command_prefix)
        if invocation is None:
            return  # chatter: nothing to answer, nothing to count
        room_kind = await self._room_kind(tx, room)
        if room_kind is RoomKind.VIEW:
            # A family member's own room: only they are answered, by their own commands.
            view = await tx.views.by_room(room.room_id)
            if view is None or view.user_id != event.sender:
                return
            registry, dispatcher = self._view_registry, self._view_dispatcher
        else:
            registry, dispatcher = self._registry, self._dispatcher
        known = registry.get(invocation.name)
        name = "unknown" if known is None else known.name  # never the user's own text
        if room_kind is not RoomKind.VIEW and not self._policy.allows(event.sender):
            self._metrics.command(name, "refused")
            refusal = "Sorry, I cannot help you: " + server_rule(event.sender, self._policy)
            enqueue_reply(tx, event, room.room_id, 0, Reply.plain(refusal + "."))
            return
        verdict = self._rate_limit.check(event.sender)
        if verdict != "ok":
            self._metrics.command(name, "rate_limited")
            if verdict == "warn":
                enqueue_reply(tx, event, room.room_id, 0, Reply.plain(SLOW_DOWN))
            return
        ctx = CommandContext(
            sender=event.sender,
            room_id=room.room_id,
            event_id=event.event_id,
            room_kind=room_kind,
            tx=tx,
            matrix=matrix,
            services=self._services,
            is_admin=self._policy.is_admin(event.sender),
            registry=registry,
        )
        await dispatcher.handle(ctx, body)
        self._metrics.command(name, ctx.outcome)
        self._receipts.append((room.room_id, event.event_id))
        for index, reply in enumerate(ctx.replies):
            enqueue_reply(tx, event, room.room_id, index, reply)

    async def _room_kind(self, tx: Transaction, room: MatrixRoom) -> RoomKind:
        if await tx.families.by_room(room.room_id) is not None:
            return RoomKind.FAMILY
        if await tx.views.by_room(room.room_id) is not None:
            return RoomKind.VIEW
        if is_direct_chat(room):
            return RoomKind.DIRECT
        return RoomKind.OTHER


def enqueue_reply(
    tx: Transaction, event: RoomMessageText, room_id: str, index: int, reply: Reply
) -> None:
    """Queue a reply to `event`; its transaction id is derived from the event, so never twice."""
    content = reply.to_content()
    content["m.relates_to"] = {"m.in_reply_to": {"event_id": event.event_id}}
    tx.outbox.enqueue_message_later(transaction_id(event.event_id, str(index)), room_id, content)
