"""Shared set-up for the team and rooms tests: a real SQLite database in tmp_path with a
movable clock, a recording Matrix gateway, the real registry and dispatcher, and helpers that
build families through the same functions the bot calls. No tests live here."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.clock import ManualClock
from bot.working_hours import WorkingHours
from commands import build_registry
from commands.framework.context import CommandContext, RoomKind, Services
from commands.framework.dispatcher import Dispatcher
from markup import Reply
from rooms.family_room import on_room_created, request_family_room
from rooms.membership import on_member_event
from rooms.policy import TeamPolicy
from rooms.prompts import PromptSettings
from storage import AuditEntry, Database, Family, OutboxItem
from tests.unit import test_commands_support as commands_support

START = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
BOT = "@patchwork:council.example"
LEAD = "@lead:council.example"
TEACHER = "@teacher:school.example"
NURSE = "@nurse:nhs.example"
WORKER = "@worker:council.example"
ADMIN = "@admin:council.example"
OUTSIDER = "@eve:elsewhere.example"
REF = "LDC-2026-0042"
ROOM = "!team42:council.example"
DM = "!dm:council.example"

LONDON = ZoneInfo("Europe/London")
OFFICE = WorkingHours.from_names(("MO", "TU", "WE", "TH", "FR"), time(9), time(17), LONDON)
SETTINGS = PromptSettings(
    interval=timedelta(weeks=8),
    remind_after=timedelta(days=3),
    lapse_after=timedelta(days=14),
    remove_on_lapse=True,
    schedule=OFFICE,
)
# Who may be on a team in these tests.
POLICY = TeamPolicy(
    bot_user_id=BOT,
    allowed_servers=frozenset({"council.example", "school.example", "NHS.example"}),
    admins=frozenset({ADMIN}),
    family_creators="anyone",
    prompt_interval=timedelta(weeks=8),
)

NAMES = {
    LEAD: "Lee Lead",
    TEACHER: "Tara Teacher",
    NURSE: "Nina Nurse",
    WORKER: "Wes Worker",
    ADMIN: "Ada Admin",
    OUTSIDER: "Eve Outsider",
}

_event_ids = itertools.count(1)


def new_event_id() -> str:
    return f"$event{next(_event_ids)}"


@dataclass
class FakeMatrix(commands_support.FakeMatrix):
    """The framework's fake gateway, where every practitioner of these tests exists."""

    display_names: dict[str, str] = field(default_factory=lambda: dict(NAMES))

    async def direct_room(self, user_id: str) -> str | None:
        return direct_chat_of(user_id)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def db(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "patchwork.sqlite3", clock=clock)
    yield database
    await database.close()


async def run(
    db: Database,
    body: str,
    *,
    sender: str,
    room_id: str = ROOM,
    room_kind: RoomKind = RoomKind.FAMILY,
    matrix: FakeMatrix | None = None,
    policy: TeamPolicy = POLICY,
    event_id: str | None = None,
) -> list[Reply]:
    """Handle one message as the router does: in a transaction, through the real dispatcher."""
    registry = build_registry()
    async with db.transaction() as tx:
        ctx = CommandContext(
            sender=sender,
            room_id=room_id,
            event_id=event_id or new_event_id(),
            room_kind=room_kind,
            tx=tx,
            matrix=matrix or FakeMatrix(),
            registry=registry,
            services=Services(policy=policy, prompts=SETTINGS),
            is_admin=sender in policy.admins,
        )
        assert await Dispatcher(registry, prefix=policy.command_prefix).handle(ctx, body)
    return ctx.replies


async def say(db: Database, body: str, **kwargs: Any) -> Reply:
    """Exactly one reply expected."""
    replies = await run(db, body, **kwargs)
    assert len(replies) == 1, replies
    return replies[0]


def direct_chat_of(user_id: str) -> str | None:
    """Everyone has a direct chat with the bot in these tests, unless a test says otherwise."""
    return "!dm-" + user_id.removeprefix("@")


async def member(
    db: Database,
    user_id: str,
    membership: str,
    *,
    sender: str | None = None,
    event_id: str | None = None,
    display_name: str | None = None,
    prev: str | None = None,
    room_id: str = ROOM,
    policy: TeamPolicy = POLICY,
    direct_rooms: Callable[[str], str | None] | None = direct_chat_of,
) -> str:
    """Feed one m.room.member event to the roster mirror; returns its event id."""
    event_id = event_id or new_event_id()
    async with db.transaction() as tx:
        await on_member_event(
            tx,
            room_id=room_id,
            user_id=user_id,
            membership=membership,
            prev_membership=prev,
            sender=sender or user_id,
            display_name=display_name if display_name is not None else NAMES.get(user_id),
            reason=None,
            event_id=event_id,
            policy=policy,
            direct_rooms=direct_rooms,
        )
    return event_id


async def pending_family(db: Database, reference: str = REF, room_id: str = ROOM) -> Family:
    """A family as `!family new` and the room creation leave it: pending, lead invited."""
    async with db.transaction() as tx:
        family = await request_family_room(tx, reference, LEAD, POLICY, new_event_id())
        return await on_room_created(tx, family.id, room_id, POLICY)


async def active_family(db: Database, *, joined: tuple[str, ...] = ()) -> Family:
    """A family with its governance recorded, the lead joined, and `joined` members in."""
    family = await pending_family(db)
    await member(db, LEAD, "join")
    async with db.transaction() as tx:
        await tx.families.record_informed(family.id, note="leaflet")
        family = await tx.families.record_basis(
            family.id, "public_task", LEAD, None
        )
    assert family.status == "active"
    for user_id in joined:
        await member(db, user_id, "invite", sender=LEAD)
        await member(db, user_id, "join")
    return family


async def outbox(db: Database) -> list[OutboxItem]:
    async with db.read() as tx:
        rows = await tx.fetchall("SELECT * FROM outbox ORDER BY id")
    return [OutboxItem.from_row(row) for row in rows]


async def audits(db: Database, action: str | None = None) -> list[AuditEntry]:
    """Oldest first."""
    async with db.read() as tx:
        entries = list(reversed(await tx.audit.recent(None, 1000)))
    return [entry for entry in entries if action is None or entry.action == action]


def notices(items: list[OutboxItem]) -> list[str]:
    """The plain bodies of queued messages."""
    return [item.payload["content"]["body"] for item in items if item.kind == "message"]


async def snapshot(db: Database) -> tuple[int, int, list[Any]]:
    """Outbox size, audit size and every roster row: what a refused command must not change."""
    async with db.read() as tx:
        rows = await tx.fetchall("SELECT * FROM involvement ORDER BY id")
        families = await tx.fetchall("SELECT * FROM family ORDER BY id")
        people = await tx.fetchall("SELECT * FROM practitioner ORDER BY user_id")
    return (
        len(await outbox(db)),
        len(await audits(db)),
        [tuple(row) for row in [*rows, *families, *people]],
    )
