"""Key verification requests to the bot: every one is cancelled at once, never accepted.

A person comparing emoji with a bot proves nothing (the bot would "confirm" whatever it is
shown), and a request left unanswered leaves Element saying "Waiting for Patchwork to accept..."
for ever. So each request, whether it arrives in a room (`m.key.verification.request` as a
message, or an `m.key.verification.start` without one) or to-device, gets an
`m.key.verification.cancel` with a reason code straight away, and the practitioner gets a
short explanation in their direct chat with the bot: the bot's device is signed by its own
cross-signing identity, and the council's IT team can read that identity's fingerprint with
`patchwork fingerprint` to check it out of band.

In-room requests are handled inside their event's transaction (the cancel and the
explanation go through the outbox, exactly once). To-device requests are not room events: the
cancel is sent directly, after the sync response is read, and the explanation is queued with
a transaction id derived from the request, so a replayed response explains nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from nio import AsyncClient, KeyVerificationStart, RoomMessageUnknown, UnknownEvent
from nio.event_builders import ToDeviceMessage

from bot.config import Config
from bot.crosssigning import CrossSigningError, CrossSigningKeys
from bot.matrix import CROSS_SIGNING_FILE
from markup import Markup, code, paragraph
from rooms.actions import post_notice
from rooms.prompts import DirectRooms
from storage import Database, Transaction, transaction_id

log = logging.getLogger(__name__)

REQUEST = "m.key.verification.request"
START = "m.key.verification.start"
CANCEL = "m.key.verification.cancel"
CANCEL_CODE = "m.user"
"""The spec's code for "the user cancelled": the bot itself declines, every time."""
CANCEL_REASON = (
    "Patchwork does not take part in interactive verification. Its session is signed by its "
    "own cross-signing identity; ask your council's IT team to confirm that identity's "
    "fingerprint."
)
FINGERPRINT_COMMAND = "patchwork fingerprint"


def explanation() -> Markup:
    """What the practitioner reads in the direct chat after their request was cancelled."""
    return paragraph(
        "I cancelled the verification request: comparing emoji with a bot proves nothing, so I "
        "never accept one. My session is signed by Patchwork's own cross-signing identity, so "
        "your messages to me are already encrypted for the right device. If you want to check "
        "that identity, ask your council's IT team: they can read its fingerprint with "
        + code(FINGERPRINT_COMMAND)
        + " and compare it with you by phone or in person."
    )


def cancel_content(transaction: str | None = None, request_event: str | None = None) -> dict[
    str, Any
]:
    """An `m.key.verification.cancel`: to-device with its `transaction_id`, in a room as a
    reference to the request event."""
    content: dict[str, Any] = {"code": CANCEL_CODE, "reason": CANCEL_REASON}
    if transaction is not None:
        content["transaction_id"] = transaction
    if request_event is not None:
        content["m.relates_to"] = {"rel_type": "m.reference", "event_id": request_event}
    return content


def room_request_id(event: Any) -> str | None:
    """The request a room event opens (its own id, or for a start the request it names);
    None if the event is no verification request."""
    if isinstance(event, RoomMessageUnknown) and event.msgtype == REQUEST:
        return str(event.event_id)
    if isinstance(event, UnknownEvent) and event.type == START:
        relates = event.source.get("content", {}).get("m.relates_to") or {}
        target = relates.get("event_id") if isinstance(relates, dict) else None
        return str(target) if isinstance(target, str) and target else str(event.event_id)
    return None


async def refuse_in_room(tx: Transaction, room_id: str, event: Any) -> bool:
    """Cancel an in-room request and explain why, in that room (Element sends these in the
    direct chat); True if the event was a verification request."""
    request = room_request_id(event)
    if request is None:
        return False
    log.info("cancelling a verification request from %s in %s", event.sender, room_id)
    await tx.outbox.enqueue_message(
        transaction_id("verification", request, "cancel"),
        room_id,
        cancel_content(request_event=request),
        event_type=CANCEL,
    )
    await post_notice(tx, room_id, explanation(), "verification", request, "explained")
    return True


def _to_device_request(event: Any) -> tuple[str, str, str] | None:
    """(sender, device, transaction id) of a to-device request or start, else None."""
    if isinstance(event, KeyVerificationStart):
        return event.sender, event.from_device, event.transaction_id
    source = getattr(event, "source", None)
    if not isinstance(source, dict) or source.get("type") != REQUEST:
        return None
    content = source.get("content") or {}
    sender, device, transaction = (
        source.get("sender"), content.get("from_device"), content.get("transaction_id")
    )
    if isinstance(sender, str) and isinstance(device, str) and isinstance(transaction, str):
        return sender, device, transaction
    return None


class VerificationRefuser:
    """Cancels the to-device verification requests of a sync response and explains in the
    requester's direct chat with the bot, if there is one."""

    def __init__(self, client: AsyncClient, db: Database, direct_rooms: DirectRooms) -> None:
        self._client = client
        self._db = db
        self._direct_rooms = direct_rooms

    async def refuse_to_device(self, events: Iterable[Any]) -> int:
        """Answer every request among `events`; returns how many were cancelled. A cancel that
        cannot be sent is logged: the requester's client times the request out by itself."""
        refused = 0
        for event in events:
            request = _to_device_request(event)
            if request is None or request[0] == self._client.user_id:
                continue
            sender, device, transaction = request
            log.info("cancelling a to-device verification request from %s", sender)
            if self._client.olm is not None:
                # nio keeps a SAS for a start it saw; it is never to be accepted.
                self._client.olm.key_verifications.pop(transaction, None)
            try:
                await self._client.to_device(
                    ToDeviceMessage(CANCEL, sender, device, cancel_content(transaction))
                )
            except Exception:
                log.warning("could not cancel verification %s", transaction, exc_info=True)
            refused += 1
            room_id = self._direct_rooms(sender)
            if room_id is None:
                continue
            async with self._db.transaction() as tx:
                await post_notice(
                    tx, room_id, explanation(), "verification", sender, transaction, "explained"
                )
        return refused


def fingerprint_text(config: Config) -> str:
    """What `patchwork fingerprint` prints: the bot's master cross-signing key, the identity
    practitioners' clients see the bot's device signed by, for checking out of band."""
    path = config.storage.path / CROSS_SIGNING_FILE
    try:
        keys = CrossSigningKeys.load(path)
    except FileNotFoundError:
        raise CrossSigningError(
            f"no cross-signing keys in {path} yet: start the bot once to create them"
        ) from None
    master = keys.master.public_key
    grouped = " ".join(master[index : index + 4] for index in range(0, len(master), 4))
    return (
        f"Patchwork {config.bot.user_id} (device {config.bot.device_id})\n"
        f"Master cross-signing key: {master}\n"
        f"Read aloud in groups:     {grouped}\n"
    )
