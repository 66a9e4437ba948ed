"""Answers first: background sends (a sweep's prompts, reminders, lapse notices) keep out of
the way of the answers people are waiting for.

Each background send costs the homeserver as much as an answer does (an event to store, and
often the room's keys to share first), so while a sweep's thousands of prompts go out every
command queued behind them at the homeserver: measured at 100 rooms, `!whois` took 1.4 times
its idle p95 while prompts went at 11 a second. So a background send starts only once no
answer has been on its way for `quiet` seconds. A steady stream of commands cannot stop the
background for good: after `patience` seconds of waiting, one background lane goes anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable

QUIET_SECONDS = 0.25
"""How long after the last answer was sent background sends wait."""
PATIENCE_SECONDS = 5.0
"""The longest background sends wait in a row before one goes whatever else is happening."""


class Foreground:
    """`begin` and `end` bracket each answer's sending; `ask` says whether background work
    may start now, or how long it should wait before asking again."""

    def __init__(
        self,
        *,
        quiet: float = QUIET_SECONDS,
        patience: float = PATIENCE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._quiet = quiet
        self._patience = patience
        self._clock = clock
        self._answering = 0
        self._last = -float("inf")
        self._held_since: float | None = None

    def begin(self) -> None:
        if not self.busy:
            self._held_since = None  # background could have gone in the quiet before this
        self._answering += 1
        self._last = self._clock()

    def end(self) -> None:
        self._answering -= 1
        self._last = self._clock()

    @property
    def busy(self) -> bool:
        """An answer is on its way, or was sent less than `quiet` seconds ago."""
        return bool(self._answering) or self._clock() - self._last < self._quiet

    def ask(self) -> float:
        """0 if background work may start now (a lane that has waited `patience` seconds is
        let go, and the next waits again); otherwise the seconds to wait before asking again."""
        now = self._clock()
        if not self.busy:
            self._held_since = None
            return 0.0
        if self._held_since is None:
            self._held_since = now
        waited = now - self._held_since
        if waited >= self._patience:
            self._held_since = now
            return 0.0
        quiet_in = self._quiet - (0.0 if self._answering else now - self._last)
        return min(quiet_in, self._patience - waited)
