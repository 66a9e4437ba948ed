"""The sync pipeline over a real database with a recording fake of the nio client: events are
handled once, undecryptable ones are parked, retried when the key arrives, and their senders
told once after the grace period."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nio import EncryptionError, Event, MatrixRoom, MegolmEvent, RoomMessageText

from bench.dbtime import DatabaseTime
from bot.clock import ManualClock
from bot.config import Config, parse_config
from bot.outbox import OutboxSender
from bot.router import EventRouter
from bot.settings import prompt_settings, team_policy
from bot.sync import SyncLoop
from commands import build_registry
from storage import Database

BOT = "@patchwork:localhost"
ALICE = "@alice:localhost"
ROOM = "!room:localhost"


def _config(tmp_path: Path) -> Config:
    return parse_config(
        {
            "homeserver": {"url": "http://127.0.0.1:9"},
            "bot": {"user_id": BOT, "password": "x", "undecryptable_grace": "2m"},
            "storage": {"path": str(tmp_path), "pickle_key": "0123456789abcdef"},
            "policy": {"allowed_servers": ["localhost"]},
        }
    )


class FakeClient:
    """Just the parts of nio's AsyncClient the sync loop touches, recording calls."""

    def __init__(self) -> None:
        self.user_id = BOT
        room = MatrixRoom(ROOM, BOT, encrypted=True)
        room.add_member(BOT, "Patchwork", None)
        room.add_member(ALICE, "Alice", None)
        self.rooms = {ROOM: room}
        self.keys: dict[str, Event] = {}
        self.key_requests: list[str] = []

    def decrypt_event(self, event: MegolmEvent) -> Event:
        if event.session_id not in self.keys:
            raise EncryptionError("missing session")
        return self.keys[event.session_id]

    async def request_room_key(self, event: MegolmEvent) -> None:
        self.key_requests.append(event.session_id)


def _text(event_id: str, body: str) -> RoomMessageText:
    event = Event.parse_event(
        {
            "type": "m.room.message",
            "event_id": event_id,
            "sender": ALICE,
            "origin_server_ts": 1,
            "room_id": ROOM,
            "content": {"msgtype": "m.text", "body": body},
        }
    )
    assert isinstance(event, RoomMessageText)
    event.decrypted = True
    return event


def _megolm(event_id: str, session_id: str) -> MegolmEvent:
    event = MegolmEvent.from_dict(
        {
            "type": "m.room.encrypted",
            "event_id": event_id,
            "sender": ALICE,
            "origin_server_ts": 1,
            "content": {
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": "AAAA",
                "sender_key": "KEY",
                "session_id": session_id,
                "device_id": "DEV",
            },
        }
    )
    assert isinstance(event, MegolmEvent)
    return event


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))


@pytest.fixture
async def db(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "patchwork.db", clock=clock)
    yield database
    await database.close()


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


@pytest.fixture
def loop(tmp_path: Path, db: Database, client: FakeClient) -> SyncLoop:
    return _loop(tmp_path, db, client)


def _loop(tmp_path: Path, db: Database, client: FakeClient) -> SyncLoop:
    config = _config(tmp_path)
    fake: Any = client
    policy = team_policy(config, BOT)
    router = EventRouter(
        client=fake,
        registry=build_registry(),
        gateway=None,
        policy=policy,
        prompts=prompt_settings(config),
    )
    return SyncLoop(
        client=fake,
        db=db,
        router=router,
        outbox=OutboxSender(db, fake),
        config=config,
        policy=policy,
    )


async def _outbox(db: Database) -> list[Any]:
    async with db.read() as tx:
        return await tx.outbox.due(100)


async def test_an_event_seen_twice_is_answered_once(loop: SyncLoop, db: Database,
                                                    client: FakeClient) -> None:
    room = client.rooms[ROOM]
    await loop.process_event(room, _text("$1", "!help"), apply_effects=True)
    await loop.process_event(room, _text("$1", "!help"), apply_effects=True)

    items = await _outbox(db)
    assert len(items) == 1
    assert items[0].payload["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": "$1"}}


async def test_chatter_is_recorded_as_processed_without_a_reply(
    loop: SyncLoop, db: Database, client: FakeClient
) -> None:
    await loop.process_event(client.rooms[ROOM], _text("$2", "hello team"), apply_effects=True)
    assert await _outbox(db) == []
    async with db.read() as tx:
        assert await tx.sync.is_processed("$2")


async def test_undecryptable_event_is_handled_when_its_key_arrives(
    loop: SyncLoop, db: Database, client: FakeClient
) -> None:
    await loop.process_event(client.rooms[ROOM], _megolm("$3", "S1"), apply_effects=True)
    assert client.key_requests == ["S1"]
    await loop.retry_undecrypted()
    assert await _outbox(db) == [], "no key yet: nothing to answer"

    client.keys["S1"] = _text("$3", "!help")
    await loop.retry_undecrypted()
    await loop.retry_undecrypted()

    items = await _outbox(db)
    assert len(items) == 1
    assert "!help" in items[0].payload["content"]["body"]
    async with db.read() as tx:
        assert await tx.sync.undecrypted() == []
        assert await tx.sync.is_processed("$3")


async def test_parked_events_are_looked_for_only_while_there_may_be_some(
    tmp_path: Path, loop: SyncLoop, db: Database, client: FakeClient
) -> None:
    """Every sync response retries the parked events; with none parked that costs no trip to
    the database (it would delay the answer the response's command has just queued)."""
    meter = DatabaseTime()
    with meter.counting():
        await loop.retry_undecrypted()  # at start they may be waiting from before a restart
        first = meter.calls
        await loop.retry_undecrypted()
    assert (first, meter.calls) == (1, 1), "the second pass, knowing none parked, made a trip"

    await loop.process_event(client.rooms[ROOM], _megolm("$5", "S5"), apply_effects=True)
    restarted = _loop(tmp_path, db, client)  # a new process finds it in the database
    client.keys["S5"] = _text("$5", "!help")
    await loop.retry_undecrypted()
    await restarted.retry_undecrypted()
    assert len(await _outbox(db)) == 1, "the parked command was answered, and once"
    with meter.counting():
        await loop.retry_undecrypted()  # the last pass found one: look once more
        await loop.retry_undecrypted()
    assert meter.calls == 2, "after a pass that finds none, no trip"


async def test_sender_is_told_once_when_the_key_never_arrives(
    loop: SyncLoop, db: Database, client: FakeClient, clock: ManualClock
) -> None:
    await loop.process_event(client.rooms[ROOM], _megolm("$4", "S2"), apply_effects=True)
    clock.advance(timedelta(minutes=1))
    await loop.retry_undecrypted()
    assert await _outbox(db) == [], "still inside the grace period"

    clock.advance(timedelta(minutes=2))
    await loop.retry_undecrypted()
    await loop.retry_undecrypted()

    items = await _outbox(db)
    assert len(items) == 1
    content = items[0].payload["content"]
    assert "could not read" in content["body"]
    assert content["m.mentions"] == {"user_ids": [ALICE]}
