"""Triggers the still-involved sweep (`rooms.prompts.sweep`): once at start-up and then every
`prompts.sweep_every`.

APScheduler only decides when. Its job holds no state and lives in memory (rebuilt at every
start); everything a sweep needs is in SQLite, so a restart loses nothing and a sweep missed
while the bot was down happens as soon as it is back. The job just wakes a loop that runs one
sweep at a time, so a long sweep (thousands of prompts after an outage) is never overlapped by
the next trigger, and stopping the bot cancels at most one batch, whose transaction rolls back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)

class SweepScheduler:
    """Runs `sweep` once when `ready` is set, then whenever APScheduler's interval fires."""

    def __init__(
        self,
        sweep: Callable[[], Awaitable[object]],
        every: timedelta,
        *,
        name: str = "prompt sweep",
    ) -> None:
        if every <= timedelta(0):
            raise ValueError("the sweep interval must be positive")
        self._name = name
        self._sweep = sweep
        self._every = every
        self._due = asyncio.Event()
        self.sweeps = 0

    async def _trigger(self) -> None:
        """The APScheduler job: a coroutine, so it runs on the event loop, not in a thread."""
        self._due.set()

    async def run(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
        """Wait for `ready` (the first sync, so answers given while the bot was down are
        counted before anyone is reminded or removed), then sweep until `stop`."""
        if not await _first(ready, stop):
            return
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            self._trigger,
            IntervalTrigger(seconds=self._every.total_seconds(), timezone=UTC),
            id=self._name,
            next_run_time=datetime.now(UTC),
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        scheduler.start()
        try:
            while await _first(self._due, stop):
                self._due.clear()
                try:
                    await self._sweep()
                except Exception:
                    log.exception("the %s failed; the next one will try again", self._name)
                self.sweeps += 1
        finally:
            scheduler.shutdown(wait=False)


async def _first(wanted: asyncio.Event, stop: asyncio.Event) -> bool:
    """Wait for `wanted` or `stop`; True if `wanted` came and `stop` has not."""
    wanted_task = asyncio.ensure_future(wanted.wait())
    stop_task = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({wanted_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        wanted_task.cancel()
        stop_task.cancel()
    return wanted.is_set() and not stop.is_set()
