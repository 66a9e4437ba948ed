"""A per-sender limit on commands, so one person (or a script in their name) cannot flood the
bot: a token bucket per sender, kept in memory (a restart forgets it, which only ever lets more
through). The first command over the limit is answered once with a request to slow down; the
rest are ignored until the bucket refills."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

BURST = 20
PER_MINUTE = 60
"""Twenty commands at once, then one a second: far beyond what a person types. The defaults of
`bot.command_burst` and `bot.commands_per_minute`."""

SLOW_DOWN = (
    "You are sending commands faster than I can answer them, so I am ignoring some. "
    "Please wait a minute, then send the one you need again."
)


@dataclass
class _Bucket:
    tokens: float
    updated: float
    warned: bool = False


class SenderRateLimit:
    def __init__(
        self,
        burst: int = BURST,
        per_second: float = PER_MINUTE / 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = burst
        self._rate = per_second
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def check(self, sender: str) -> str:
        """"ok" to answer, "warn" to answer with `SLOW_DOWN` once, "drop" to ignore."""
        now = self._clock()
        bucket = self._buckets.setdefault(sender, _Bucket(float(self._burst), now))
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            bucket.warned = False
            return "ok"
        if bucket.warned:
            return "drop"
        bucket.warned = True
        return "warn"
