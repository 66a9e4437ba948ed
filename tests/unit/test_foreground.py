"""Answers first: background sends wait while answers are on their way, but never for good
(how the outbox uses it: tests/unit/test_outbox_lanes.py)."""

from __future__ import annotations

import pytest

from bot.foreground import Foreground


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
