"""Offline tests for configured lengths of time: every accepted form, refusals, round trips."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel, ValidationError

from bot.durations import Duration, DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("8w", timedelta(weeks=8)),
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d 12h", timedelta(days=1, hours=12)),
        ("2w 3d 4h 5m 6s", timedelta(weeks=2, days=3, hours=4, minutes=5, seconds=6)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("  3d  ", timedelta(days=3)),
        ("P8W", timedelta(weeks=8)),
        ("P7D", timedelta(days=7)),
        ("PT12H", timedelta(hours=12)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("PT30M", timedelta(minutes=30)),
        ("PT45S", timedelta(seconds=45)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("p2d", timedelta(days=2)),
        ("90", timedelta(seconds=90)),
        (90, timedelta(seconds=90)),
        (0.5, timedelta(milliseconds=500)),
        (timedelta(hours=2), timedelta(hours=2)),
    ],
)
def test_accepted_forms(value: str | int | float | timedelta, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("8x", "unknown unit 'x'"),
        ("8W", "lower case"),
        ("30m1h", "largest to smallest"),
        ("1h1h", "largest to smallest"),
        ("h", "is not a duration"),
        ("1h 30", "is not a duration"),
        ("", "empty"),
        ("   ", "empty"),
        ("P", "not an ISO 8601 duration"),
        ("PT", "not an ISO 8601 duration"),
        ("P1DT", "not an ISO 8601 duration"),
        ("P1Y", "no fixed length"),
        ("P2M", "no fixed length"),
        ("P1M2D", "no fixed length"),
        ("0s", "longer than zero"),
        ("PT0S", "longer than zero"),
        ("-5m", "longer than zero"),
        (0, "longer than zero"),
        (-3, "longer than zero"),
        (timedelta(0), "longer than zero"),
        (timedelta(seconds=-1), "longer than zero"),
        (float("nan"), "is not a duration"),
        (True, "is not a duration"),
        ("99999999999w", "too long"),
    ],
)
def test_refused_forms(value: object, message: str) -> None:
    with pytest.raises(DurationError, match=message):
        parse_duration(value)  # type: ignore[arg-type]


def test_a_duration_error_is_a_value_error() -> None:
    """pydantic turns ValueError (not other errors) into a readable validation problem."""
    assert issubclass(DurationError, ValueError)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(weeks=8), "8w"),
        (timedelta(days=14), "2w"),
        (timedelta(days=20), "20d"),
        (timedelta(days=3), "3d"),
        (timedelta(days=1, hours=12), "1d 12h"),
        (timedelta(hours=1, minutes=30), "1h 30m"),
        (timedelta(seconds=45), "45s"),
        (timedelta(milliseconds=1500), "1.5s"),
        (timedelta(0), "0s"),
        (timedelta(minutes=-5), "-5m"),
    ],
)
def test_format_gives_the_short_form(value: timedelta, expected: str) -> None:
    assert format_duration(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        timedelta(weeks=8),
        timedelta(days=9, seconds=1),
        timedelta(hours=25),
        timedelta(seconds=59, microseconds=250_000),
        timedelta(days=400, hours=3, minutes=7),
    ],
)
def test_format_reads_back_unchanged(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


class _Model(BaseModel):
    wait: Duration


def test_duration_type_in_a_model_parses_and_serialises_short() -> None:
    model = _Model.model_validate({"wait": "P1DT12H"})
    assert model.wait == timedelta(days=1, hours=12)
    assert model.model_dump(mode="json") == {"wait": "1d 12h"}


def test_duration_type_reports_the_problem_in_plain_words() -> None:
    with pytest.raises(ValidationError) as caught:
        _Model.model_validate({"wait": "P1Y"})
    (error,) = caught.value.errors()
    assert error["loc"] == ("wait",)
    assert "no fixed length" in str(error["ctx"]["error"])


def test_duration_type_refuses_a_list() -> None:
    with pytest.raises(ValidationError, match="a list is not a duration"):
        _Model.model_validate({"wait": ["1h"]})
