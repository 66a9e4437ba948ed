"""`python -m devkit.testbot run --config FILE`: the `patchwork` command as the integration
tests run it, with what tests need and production must never have: a clock moved through the
file named by PATCHWORK_CLOCK_FILE, and PATCHWORK_FAULT=<point>[:<n>], which ends the process
abruptly (as SIGKILL would) the n-th time (default 1) it reaches one of `bot.faults.POINTS`.
Not part of the installed bot."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from bot.app import run_bot
from bot.cli import main
from bot.config import Config
from bot.faults import NO_FAULTS, POINTS, Faults
from devkit.clock import CLOCK_FILE_ENV, FileClock

log = logging.getLogger(__name__)

FAULT_ENV = "PATCHWORK_FAULT"


class CrashAt:
    """Ends the process at the n-th time `point` is reached, with no clean-up at all."""

    def __init__(self, spec: str) -> None:
        point, _, count = spec.partition(":")
        if point not in POINTS:
            raise SystemExit(f"{FAULT_ENV}: unknown point {point!r}; known: {', '.join(POINTS)}")
        self.point = point
        self.remaining = int(count or "1")

    def reached(self, point: str) -> None:
        if point != self.point:
            return
        self.remaining -= 1
        if self.remaining <= 0:
            log.warning("fault injected at %s: ending the process now", point)
            logging.shutdown()
            os._exit(137)


def faults_from_environment() -> Faults:
    spec = os.environ.get(FAULT_ENV)
    return NO_FAULTS if not spec else CrashAt(spec)


async def run_for_tests(config: Config, stop: asyncio.Event) -> None:
    faults = faults_from_environment()
    clock_path = os.environ.get(CLOCK_FILE_ENV)
    if not clock_path:
        await run_bot(config, stop=stop, faults=faults)
        return
    log.warning("%s is set: the time comes from %s (tests only)", CLOCK_FILE_ENV, clock_path)
    clock = FileClock(Path(clock_path))
    await asyncio.to_thread(clock.load)
    watcher = asyncio.create_task(clock.watch(stop), name="test clock")
    try:
        await run_bot(config, stop=stop, clock=clock, faults=faults)
    finally:
        stop.set()
        await watcher


if __name__ == "__main__":
    sys.exit(main(runner=run_for_tests))
