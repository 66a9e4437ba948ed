"""Exponential back-off with jitter for retrying a homeserver that is down or refusing us."""

from __future__ import annotations

import asyncio
import random


class Backoff:
    """Delays that double from `initial` up to `maximum`, reset after a success."""

    def __init__(self, initial: float = 1.0, maximum: float = 60.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._failures = 0

    def reset(self) -> None:
        self._failures = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * (2**self._failures))
        self._failures += 1
        # Up to 10% jitter keeps several bots from retrying in lock-step.
        return delay * (1 + random.random() / 10)  # noqa: S311 - not for security

    async def wait(self, stop: asyncio.Event) -> None:
        """Sleep for the next delay, returning early if the bot is stopping."""
        await sleep_unless_stopped(stop, self.next_delay())


async def sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; return True if `stop` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    except TimeoutError:
        return False
    return True
