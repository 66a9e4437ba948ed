"""A clock that tests move from outside a running bot process, through a file."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

log = logging.getLogger(__name__)

CLOCK_FILE_ENV = "PATCHWORK_CLOCK_FILE"
"""Names a file holding the time the bot should believe it is. Only `devkit.testbot` reads it:
the installed `patchwork` command has no way to move its clock."""


class FileClock:
    """For tests only: a clock that a test moves by writing an ISO 8601 instant to a file.

    The time is the file's instant plus the real time elapsed since the file was last written,
    so the bot's time keeps flowing between moves (retry delays still pass) and carries on
    across a restart. `load` re-reads the file only when it changed; `watch` polls it in a
    thread, so reading the clock itself never touches the disk.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._instant: datetime | None = None
        self._written_at = 0.0

    def __call__(self) -> datetime:
        if self._instant is None:
            raise RuntimeError(f"the clock file {self._path} has not been read yet")
        return self._instant + timedelta(seconds=max(0.0, time.time() - self._written_at))

    def load(self) -> bool:
        """Blocking file access: run it in a thread. True if the time was moved."""
        status = self._path.stat()
        stamp = (status.st_mtime_ns, status.st_size)
        if stamp == self._stamp:
            return False
        instant = datetime.fromisoformat(self._path.read_text(encoding="utf-8").strip())
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError(f"the clock file {self._path} holds a time without a UTC offset")
        self._instant = instant.astimezone(UTC)
        self._written_at = status.st_mtime_ns / 1e9
        self._stamp = stamp
        return True

    async def watch(self, stop: asyncio.Event, every: float = 0.1) -> None:
        """Pick up moves until `stop`; a half-written or unreadable file keeps the old time."""
        while not stop.is_set():
            try:
                if await asyncio.to_thread(self.load):
                    log.info("test clock moved to %s", self().isoformat())
            except (OSError, ValueError) as exc:
                log.warning("test clock file not read: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
