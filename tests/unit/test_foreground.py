"""Answers first: background sends wait while answers are on their way, but never for good."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.clock import ManualClock
from bot.foreground import Foreground
from bot.outbox import OutboxSender
from storage import Database
from storage.outbox import BACKGROUND
from tests.unit.test_outbox_lanes import IDLE, HangingClient, _queue, _until


class Ticks:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_background_waits_for_an_answer_in_flight_then_for_quiet() -> None:
    ticks = Ticks()
    foreground = Foreground(quiet=0.25, patience=5.0, clock=ticks)
    assert foreground.ask() == 0.0, "nothing answered yet"
    foreground.begin()
    assert foreground.busy
    assert foreground.ask() == pytest.approx(0.25)
    ticks.now += 1.0
    assert foreground.ask() == pytest.approx(0.25), "still on its way: the whole quiet to come"
    foreground.end()
    ticks.now += 0.1
    assert foreground.ask() == pytest.approx(0.15)
    ticks.now += 0.15
    assert not foreground.busy
    assert foreground.ask() == 0.0


def test_a_steady_stream_of_answers_lets_one_background_lane_go_every_patience() -> None:
    ticks = Ticks()
    foreground = Foreground(quiet=0.25, patience=5.0, clock=ticks)
    let_go: list[float] = []
    for _ in range(160):  # an answer every 1/8 s for 20 s
        foreground.begin()
        foreground.end()
        if foreground.ask() == 0.0:
            let_go.append(ticks.now - 100.0)
        ticks.now += 0.125
    assert let_go == pytest.approx([5.0, 10.0, 15.0]), "one every 5 s, never none"
    ticks.now += 3.0
    foreground.begin()
    foreground.end()
    assert foreground.ask() == pytest.approx(0.25), "the wait starts again after a quiet spell"


@pytest.fixture
async def db(tmp_path: Path) -> Database:
    database = await Database.open(
        tmp_path / "fg.db", clock=ManualClock(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
    )
    yield database  # type: ignore[misc]
    await database.close()


async def test_prompts_wait_while_a_reply_is_on_its_way_and_go_after_it(db: Database) -> None:
    """A reply hangs at the homeserver; the prompts queued meanwhile stay unsent until it has
    gone and the quiet after it has passed, then all go, in order."""
    client = HangingClient()
    client.hanging.add(IDLE)
    foreground = Foreground(quiet=0.2, patience=30.0)
    out = OutboxSender(db, client, foreground=foreground)  # type: ignore[arg-type]
    stop = asyncio.Event()
    running = asyncio.create_task(out.run(stop))
    prompted = [f"!prompted{n}:council.example" for n in range(3)]
    try:
        await _queue(db, IDLE, "reply")
        out.wake()
        await _until(lambda: IDLE in client.in_flight, "the reply's send")
        async with db.transaction() as tx:
            for room_id in prompted:
                await tx.outbox.enqueue_message(
                    f"t-{room_id}", room_id, {"body": "still involved?"}, priority=BACKGROUND
                )
        out.wake()
        await asyncio.sleep(0.3)
        assert client.sent == [], "no prompt while the reply is on its way"
        client.release.set()
        await _until(lambda: client.sent == [(IDLE, "reply")], "the reply")
        replied = asyncio.get_running_loop().time()
        await _until(lambda: len(client.sent) == 4, "the prompts, after the quiet")
        assert asyncio.get_running_loop().time() - replied >= 0.15, "seen up to 0.01 s late"
        assert [room for room, _ in client.sent[1:]] == prompted
    finally:
        client.release.set()
        stop.set()
        out.wake()
        await running


async def test_a_background_lane_stops_between_prompts_for_a_reply(db: Database) -> None:
    """A room's prompts go one after another until a reply is handed over elsewhere: the
    lane stops before its next prompt, which goes once the reply has and the quiet passed."""
    client = HangingClient()
    room = "!prompted:council.example"
    client.hanging.add(room)
    foreground = Foreground(quiet=0.2, patience=30.0)
    out = OutboxSender(db, client, foreground=foreground)  # type: ignore[arg-type]
    stop = asyncio.Event()
    running = asyncio.create_task(out.run(stop))
    try:
        async with db.transaction() as tx:
            for n in range(3):
                await tx.outbox.enqueue_message(
                    f"t-prompt-{n}", room, {"body": f"prompt {n}"}, priority=BACKGROUND
                )
        out.wake()
        await _until(lambda: room in client.in_flight, "the first prompt's send")
        async with db.transaction() as tx:
            tx.outbox.enqueue_message_later("t-reply", IDLE, {"body": "reply"})
            handover = out.hand_over(tx)
        out.take(handover)
        client.release.set()
        await _until(lambda: len(client.sent) == 2, "the first prompt and the reply")
        assert sorted(client.sent) == [(IDLE, "reply"), (room, "prompt 0")]
        await asyncio.sleep(0.1)
        assert len(client.sent) == 2, "the lane stopped before its next prompt"
        await _until(lambda: len(client.sent) == 4, "the rest, after the quiet")
        assert [body for r, body in client.sent if r == room] == ["prompt 0", "prompt 1",
                                                                  "prompt 2"]
    finally:
        client.release.set()
        stop.set()
        out.wake()
        await running
