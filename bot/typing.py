"""Showing "Patchwork is typing…" while a slow answer is prepared (a family room being created,
an export being built), so the person who asked sees that something is happening.

Typing notices are best effort: one that cannot be sent is logged and forgotten, and each
carries a timeout, so a notice whose "stopped" never arrives expires by itself. Nothing here
may run inside a database transaction (each notice is a request to the homeserver).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from nio import AsyncClient

log = logging.getLogger(__name__)

TYPING_TIMEOUT = timedelta(seconds=15)
SLOW_COMMANDS = frozenset({"family new", "export", "mydata"})
"""Commands whose answer takes long enough to be worth a typing notice (qualified names)."""


async def set_typing(
    client: AsyncClient, room_id: str, typing: bool, lasting: timedelta = TYPING_TIMEOUT
) -> None:
    """Start (or stop) the bot's typing notice in a room; failures are only logged."""
    try:
        await client.room_typing(
            room_id, typing_state=typing, timeout=int(lasting.total_seconds() * 1000)
        )
    except Exception:
        log.debug("typing notice in %s not sent", room_id, exc_info=True)


@asynccontextmanager
async def typing_while(client: AsyncClient, room_id: str) -> AsyncIterator[None]:
    """`async with typing_while(client, room_id): ...` shows typing while the block runs."""
    await set_typing(client, room_id, True)
    try:
        yield
    finally:
        await set_typing(client, room_id, False)


def is_slow(name: str, arguments: str) -> bool:
    """Whether an invocation (its command name and the rest of the line) is a slow command."""
    words = [name, *arguments.split(None, 1)[:1]]
    return name in SLOW_COMMANDS or " ".join(words).lower() in SLOW_COMMANDS
