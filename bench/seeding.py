"""Seeding a council on a local Synapse, not timed: family rooms the bot is in, and the
bot's database rows that match them, so its start-up reconciliation finds nothing to change.

Rooms are created by a seeding administrator (the family's lead), who puts the bot and the
room's practitioners in with Synapse's admin join API; the families, practitioners and
involvements are written into the bot's database with plain SQL while the bot is stopped.
Creating a room costs Synapse about a second of CPU, so rooms are added in steps and reused.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import aiohttp
from nio import RoomCreateResponse, RoomPreset, RoomVisibility

from devkit.practitioner import Practitioner
from storage.codec import encode_time

MEGOLM = "m.megolm.v1.aes-sha2"
CONCURRENT_CREATES = 4


@dataclass
class Council:
    """What has been seeded so far: rooms in order, and who is in each."""

    rooms: list[str] = field(default_factory=list)
    members: dict[str, list[str]] = field(default_factory=dict)


async def admin_join(session: aiohttp.ClientSession, base_url: str, token: str, room_id: str,
                     user_id: str) -> None:
    """Synapse's admin join: invites (as the room's admin) and joins `user_id` in one call."""
    async with session.post(
        f"{base_url}/_synapse/admin/v1/join/{quote(room_id)}",
        headers={"Authorization": f"Bearer {token}"},
        json={"user_id": user_id},
    ) as response:
        if response.status != 200:
            raise RuntimeError(f"admin join of {user_id} to {room_id}: {await response.text()}")


async def add_rooms(
    council: Council, lead: Practitioner, bot_user: str, members_of: Sequence[Sequence[str]],
) -> list[str]:
    """One encrypted family room per entry of `members_of` (the practitioners besides the
    lead), with the bot and them joined; returns the new room ids."""
    base_url = lead.client.homeserver
    token = lead.client.access_token
    gate = asyncio.Semaphore(CONCURRENT_CREATES)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def one(members: Sequence[str]) -> str:
            async with gate:
                response = await lead.client.room_create(
                    visibility=RoomVisibility.private,
                    preset=RoomPreset.private_chat,
                    initial_state=[{"type": "m.room.encryption", "state_key": "",
                                    "content": {"algorithm": MEGOLM}}],
                    # The bot runs the room, as in a room it created itself.
                    power_level_override={"users": {bot_user: 100}},
                )
                if not isinstance(response, RoomCreateResponse):
                    raise RuntimeError(f"could not create a room: {response}")  # noqa: TRY004
                room_id = str(response.room_id)
                for user_id in (bot_user, *members):
                    await admin_join(session, base_url, token, room_id, user_id)
                council.members[room_id] = [lead.user_id, *members]
                return room_id

        created = await asyncio.gather(*(one(members) for members in members_of))
    council.rooms.extend(created)
    return list(created)


def write_families(database: Path, council: Council, rooms: Sequence[str], lead: str,
                   bot_user: str, now: datetime | None = None) -> None:
    """The bot's rows for `rooms` (open families, lead first), written while it is stopped."""
    stamp = encode_time(now or datetime.now(UTC))
    with sqlite3.connect(database) as conn:
        start = conn.execute("SELECT COALESCE(MAX(id), 0) FROM family").fetchone()[0]
        for offset, room_id in enumerate(rooms, start=1):
            family_id = start + offset
            conn.execute(
                "INSERT INTO family (id, reference, room_id, status, lawful_basis,"
                " basis_recorded_by, basis_recorded_at, family_informed_at, created_by,"
                " created_at, updated_at) VALUES (?, ?, ?, 'active', 'public_task', ?, ?, ?,"
                " ?, ?, ?)",
                (family_id, f"LDC-2026-{family_id:05d}", room_id, lead, stamp, stamp, bot_user,
                 stamp, stamp),
            )
            for index, user_id in enumerate(council.members[room_id]):
                conn.execute(
                    "INSERT OR IGNORE INTO practitioner (user_id, display_name, phone,"
                    " phone_shown, share_contact, created_at, updated_at)"
                    " VALUES (?, ?, '+441632960000', '01632 960000', 1, ?, ?)",
                    (user_id, user_id[1:].split(":")[0], stamp, stamp),
                )
                conn.execute(
                    "INSERT INTO involvement (family_id, user_id, membership, status, role,"
                    " is_lead, started_at, updated_at) VALUES (?, ?, 'join', 'active',"
                    " 'Social worker', ?, ?, ?)",
                    (family_id, user_id, int(index == 0), stamp, stamp),
                )


def add_lead_families(database: Path, lead: str, count: int, bot_user: str) -> None:
    """`count` more families the lead leads, in rooms that exist only in the database: what
    `!cases` lists for an administrator who leads hundreds of families."""
    stamp = encode_time(datetime.now(UTC))
    with sqlite3.connect(database) as conn:
        start = conn.execute("SELECT COALESCE(MAX(id), 0) FROM family").fetchone()[0]
        for family_id in range(start + 1, start + count + 1):
            conn.execute(
                "INSERT INTO family (id, reference, room_id, status, lawful_basis, created_by,"
                " created_at, updated_at, family_informed_at) VALUES (?, ?, ?, 'active',"
                " 'public_task', ?, ?, ?, ?)",
                (family_id, f"LDC-2026-{family_id:05d}", f"!cases{family_id}:localhost",
                 bot_user, stamp, stamp, stamp),
            )
            conn.execute(
                "INSERT INTO involvement (family_id, user_id, membership, status, role, is_lead,"
                " started_at, updated_at) VALUES (?, ?, 'join', 'active', 'Team manager', 1,"
                " ?, ?)",
                (family_id, lead, stamp, stamp),
            )


def make_due(database: Path, count: int, when: datetime) -> int:
    """Give `count` extra involvements, of practitioners who exist only in the database, a
    prompt due at `when`, in the seeded rooms (what a sweep after an outage finds)."""
    stamp = encode_time(when)
    with sqlite3.connect(database) as conn:
        families = [row[0] for row in conn.execute(
            "SELECT id FROM family WHERE room_id NOT LIKE '!cases%' ORDER BY id")]
        rows = [(f"@due{n}:localhost", families[n % len(families)]) for n in range(count)]
        conn.executemany(
            "INSERT OR IGNORE INTO practitioner (user_id, display_name, created_at, updated_at)"
            " VALUES (?, ?, ?, ?)", [(user, user[1:6], stamp, stamp) for user, _ in rows])
        conn.executemany(
            "INSERT INTO involvement (family_id, user_id, membership, status, started_at,"
            " next_prompt_at, updated_at) VALUES (?, ?, 'join', 'active', ?, ?, ?)",
            [(family, user, stamp, stamp, stamp) for user, family in rows])
    return len(rows)
