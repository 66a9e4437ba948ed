"""What a command handler gets to work with: who asked, where, and narrow handles on storage
and Matrix, plus the list its replies are collected in.

Storage and Matrix are typed as Protocols so commands never import `storage`, `bot` or `nio`,
and tests can hand in recording fakes. Commands that need more of the transaction than these
protocols show declare a wider Protocol of their own and cast to it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from commands.reply import Markup, Reply, text

if TYPE_CHECKING:
    from commands.registry import CommandRegistry


class RoomKind(enum.Enum):
    """What kind of room a command was sent in; decides which commands work there."""

    DIRECT = "direct"
    FAMILY = "family"
    OTHER = "other"


class StorageTransaction(Protocol):
    """The database transaction the event is handled in."""

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """A nested block whose writes are undone if it raises (the error is re-raised)."""
        ...

    def now(self) -> datetime:
        """The current time from the injectable clock (aware, UTC)."""
        ...


class MatrixGateway(Protocol):
    """What commands may ask of Matrix; `bot` provides the real one."""

    async def get_display_name(self, user_id: str) -> str | None: ...

    async def user_exists(self, user_id: str) -> bool: ...

    async def room_members(self, room_id: str) -> dict[str, str]:
        """Membership ("join", "invite", ...) by user id."""
        ...


@dataclass
class CommandContext:
    """One command being handled; built by the event router for each message."""

    sender: str
    room_id: str
    event_id: str
    room_kind: RoomKind
    tx: StorageTransaction
    matrix: MatrixGateway
    registry: CommandRegistry
    services: Mapping[str, Any] = field(default_factory=dict)
    is_admin: bool = False
    prefix: str = "!"
    """Set by the dispatcher to the prefix it answers to, so help and errors quote it."""
    replies: list[Reply] = field(default_factory=list)

    def reply(
        self, body: Markup | str, html: str | None = None, *, mentions: Iterable[str] = ()
    ) -> Reply:
        """Queue a notice; a plain `body` without `html` is escaped for the HTML version.

        `html` is trusted as written, so it must never contain unescaped user text; prefer
        passing `Markup`. Only `mentions` (and mentions inside the Markup) are pinged.
        """
        if isinstance(body, Markup):
            if html is not None:
                raise TypeError("pass either Markup or a body with html, not both")
            markup = body
        else:
            markup = text(body) if html is None else Markup(body, html)
        reply = Reply(
            markup.body,
            markup.html,
            tuple(dict.fromkeys([*markup.mentions, *mentions])),
        )
        self.replies.append(reply)
        return reply
