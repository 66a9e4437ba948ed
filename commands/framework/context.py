"""What a command handler gets to work with: who asked, where, the storage transaction the
event is handled in, the Matrix gateway, the operator's settings, and the list its replies are
collected in. Every field is typed, so mypy checks each command's use of them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from markup import Markup, Reply, text
from rooms.gateway import MatrixGateway
from rooms.policy import TeamPolicy
from rooms.prompts import PromptSettings
from storage import Transaction

if TYPE_CHECKING:
    from commands.framework.registry import CommandRegistry


class RoomKind(enum.Enum):
    """What kind of room a command was sent in; decides which commands work there."""

    DIRECT = "direct"
    FAMILY = "family"
    VIEW = "family view"
    """A family member's own room with the bot (`rooms.family_view`)."""
    OTHER = "other"


@dataclass(frozen=True)
class Services:
    """The operator's settings the commands act on, built once by the process."""

    policy: TeamPolicy
    prompts: PromptSettings


@dataclass
class CommandContext:
    """One command being handled; built by the event router for each message."""

    sender: str
    room_id: str
    event_id: str
    room_kind: RoomKind
    tx: Transaction
    matrix: MatrixGateway
    registry: CommandRegistry
    services: Services
    is_admin: bool = False
    prefix: str = "!"
    """Set by the dispatcher to the prefix it answers to, so help and errors quote it."""
    replies: list[Reply] = field(default_factory=list)
    outcome: str = "ok"
    """Set by the dispatcher: ok, user_error or failed (counted in the operator's metrics)."""

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
