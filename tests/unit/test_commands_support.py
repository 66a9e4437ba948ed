"""Recording fakes for command tests: a transaction whose savepoints record commit or rollback,
and a Matrix gateway answering from a dictionary. No tests live here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from commands.context import CommandContext, RoomKind
from commands.registry import CommandRegistry

NOW = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)


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

    async def get_display_name(self, user_id: str) -> str | None:
        return self.display_names.get(user_id)

    async def user_exists(self, user_id: str) -> bool:
        return user_id in self.display_names

    async def room_members(self, room_id: str) -> dict[str, str]:
        return dict(self.members.get(room_id, {}))


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
        is_admin=is_admin,
    )


def fake_tx(ctx: CommandContext) -> FakeTransaction:
    assert isinstance(ctx.tx, FakeTransaction)
    return ctx.tx
