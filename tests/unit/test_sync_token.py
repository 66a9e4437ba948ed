"""The sync token commits with the last event of its response: one transaction for a response
holding one command, and never a token stored before every event of its response is."""

# ruff: noqa: F811 - pytest fixtures imported from the sync pipeline tests are used by name
from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import SimpleNamespace
from typing import Any

import pytest

import bot.sync
from bot.sync import MAX_EVENT_ATTEMPTS, EventRetry, SyncLoop
from storage import Database, Transaction
from tests.unit.test_sync_failures import _failing
from tests.unit.test_sync_pipeline import (  # noqa: F401 - fixtures
    ROOM,
    FakeClient,
    _megolm,
    _outbox,
    _text,
    client,
    clock,
    db,
    loop,
)


def sync(token: str, *events: Any) -> Any:
    """A sync response with one joined room holding `events`."""
    timeline = SimpleNamespace(events=list(events), limited=False, prev_batch=None)
    return SimpleNamespace(
        to_device_events=[],
        next_batch=token,
        rooms=SimpleNamespace(invite={}, join={ROOM: SimpleNamespace(timeline=timeline)}),
    )


@pytest.fixture
def write_transactions(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many write transactions (each one COMMIT with its fsync) were opened."""
    opened = [0]
    real: Callable[[], AbstractAsyncContextManager[Transaction]] = db.transaction

    def transaction() -> AbstractAsyncContextManager[Transaction]:
        opened[0] += 1
        return real()

    monkeypatch.setattr(db, "transaction", transaction)
    return opened


async def _token(db: Database) -> str | None:
    async with db.read() as tx:
        return await tx.sync.get_next_batch()


async def _processed(db: Database, *event_ids: str) -> list[bool]:
    async with db.read() as tx:
        return [await tx.sync.is_processed(event_id) for event_id in event_ids]


async def test_a_response_with_one_command_costs_one_transaction(
    loop: SyncLoop, db: Database, write_transactions: list[int]
) -> None:
    await loop.process(sync("s1", _text("$c1", "!help")), initial=False)
    assert write_transactions[0] == 1, "the token commits with the command"
    assert await _token(db) == "s1"
    assert await _processed(db, "$c1") == [True]
    assert len(await _outbox(db)) == 1


async def test_each_event_keeps_its_own_transaction_and_the_last_carries_the_token(
    loop: SyncLoop, db: Database, write_transactions: list[int]
) -> None:
    await loop.process(sync("s1", _text("$a", "!help"), _text("$b", "hello")), initial=False)
    assert write_transactions[0] == 2
    assert await _token(db) == "s1"
    assert await _processed(db, "$a", "$b") == [True, True]


async def test_a_failing_last_event_does_not_advance_the_token(
    loop: SyncLoop, db: Database, client: FakeClient
) -> None:
    async with db.transaction() as tx:
        await tx.sync.set_next_batch("s0")
    response = sync("s1", _text("$first", "hello"), _text("$last", "!help"))
    real_handle = loop._router.handle
    failures = [1]

    async def handle(tx: Transaction, room: Any, event: Any, matrix: Any = None) -> None:
        if event.event_id == "$last" and failures[0]:
            failures[0] -= 1
            raise OSError("disk I/O error")
        await real_handle(tx, room, event, matrix)

    loop._router.handle = handle  # type: ignore[method-assign]
    with pytest.raises(EventRetry):
        await loop.process(response, initial=False)
    assert await _token(db) == "s0", "the token stays behind the event that failed"
    assert await _processed(db, "$first", "$last") == [True, False]
    assert await _outbox(db) == []

    await loop.process(response, initial=False)  # the replay
    assert await _token(db) == "s1"
    assert await _processed(db, "$first", "$last") == [True, True]
    assert len(await _outbox(db)) == 1, "answered once"


async def test_a_poisoned_last_event_still_lets_the_token_advance(
    loop: SyncLoop, db: Database
) -> None:
    _failing(loop, 1000, RuntimeError("bug"))
    response = sync("s1", _text("$poison", "!help"))
    for _ in range(MAX_EVENT_ATTEMPTS - 1):
        with pytest.raises(EventRetry):
            await loop.process(response, initial=False)
        assert await _token(db) is None
    await loop.process(response, initial=False)
    assert await _token(db) == "s1"
    [reply] = await _outbox(db)
    assert "reference" in reply.payload["content"]["body"]


@pytest.mark.parametrize("events", [[], [_megolm("$parked", "S1")]], ids=["empty", "parked"])
async def test_a_response_with_nothing_to_apply_still_stores_its_token(
    loop: SyncLoop, db: Database, events: list[Any]
) -> None:
    await loop.process(sync("s1", *events), initial=False)
    assert await _token(db) == "s1"


async def test_events_replayed_after_a_crash_are_answered_once(
    loop: SyncLoop, db: Database
) -> None:
    """A crash after the first event committed and before the last: the whole response comes
    again with the old token, and the inbox makes the first a no-op."""
    first, last = _text("$one", "!help"), _text("$two", "!help whois")
    await loop.process_event(loop._client.rooms[ROOM], first, apply_effects=True)
    assert await _token(db) is None
    await loop.process(sync("s1", first, last), initial=False)
    assert await _token(db) == "s1"
    replies = await _outbox(db)
    assert sorted(item.payload["content"]["m.relates_to"]["m.in_reply_to"]["event_id"]
                  for item in replies) == ["$one", "$two"]


async def test_a_start_with_no_token_records_what_it_sees_in_one_transaction(
    loop: SyncLoop, db: Database, write_transactions: list[int]
) -> None:
    # A new install, or a lost database, at thousands of rooms: its first sync shows tens of
    # thousands of old events; none is acted on, and one transaction each took minutes.
    events = [_text(f"$old{n}", "!help") for n in range(500)]
    await loop.process(sync("s1", *events), initial=True)
    assert write_transactions[0] == 1
    assert await _token(db) == "s1"
    assert await _processed(db, "$old0", "$old499") == [True, True]
    assert await _outbox(db) == [], "nothing from before the start is answered"
    # Seen again (a replay), the same events are neither answered nor recorded twice.
    await loop.process(sync("s2", *events[:2]), initial=False)
    assert await _outbox(db) == []


async def test_read_receipts_follow_the_answer_without_holding_up_the_sync_loop(
    loop: SyncLoop, client: FakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, str]] = []
    homeserver_answers = asyncio.Event()

    async def update_receipt_marker(room_id: str, event_id: str) -> None:
        sent.append((room_id, event_id))
        await homeserver_answers.wait()  # a slow homeserver

    client.update_receipt_marker = update_receipt_marker  # type: ignore[attr-defined]
    monkeypatch.setattr(bot.sync, "RECEIPT_DELAY_SECONDS", 0.05)
    async with asyncio.timeout(1):
        await loop.process(sync("s1", _text("$c1", "!help"), _text("$c2", "!help")),
                           initial=False)
    assert sent == [], "the answer goes first"
    await asyncio.sleep(0.2)
    assert sent == [(ROOM, "$c2")], "one receipt per room, for the last command"
    homeserver_answers.set()


async def test_the_sync_leaves_out_what_would_wake_it_for_nothing(
    loop: SyncLoop, client: FakeClient
) -> None:
    asked: list[dict[str, Any]] = []

    async def sync(**kwargs: Any) -> str:
        asked.append(kwargs["sync_filter"])
        return "a response"

    client.sync = sync  # type: ignore[attr-defined]
    stop = asyncio.Event()
    assert await loop._sync_unless_stopped(None, full_state=True, stop=stop) == "a response"  # noqa: SLF001
    await loop._sync_unless_stopped("s1", full_state=False, stop=stop)  # noqa: SLF001
    # Typing notices, read receipts (its own too) and presence: the bot uses none of them.
    assert [f["room"]["timeline"]["limit"] for f in asked] == [50, 50]
    assert all(f["room"]["ephemeral"] == f["presence"] == {"not_types": ["*"]} for f in asked)


async def test_a_reply_is_woken_for_as_its_event_commits_not_after_the_response(
    loop: SyncLoop, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sender is not running here, so nothing is handed over: it is woken instead.
    started: list[str] = []
    seen_at_wake: list[list[str]] = []
    real = loop.process_event

    async def process_event(room: Any, event: Any, **kwargs: Any) -> bool:
        started.append(event.event_id)
        return await real(room, event, **kwargs)

    monkeypatch.setattr(loop._outbox, "wake", lambda: seen_at_wake.append(started[:]))
    monkeypatch.setattr(loop, "process_event", process_event)
    await loop.process(sync("s1", _text("$a", "!help"), _text("$b", "!help")), initial=False)
    assert seen_at_wake[0] == ["$a"], "woken before the second command was handled"
    assert len(await _outbox(db)) == 2
