"""Who may be on a Patchwork team, and the operator's rules the team logic follows.

`TeamPolicy` is built once by the process from its configuration and handed to everything in
`rooms` (and to commands as `ctx.services.policy`), so this package never reads the
configuration itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, timedelta, tzinfo
from typing import Literal

from rooms.references import DEFAULT_REFERENCE_PATTERN

FamilyCreators = Literal["anyone", "admins"]


def server_of(user_id: str) -> str:
    """The server name of a Matrix user id ("@sam:example.org" -> "example.org")."""
    _, _, server = user_id.partition(":")
    return server.lower()


@dataclass(frozen=True)
class TeamPolicy:
    """The operator's rules for teams: who may join, who administers, who may create rooms,
    and what their case references look like."""

    bot_user_id: str
    allowed_servers: frozenset[str]
    admins: frozenset[str]
    family_creators: FamilyCreators
    prompt_interval: timedelta
    # The operator's timezone: "every 8 weeks" keeps the local time of day across clock changes.
    timezone: tzinfo = UTC
    command_prefix: str = "!"
    """What commands start with; everything that quotes a command to people uses it."""
    reference_pattern: re.Pattern[str] = DEFAULT_REFERENCE_PATTERN
    """The operator's format for case references (`policy.reference_pattern`). It only narrows
    the safety rules of `rooms.references`, which every reference keeps whatever it says."""

    family_servers: frozenset[str] = frozenset()
    """Servers whose users may be given a family's own view (`policy.family_servers`), besides
    the allowed ones: a council may run a public-facing homeserver for residents."""
    closed_case_retention: timedelta = timedelta(days=2192)
    """How long a closed family's record is kept before it is purged (`retention.closed_case`)."""

    def __post_init__(self) -> None:
        # Server names compare case-insensitively; normalise once instead of at every check.
        for name in ("allowed_servers", "family_servers"):
            servers = frozenset(server.lower() for server in getattr(self, name))
            object.__setattr__(self, name, servers)
        if self.prompt_interval <= timedelta(0):
            raise ValueError("the prompt interval must be positive")

    def allows(self, user_id: str) -> bool:
        """Whether the user's homeserver is one whose users may be on a team."""
        server = server_of(user_id)
        return bool(server) and server in self.allowed_servers

    def is_admin(self, user_id: str) -> bool:
        return user_id in self.admins

    def may_create_families(self, user_id: str) -> bool:
        return self.family_creators == "anyone" or self.is_admin(user_id)

    def servers_text(self) -> str:
        """The allowed servers for messages, in a stable order."""
        return ", ".join(sorted(self.allowed_servers))
