"""What the event router refuses or keeps out of the database's write lock: account look-ups
happen before the transaction, users on servers outside the policy get a refusal for every
command (a two-member "direct chat" included), and a reaction sent in the clear in an encrypted
room is not taken as an answer."""

# ruff: noqa: F811 - pytest fixtures imported from the sync pipeline tests are used by name
from __future__ import annotations

from typing import Any

import pytest
from nio import Event, ReactionEvent

import bot.router
from bot.router import EventRouter
from bot.settings import prompt_settings, team_policy
from bot.sync import SyncLoop
from commands import build_registry
from storage import Database
from tests.unit.test_sync_pipeline import (  # noqa: F401 - fixtures
    ALICE,
    BOT,
    ROOM,
    FakeClient,
    _config,
    _outbox,
    _text,
    client,
    clock,
    db,
    loop,
)

OUTSIDER = "@eve:elsewhere.example"


class RecordingGateway:
    """Answers like the real gateway, and records whether a transaction was open when the
    network look-up ran."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.looked_up: list[tuple[str, bool]] = []

    async def look_up_accounts(self, user_ids: list[str]) -> RecordingGateway:
        connection: Any = self._db._connection
        self.looked_up.extend((user_id, connection.in_transaction) for user_id in user_ids)
        return self

    async def user_exists(self, user_id: str) -> bool:
        return True

    async def get_display_name(self, user_id: str, room_id: str | None = None) -> str | None:
        return None

    async def room_members(self, room_id: str) -> dict[str, str]:
        return {}

    async def direct_room(self, user_id: str) -> str | None:
        return None


def _loop(tmp_path: Any, db: Database, client: FakeClient, gateway: Any) -> SyncLoop:
    from bot.outbox import OutboxSender

    config = _config(tmp_path)
    policy = team_policy(config, BOT)
    router = EventRouter(
        client=client,  # type: ignore[arg-type]
        registry=build_registry(),
        gateway=gateway,
        policy=policy,
        prompts=prompt_settings(config),
    )
    return SyncLoop(
        client=client,  # type: ignore[arg-type]
        db=db,
        router=router,
        outbox=OutboxSender(db, client),  # type: ignore[arg-type]
        config=config,
        policy=policy,
    )


async def _active_family(db: Database) -> None:
    async with db.transaction() as tx:
        family = await tx.families.create("LDC-2026-0042", ROOM, ALICE)
        await tx.families.record_basis(family.id, "public_task", ALICE, None)
        await tx.families.record_informed(family.id, note=None)
        await tx.involvements.upsert_membership(family.id, ALICE, "join")


async def test_accounts_are_looked_up_before_the_transaction(
    tmp_path: Any, db: Database, client: FakeClient
) -> None:
    await _active_family(db)
    gateway = RecordingGateway(db)
    loop = _loop(tmp_path, db, client, gateway)
    room = client.rooms[ROOM]
    invite = _text("$i1", "!invite @bob:localhost Teacher")
    await loop.process_event(room, invite, apply_effects=True)
    assert gateway.looked_up == [("@bob:localhost", False)]
    [reply] = [item for item in await _outbox(db) if item.kind == "message"]
    assert "I have invited" in reply.payload["content"]["body"]


async def test_a_user_from_another_server_is_refused_in_a_direct_chat(
    loop: SyncLoop, db: Database, client: FakeClient
) -> None:
    room = client.rooms[ROOM]
    room.users.pop(ALICE)
    room.add_member(OUTSIDER, "Eve", None)
    event = _text("$o1", "!contact set org Elsewhere Ltd")
    event.sender = OUTSIDER
    await loop.process_event(room, event, apply_effects=True)
    [reply] = await _outbox(db)
    assert "cannot help you" in reply.payload["content"]["body"]
    assert "elsewhere.example" in reply.payload["content"]["body"]
    async with db.read() as tx:
        assert await tx.practitioners.get(OUTSIDER) is None
    chatter = _text("$o2", "hello")
    chatter.sender = OUTSIDER
    await loop.process_event(room, chatter, apply_effects=True)
    assert len(await _outbox(db)) == 1


async def test_a_reaction_in_the_clear_in_an_encrypted_room_is_ignored(
    loop: SyncLoop, client: FakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    async def on_reaction(tx: Any, **kwargs: Any) -> bool:
        seen.append(kwargs["key"])
        return True

    monkeypatch.setattr(bot.router, "on_reaction", on_reaction)
    room = client.rooms[ROOM]
    await loop.process_event(room, _reaction("$r1", "❌"), apply_effects=True)
    assert seen == []
    encrypted = _reaction("$r2", "✅")
    encrypted.decrypted = True
    await loop.process_event(room, encrypted, apply_effects=True)
    assert seen == ["✅"]


def _reaction(event_id: str, key: str) -> ReactionEvent:
    event = Event.parse_event(
        {
            "type": "m.reaction",
            "event_id": event_id,
            "sender": ALICE,
            "origin_server_ts": 1,
            "room_id": ROOM,
            "content": {
                "m.relates_to": {"rel_type": "m.annotation", "event_id": "$prompt", "key": key}
            },
        }
    )
    assert isinstance(event, ReactionEvent)
    return event


async def test_a_sender_flooding_commands_is_asked_once_to_slow_down(
    loop: SyncLoop, db: Database, client: FakeClient
) -> None:
    from bot.ratelimit import BURST, SLOW_DOWN

    room = client.rooms[ROOM]
    for index in range(BURST + 5):
        await loop.process_event(room, _text(f"$f{index}", "!help"), apply_effects=True)
    bodies = [item.payload["content"]["body"] for item in await _outbox(db)]
    assert len(bodies) == BURST + 1
    assert bodies[-1] == SLOW_DOWN
    assert all("What you can do" in body for body in bodies[:BURST])
    async with db.read() as tx:
        assert await tx.sync.is_processed(f"$f{BURST + 4}")


def test_the_limit_refills_with_time() -> None:
    from bot.ratelimit import SenderRateLimit

    now = [0.0]
    limit = SenderRateLimit(burst=2, per_second=1.0, clock=lambda: now[0])
    assert [limit.check(ALICE) for _ in range(4)] == ["ok", "ok", "warn", "drop"]
    assert limit.check("@other:localhost") == "ok"
    now[0] += 1.0
    assert limit.check(ALICE) == "ok"
