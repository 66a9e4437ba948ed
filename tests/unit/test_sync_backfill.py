"""After a restart most rooms' timelines come back `limited` although nothing was missed: the
sync loop pages back only when the timeline does not start at an event it has processed."""

# ruff: noqa: F811 - pytest fixtures imported from the sync pipeline tests are used by name
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from bot.sync import SyncLoop
from storage import Database
from tests.unit.test_sync_pipeline import (  # noqa: F401 - fixtures
    ROOM,
    FakeClient,
    _text,
    client,
    clock,
    db,
    loop,
)


def limited_sync(*events: Any) -> Any:
    """A sync response with one joined room whose timeline is limited."""
    timeline = SimpleNamespace(events=list(events), limited=True, prev_batch="before")
    return SimpleNamespace(
        to_device_events=[],
        next_batch="next",
        rooms=SimpleNamespace(invite={}, join={ROOM: SimpleNamespace(timeline=timeline)}),
    )


async def test_a_limited_timeline_that_starts_at_a_known_event_is_not_paged_back(
    loop: SyncLoop, db: Database, client: FakeClient
) -> None:
    paged: list[str] = []

    async def room_messages(room_id: str, **_: Any) -> None:
        paged.append(room_id)

    client.room_messages = room_messages  # type: ignore[attr-defined]
    async with db.transaction() as tx:
        await tx.sync.mark_processed("$seen", ROOM)
    await loop.process(limited_sync(_text("$seen", "hello"), _text("$new", "hi")), initial=False)
    assert paged == [], "nothing was missed before an event already processed"
    await loop.process(limited_sync(_text("$unseen", "hello")), initial=False)
    assert paged == [ROOM], "a timeline that starts at a new event may follow a gap"
