"""How much of a piece of work is database time: the time SQLite itself spends executing the
statements, in aiosqlite's thread, as opposed to Python building what is written.

Bench instrumentation only: it wraps aiosqlite's one entry point into its worker thread
(`Connection._execute`), so every trip to it, from every connection, is counted while active
(`calls`; a trip may carry several statements).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiosqlite.core


class DatabaseTime:
    """`with DatabaseTime() as spent: ...`, then `spent.seconds` and `spent.calls`."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    @contextlib.contextmanager
    def counting(self) -> Iterator[DatabaseTime]:
        original = aiosqlite.core.Connection._execute
        meter = self

        async def _execute(conn: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            def timed(*inner: Any, **named: Any) -> Any:
                started = time.perf_counter()
                try:
                    return fn(*inner, **named)
                finally:
                    meter.seconds += time.perf_counter() - started
                    meter.calls += 1

            return await original(conn, timed, *args, **kwargs)

        aiosqlite.core.Connection._execute = _execute  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            aiosqlite.core.Connection._execute = original  # type: ignore[method-assign]
