"""Concurrent lanes for the outbox: work keyed by lane (a room, or one stand-alone item) runs
one at a time per lane and in at most `limit` lanes at once, so one slow lane (an invite to a
homeserver that does not answer) holds back nothing but itself."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Lanes:
    """`start(key, work)` runs `work` unless its lane is busy or all lanes are; `on_done` is
    called whenever a lane ends, so the caller can look for more work."""

    def __init__(self, limit: int, on_done: Callable[[], None]) -> None:
        self._limit = limit
        self._on_done = on_done
        self._running: dict[str, asyncio.Task[None]] = {}
        self.crash: BaseException | None = None
        """A lane ended by something other than an Exception (the process is meant to die
        there, as in the fault suite): the caller re-raises it."""

    @property
    def busy(self) -> list[str]:
        """The keys of the lanes running now."""
        return list(self._running)

    @property
    def free(self) -> int:
        return max(0, self._limit - len(self._running))

    @property
    def full(self) -> bool:
        return self.free == 0

    def start(
        self, key: str, work: Coroutine[Any, Any, None], *, spare: int = 0
    ) -> asyncio.Task[None] | None:
        """Run `work` in lane `key`, unless that lane is busy or fewer than `spare` + 1 lanes
        are free (`spare` lanes are kept for other work); the task, or None."""
        if key in self._running or len(self._running) >= self._limit - spare:
            work.close()
            return None
        task = asyncio.create_task(self._run(key, work))
        self._running[key] = task
        return task

    async def _run(self, key: str, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception:
            log.exception("outbox lane failed; its items are tried again")
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.crash = exc
            raise
        finally:
            self._running.pop(key, None)
            self._on_done()

    async def finish(self, grace: float) -> None:
        """On stop, work in flight gets `grace` seconds to end; the rest is cancelled (an
        outbox send cut short is retried after the restart, its transaction id making the
        resend harmless)."""
        tasks = list(self._running.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
