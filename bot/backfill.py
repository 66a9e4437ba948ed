"""Paging back through a gap: after a restart (or a long outage) a room's timeline comes back
`limited`, and the events before it that were never processed are fetched with /messages, back
to the last event the inbox holds, so nothing said while the bot was away goes unanswered.

A limited timeline that starts at an event already processed has no gap (events are processed
in order): most rooms after a restart are like that, and are not paged back at all. Rooms that
are paged back go several at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nio import (
    AsyncClient,
    MessageDirection,
    RoomMemberEvent,
    RoomMessagesResponse,
    SyncResponse,
)

from bot.housekeeping import HISTORY_RETENTION
from storage import Database

log = logging.getLogger(__name__)

BACKFILL_PAGE_SIZE = 100
BACKFILL_MAX_PAGES = 50
BACKFILL_CONCURRENCY = 8
"""Rooms paged back at once after a gap (a restart): enough to hide the round trips, few
enough not to flood the homeserver."""


async def missed_events(
    client: AsyncClient, db: Database, response: SyncResponse
) -> dict[str, list[Any]]:
    """For each room whose timeline is limited after a real gap, the events before it that
    were never processed, paged back for several rooms at once (after a restart there is
    one page-back per busy room, and one after another they delay the first answer)."""
    gaps = [
        (room_id, info.timeline.prev_batch)
        for room_id, info in response.rooms.join.items()
        if info.timeline.limited
        and room_id in client.rooms
        and not await _overlaps(db, list(info.timeline.events))
    ]
    limit = asyncio.Semaphore(BACKFILL_CONCURRENCY)

    async def one(room_id: str, prev_batch: str | None) -> list[Any]:
        async with limit:
            return await page_back(client, db, room_id, prev_batch)

    found = await asyncio.gather(*(one(room_id, token) for room_id, token in gaps))
    return {room_id: events for (room_id, _), events in zip(gaps, found, strict=True)}


async def _overlaps(db: Database, events: list[Any]) -> bool:
    """Whether a limited timeline starts at an event already processed: then nothing
    before it was missed (events are processed in order) and there is no gap to page
    back through. After a restart most rooms' timelines are like that."""
    first = next((getattr(event, "event_id", None) for event in events), None)
    if not first:
        return False
    async with db.read(snapshot=False) as tx:
        return await tx.sync.is_processed(first)


async def page_back(
    client: AsyncClient, db: Database, room_id: str, prev_batch: str | None
) -> list[Any]:
    """Page back through a gap in a limited timeline to the last event we processed."""
    collected: list[Any] = []
    token = prev_batch
    for _ in range(BACKFILL_MAX_PAGES):
        if not token:
            break
        response = await client.room_messages(
            room_id, start=token, direction=MessageDirection.back, limit=BACKFILL_PAGE_SIZE
        )
        if not isinstance(response, RoomMessagesResponse):
            log.warning("could not page back in %s: %s", room_id, response)
            break
        reached_known = False
        async with db.read(snapshot=False) as tx:
            horizon = (tx.now() - HISTORY_RETENTION).timestamp() * 1000
            for event in response.chunk:
                event_id = getattr(event, "event_id", None)
                if event_id and await tx.sync.is_processed(event_id):
                    reached_known = True
                    break
                if getattr(event, "server_timestamp", horizon) < horizon:
                    # Older than the inbox remembers: it may have been handled already.
                    reached_known = True
                    break
                collected.append(event)
                if _is_own_join(client, event):
                    reached_known = True
                    break
        if reached_known or not response.chunk or response.end == token:
            break
        token = response.end
    else:
        log.warning("gap in %s is longer than %d pages; older events were skipped",
                    room_id, BACKFILL_MAX_PAGES)
    log.info("paged back %d events in %s", len(collected), room_id)
    collected.reverse()
    return collected


def _is_own_join(client: AsyncClient, event: Any) -> bool:
    return (
        isinstance(event, RoomMemberEvent)
        and event.state_key == client.user_id
        and event.membership == "join"
    )
