"""The narrow interface through which the team logic and the commands reach Matrix.

`bot` provides the real one over the live nio client; unit tests hand in a recording fake.
"""

from __future__ import annotations

from typing import Protocol


class MatrixGateway(Protocol):
    """What commands and rooms may ask of Matrix."""

    async def get_display_name(self, user_id: str, room_id: str | None = None) -> str | None:
        """Their Matrix display name, as `room_id` shows it if given (else any room)."""
        ...

    async def user_exists(self, user_id: str) -> bool | None:
        """True or False as the user's homeserver said; None if it did not answer in time."""
        ...

    async def direct_room(self, user_id: str) -> str | None:
        """The encrypted direct chat the bot shares with `user_id`, if there is one."""
        ...

    async def room_members(self, room_id: str) -> dict[str, str]:
        """Membership ("join", "invite", ...) by user id."""
        ...
