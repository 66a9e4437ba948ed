"""Recording fakes for command tests: a transaction whose savepoints record commit or rollback,
and a Matrix gateway answering from a dictionary. No tests live here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from bot.working_hours import WorkingHours
from commands.framework.context import CommandContext, RoomKind, Services
from commands.framework.registry import CommandRegistry
from rooms.policy import TeamPolicy
from rooms.prompts import PromptSettings

NOW = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)

SERVICES = Services(
    policy=TeamPolicy(
        bot_user_id="@patchwork:example.org",
        allowed_servers=frozenset({"example.org"}),
        admins=frozenset(),
        family_creators="anyone",
        prompt_interval=timedelta(weeks=8),
    ),
    prompts=PromptSettings(
        interval=timedelta(weeks=8),
        remind_after=timedelta(days=3),
        lapse_after=timedelta(days=14),
        remove_on_lapse=True,
        schedule=WorkingHours.from_names(("MO", "TU", "WE", "TH", "FR"), time(9), time(17), UTC),
    ),
)
"""The operator's settings for framework tests, whose commands do not read them."""


@dataclass
class FakeTransaction:
    """Records each savepoint's outcome, and writes made through `write` inside one."""

    savepoints: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    _pending: list[list[str]] = field(default_factory=list)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        self._pending.append([])
        try:
            yield
        except BaseException:
            self._pending.pop()
            self.savepoints.append("rolled back")
            raise
        self.writes.extend(self._pending.pop())
        self.savepoints.append("released")

    def write(self, what: str) -> None:
        (self._pending[-1] if self._pending else self.writes).append(what)

    def now(self) -> datetime:
        return NOW


@dataclass
class FakeMatrix:
    display_names: dict[str, str] = field(default_factory=dict)
    members: dict[str, dict[str, str]] = field(default_factory=dict)
    direct_rooms: dict[str, str] = field(default_factory=dict)

    async def get_display_name(self, user_id: str, room_id: str | None = None) -> str | None:
        return self.display_names.get(user_id)

    async def user_exists(self, user_id: str) -> bool:
        return user_id in self.display_names

    async def room_members(self, room_id: str) -> dict[str, str]:
        return dict(self.members.get(room_id, {}))

    async def direct_room(self, user_id: str) -> str | None:
        return self.direct_rooms.get(user_id)


def make_context(
    registry: CommandRegistry,
    *,
    room_kind: RoomKind = RoomKind.FAMILY,
    sender: str = "@sam:example.org",
    is_admin: bool = False,
    tx: FakeTransaction | None = None,
) -> CommandContext:
    return CommandContext(
        sender=sender,
        room_id="!family:example.org",
        event_id="$event",
        room_kind=room_kind,
        tx=tx if tx is not None else FakeTransaction(),
        matrix=FakeMatrix({"@sam:example.org": "Sam Smith"}),
        registry=registry,
        services=SERVICES,
        is_admin=is_admin,
    )


def fake_tx(ctx: CommandContext) -> FakeTransaction:
    assert isinstance(ctx.tx, FakeTransaction)
    return ctx.tx
