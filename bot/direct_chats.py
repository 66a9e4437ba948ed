"""What counts as a direct chat with the bot, read from nio's synced room state: the one
definition the event router and the prompt sweep both use."""

from __future__ import annotations

from nio import AsyncClient, MatrixRoom

from rooms.prompts import DirectRooms


def is_direct_chat(room: MatrixRoom) -> bool:
    """A room of at most two members: the bot and (at most) one other person."""
    return bool(room.member_count <= 2)


def has_joined(client: AsyncClient, room_id: str, user_id: str) -> bool:
    """Whether the bot's synced state shows `user_id` joined to the room (not just invited)."""
    room = client.rooms.get(room_id)
    return room is not None and user_id in room.users and user_id not in room.invited_users


def direct_rooms_of(client: AsyncClient) -> DirectRooms:
    """Finds an encrypted direct chat in which the bot and `user_id` have both joined; used to
    tell administrators about a family left without a lead."""

    def find(user_id: str) -> str | None:
        for room_id, room in client.rooms.items():
            if (
                room.encrypted
                and is_direct_chat(room)
                and not room.invited_users
                and set(room.users) == {client.user_id, user_id}
            ):
                return str(room_id)
        return None

    return find
