"""Mirroring at a council's scale: membership changes across many family rooms, and how long
the bot's roster takes to match them, against how long the homeserver takes to deliver them.

Visitors (accounts with no client running) are put into `rooms` family rooms with Synapse's
admin join API and then leave them, `2 * rooms * visitors` membership changes in all, sent as
fast as the homeserver takes them. The baseline is a plain nio client of the lead's (no
encryption, syncing only those rooms): the time until it has seen every change. The bot's
figure is the time until its roster (read from its database) holds every change: each visitor
joined, then left, in each room.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    RoomMemberEvent,
    SyncResponse,
    UploadFilterResponse,
)

from bench.seeding import admin_join
from bot.devserver import LocalSynapse
from devkit.practitioner import Practitioner

CONCURRENT_CHANGES = 8
POLL_SECONDS = 0.05
TIMEOUT_SECONDS = 600


async def _visitor(synapse: LocalSynapse, session: aiohttp.ClientSession) -> tuple[str, str]:
    """A new account and an access token for it (no client, no device keys)."""
    password = uuid.uuid4().hex
    user_id = await synapse.register_user(f"visitor-{uuid.uuid4().hex[:6]}", password)
    async with session.post(f"{synapse.base_url}/_matrix/client/v3/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
        "password": password,
    }) as response:
        body = await response.json()
        if response.status != 200:
            raise RuntimeError(f"visitor login: {body}")
    return user_id, str(body["access_token"])


async def _leave(session: aiohttp.ClientSession, base_url: str, token: str,
                 room_id: str) -> None:
    async with session.post(f"{base_url}/_matrix/client/v3/rooms/{quote(room_id)}/leave",
                            headers={"Authorization": f"Bearer {token}"}, json={}) as response:
        if response.status != 200:
            raise RuntimeError(f"leave {room_id}: {await response.text()}")


def _roster(database: Path, visitors: Sequence[str], membership: str) -> int:
    """How many of the visitors' involvements the bot records with this membership."""
    marks = ",".join("?" * len(visitors))
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        row = conn.execute(
            f"SELECT COUNT(*) FROM involvement WHERE membership = ? AND user_id IN ({marks})",  # noqa: S608
            (membership, *visitors),
        ).fetchone()
    return int(row[0])


async def _until(ready: Callable[[], Awaitable[bool]], started: float) -> float:
    """Seconds from `started` until `ready()` holds (checked every POLL_SECONDS)."""
    while not await ready():  # noqa: ASYNC110 (the roster is another process's database)
        await asyncio.sleep(POLL_SECONDS)
    return time.perf_counter() - started


class Watcher:
    """The homeserver's delivery: a plain client in the rooms, recording each membership."""

    def __init__(self, lead: Practitioner, rooms: Sequence[str]) -> None:
        self.client = AsyncClient(lead.client.homeserver, lead.user_id,
                                  config=AsyncClientConfig(encryption_enabled=False))
        self.password = lead.password
        self.rooms = list(rooms)
        self.seen: dict[tuple[str, str], str] = {}

    async def run(self) -> None:
        await self.client.login(self.password, device_name="mirroring baseline")
        # Uploaded, not in each request's URL (a hundred room ids make a long URL).
        uploaded = await self.client.upload_filter(
            room={"rooms": self.rooms, "timeline": {"limit": 100}},
            presence={"not_types": ["*"]})
        if not isinstance(uploaded, UploadFilterResponse):
            raise RuntimeError(f"could not upload the filter: {uploaded}")  # noqa: TRY004
        while True:
            response = await self.client.sync(timeout=30000, sync_filter=uploaded.filter_id)
            if not isinstance(response, SyncResponse):
                await asyncio.sleep(0.1)
                continue
            for room_id, info in response.rooms.join.items():
                for event in [*info.state, *info.timeline.events]:
                    if isinstance(event, RoomMemberEvent):
                        self.seen[(room_id, event.state_key)] = event.membership


async def measure(synapse: LocalSynapse, lead: Practitioner, database: Path,
                  rooms: Sequence[str], visitors: int) -> dict[str, Any]:
    """Join every visitor to every room, then have each leave; time each phase (each must
    end within TIMEOUT_SECONDS)."""
    watcher = Watcher(lead, rooms)
    watching = asyncio.create_task(watcher.run())
    progress: dict[str, Any] = {"phase": "setting up", "visitors": []}
    try:
        return await _measure(synapse, lead, database, rooms, visitors, watcher, progress)
    except (TimeoutError, ExceptionGroup) as failure:
        # Kept as a figure, not a crash: what failed, how far each side got, and whether the
        # baseline's client died.
        phase, people = progress["phase"], progress["visitors"]
        mirrored = await asyncio.to_thread(_roster, database, people, phase) if people else 0
        errors = failure.exceptions if isinstance(failure, ExceptionGroup) else [failure]
        return {
            "complete": False, "phase": phase, "changes": len(rooms) * len(people),
            "error": repr(errors[0]), "errors": len(errors),
            "homeserver_delivered": sum(user_id in people and membership == phase
                                        for (_, user_id), membership in watcher.seen.items()),
            "roster_matched": mirrored,
            "baseline_failed": repr(watching.exception()) if watching.done() else None,
        }
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await watcher.client.close()


async def _measure(synapse: LocalSynapse, lead: Practitioner, database: Path,
                   rooms: Sequence[str], visitors: int, watcher: Watcher,
                   progress: dict[str, Any]) -> dict[str, Any]:
    base_url, token = synapse.base_url, str(lead.client.access_token)
    gate = asyncio.Semaphore(CONCURRENT_CHANGES)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        people = [await _visitor(synapse, session) for _ in range(visitors)]
        user_ids = progress["visitors"] = [user_id for user_id, _ in people]
        wanted = len(rooms) * visitors

        async def phase(membership: str, change: Callable[[str, str, str], Awaitable[None]]
                        ) -> dict[str, float]:
            async def one(room_id: str, user_id: str, user_token: str) -> float:
                async with gate:
                    await change(room_id, user_id, user_token)
                return time.perf_counter()

            async def delivered() -> bool:
                return all(watcher.seen.get((room_id, user_id)) == membership
                           for room_id in rooms for user_id in user_ids)

            async def mirrored() -> bool:
                count = await asyncio.to_thread(_roster, database, user_ids, membership)
                return count == wanted

            progress["phase"] = membership
            started = time.perf_counter()
            # A change the homeserver refuses ends the phase at once, not at the timeout.
            async with asyncio.timeout(TIMEOUT_SECONDS), asyncio.TaskGroup() as group:
                changes = [group.create_task(one(room_id, user_id, user_token))
                           for room_id in rooms for user_id, user_token in people]
                delivering = group.create_task(_until(delivered, started))
                mirroring = group.create_task(_until(mirrored, started))
            delivery, roster = delivering.result(), mirroring.result()
            sent = max(change.result() for change in changes)
            return {"changes": wanted, "sent_s": sent - started,
                    "homeserver_delivered_s": delivery, "roster_matched_s": roster}

        joins = await phase("join", lambda room_id, user_id, _: admin_join(
            session, base_url, token, room_id, user_id))
        leaves = await phase("leave", lambda room_id, _, user_token: _leave(
            session, base_url, user_token, room_id))
    delivered = joins["homeserver_delivered_s"] + leaves["homeserver_delivered_s"]
    mirrored = joins["roster_matched_s"] + leaves["roster_matched_s"]
    return {"rooms": len(rooms), "changes": 2 * wanted, "joins": joins, "leaves": leaves,
            "homeserver_delivered_s": delivered, "roster_matched_s": mirrored,
            "behind_homeserver_s": mirrored - delivered, "ratio": mirrored / delivered}
