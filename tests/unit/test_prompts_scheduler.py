"""The sweep's trigger and the test clock: APScheduler sweeps once at start-up (after the first
sync) and then on its interval, one sweep at a time, and stops cleanly; the file clock moves
when its file changes and keeps flowing in between."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.scheduler import SweepScheduler
from devkit.clock import FileClock


async def test_sweeps_start_after_ready_and_repeat_one_at_a_time() -> None:
    running = 0
    overlapped = False
    started: list[float] = []

    async def slow_sweep() -> None:
        nonlocal running, overlapped
        running += 1
        overlapped = overlapped or running > 1
        started.append(time.monotonic())
        await asyncio.sleep(0.15)  # longer than the interval
        running -= 1

    scheduler = SweepScheduler(slow_sweep, timedelta(seconds=0.05))
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop, ready))
    await asyncio.sleep(0.2)
    assert started == [], "no sweep before the first sync"
    ready.set()
    await asyncio.sleep(0.05)
    assert len(started) == 1, "the start-up sweep runs at once"
    await asyncio.sleep(0.6)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert not overlapped
    assert 3 <= scheduler.sweeps <= 6


async def test_a_failing_sweep_does_not_stop_the_next() -> None:
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("database locked")

    scheduler = SweepScheduler(failing, timedelta(seconds=0.05))
    stop, ready = asyncio.Event(), asyncio.Event()
    ready.set()
    task = asyncio.create_task(scheduler.run(stop, ready))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert calls >= 3


async def test_stop_before_ready_returns_without_sweeping() -> None:
    async def never() -> None:
        raise AssertionError("must not sweep")

    scheduler = SweepScheduler(never, timedelta(seconds=1))
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(scheduler.run(stop, asyncio.Event()), 1)
    assert scheduler.sweeps == 0


def _write(path: Path, instant: datetime) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(instant.isoformat(), encoding="utf-8")
    os.replace(tmp, path)


def test_file_clock_is_the_instant_plus_the_time_since_it_was_written(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    first = datetime(2026, 8, 3, 8, 0, tzinfo=UTC)
    _write(path, first)
    clock = FileClock(path)
    assert clock.load()
    assert not clock.load(), "unchanged file: nothing to do"
    now = clock()
    assert first <= now < first + timedelta(seconds=5)
    time.sleep(0.05)
    assert clock() > now, "time flows between moves"
    later = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
    _write(path, later)
    assert clock.load()
    assert later <= clock() < later + timedelta(seconds=5)


def test_file_clock_refuses_a_time_without_an_offset(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    path.write_text("2026-08-03T08:00:00", encoding="utf-8")
    clock = FileClock(path)
    with pytest.raises(ValueError, match="UTC offset"):
        clock.load()
    with pytest.raises(RuntimeError, match="not been read"):
        clock()


async def test_file_clock_watch_picks_up_moves(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    _write(path, datetime(2026, 8, 3, 8, 0, tzinfo=UTC))
    clock = FileClock(path)
    await asyncio.to_thread(clock.load)
    stop = asyncio.Event()
    watcher = asyncio.create_task(clock.watch(stop, every=0.02))
    _write(path, datetime(2027, 1, 1, tzinfo=UTC))
    for _ in range(100):
        if clock().year == 2027:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(watcher, 1)
    assert clock().year == 2027
