"""The homeserver's own view, for tests that must not trust the bot's: Synapse's admin API.

The fault suite counts what really happened on the server (how many rooms carry a family's
name, who is a member of a room with which membership) and compares it with the bot's database.
An admin account is registered through the shared secret, as `LocalSynapse` registers users.
"""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.devserver import LocalSynapse


class AdminError(AssertionError):
    """The admin API refused a request."""


class SynapseAdmin:
    """`async with await SynapseAdmin.register(synapse) as admin:`"""

    def __init__(self, base_url: str, access_token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {access_token}"}
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    @classmethod
    async def register(cls, synapse: LocalSynapse) -> SynapseAdmin:
        localpart = f"admin-{uuid.uuid4().hex[:8]}"
        password = uuid.uuid4().hex
        await synapse.register_user(localpart, password, admin=True)
        login = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password,
        }
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.post(f"{synapse.base_url}/_matrix/client/v3/login", json=login) as response,
        ):
            body = await response.json()
            if response.status != 200:
                raise AdminError(f"admin login refused: {response.status} {body}")
        return cls(synapse.base_url, str(body["access_token"]))

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> SynapseAdmin:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _get(self, path: str, **params: str) -> Any:
        async with self._session.get(
            self.base_url + path, headers=self._headers, params=params
        ) as response:
            body = await response.json()
            if response.status != 200:
                raise AdminError(f"GET {path}: {response.status} {body}")
            return body

    async def rooms_named(self, name: str) -> list[dict[str, Any]]:
        """Every room on the server whose name is exactly `name`, whoever is still in it."""
        body = await self._get("/_synapse/admin/v1/rooms", search_term=name, limit="500")
        return [room for room in body.get("rooms", []) if room.get("name") == name]

    async def joined_rooms(self, user_id: str) -> list[str]:
        body = await self._get(f"/_synapse/admin/v1/users/{quote(user_id)}/joined_rooms")
        return [str(room_id) for room_id in body.get("joined_rooms", [])]

    async def memberships(self, room_id: str) -> dict[str, str]:
        """The room's current m.room.member state: user id -> join, invite, leave or ban."""
        body = await self._get(f"/_synapse/admin/v1/rooms/{quote(room_id)}/state")
        return {
            str(event["state_key"]): str(event["content"].get("membership"))
            for event in body.get("state", [])
            if event.get("type") == "m.room.member"
        }

    async def room_events(self, room_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        """The room's timeline, oldest first, as the server stored it (encrypted events stay
        encrypted: good for counting state events such as invites)."""
        body = await self._get(
            f"/_synapse/admin/v1/rooms/{quote(room_id)}/messages", dir="f", limit=str(limit)
        )
        return list(body.get("chunk", []))
