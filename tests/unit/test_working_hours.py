"""Offline tests for working hours: open/closed, the next opening, clock changes, other zones."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.working_hours import WorkingHours, parse_weekday

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR")


def office(zone: ZoneInfo = LONDON, start: time = time(9), end: time = time(17)) -> WorkingHours:
    return WorkingHours.from_names(WEEKDAYS, start, end, zone)


def london(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=LONDON)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (london(2026, 11, 25, 12, 0), True),  # Wednesday midday
        (london(2026, 11, 25, 9, 0), True),  # opening minute counts
        (london(2026, 11, 25, 8, 59, 59), False),
        (london(2026, 11, 25, 16, 59, 59), True),
        (london(2026, 11, 25, 17, 0), False),  # the end is exclusive
        (london(2026, 11, 28, 12, 0), False),  # Saturday
        (london(2026, 11, 29, 12, 0), False),  # Sunday
        # 08:30 UTC is 09:30 BST in summer, open; the same UTC time in winter is 08:30, closed.
        (datetime(2026, 7, 1, 8, 30, tzinfo=UTC), True),
        (datetime(2026, 12, 2, 8, 30, tzinfo=UTC), False),
    ],
)
def test_is_open(at: datetime, expected: bool) -> None:
    assert office().is_open(at) is expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # The handbook's example: Saturday morning waits for Monday 09:00.
        (london(2026, 11, 28, 10, 0), london(2026, 11, 30, 9, 0)),
        (london(2026, 11, 25, 7, 15), london(2026, 11, 25, 9, 0)),  # before hours: same day
        (london(2026, 11, 25, 17, 0), london(2026, 11, 26, 9, 0)),  # at closing: next day
        (london(2026, 11, 27, 18, 0), london(2026, 11, 30, 9, 0)),  # Friday evening
        (london(2026, 11, 29, 23, 59), london(2026, 11, 30, 9, 0)),  # Sunday night
    ],
)
def test_next_open_outside_hours(at: datetime, expected: datetime) -> None:
    result = office().next_open(at)
    assert result == expected
    assert result.utcoffset() == expected.utcoffset()


def test_next_open_inside_hours_is_the_same_instant() -> None:
    at = datetime(2026, 11, 25, 12, 34, 56, 789, tzinfo=UTC)
    assert office().next_open(at) == at


def test_next_open_answers_in_the_callers_zone() -> None:
    result = office().next_open(datetime(2026, 11, 28, 10, 0, tzinfo=UTC))
    assert result.tzinfo is UTC
    assert result == london(2026, 11, 30, 9, 0)
    assert office().next_open(london(2026, 11, 28, 10, 0)).tzinfo is LONDON


def test_clocks_going_forward_keep_nine_oclock_local() -> None:
    """Friday 27 March 2026 is GMT; Monday 30 March is BST, so 09:00 is 08:00 UTC."""
    result = office().next_open(london(2026, 3, 27, 18, 0))
    assert result == datetime(2026, 3, 30, 8, 0, tzinfo=UTC)
    assert (result.hour, result.minute) == (9, 0)
    assert result.utcoffset() == timedelta(hours=1)


def test_clocks_going_back_keep_nine_oclock_local() -> None:
    """Friday 23 October 2026 is BST; Monday 26 October is GMT, so 09:00 is 09:00 UTC."""
    result = office().next_open(london(2026, 10, 23, 18, 0))
    assert result == datetime(2026, 10, 26, 9, 0, tzinfo=UTC)
    assert (result.hour, result.minute) == (9, 0)
    assert result.utcoffset() == timedelta(0)


def test_weekend_hours_on_the_day_clocks_go_forward() -> None:
    sundays = WorkingHours.from_names(["SU"], time(9), time(17), LONDON)
    result = sundays.next_open(datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    assert result == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)  # 09:00 BST


def test_weekend_hours_on_the_day_clocks_go_back() -> None:
    sundays = WorkingHours.from_names(["SU"], time(9), time(17), LONDON)
    result = sundays.next_open(datetime(2026, 10, 24, 12, 0, tzinfo=UTC))
    assert result == datetime(2026, 10, 25, 9, 0, tzinfo=UTC)  # 09:00 GMT


def test_start_in_the_skipped_hour_opens_when_the_clocks_change() -> None:
    """01:30 does not exist on 29 March 2026; at 01:00 UTC the clock jumps to 02:00, inside."""
    night = WorkingHours.from_names(["SU"], time(1, 30), time(3), LONDON)
    result = night.next_open(datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    assert result == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert night.is_open(result)
    assert not night.is_open(datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC))


def test_window_wholly_in_the_skipped_hour_waits_a_week() -> None:
    night = WorkingHours.from_names(["SU"], time(1, 10), time(1, 50), LONDON)
    result = night.next_open(datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    assert result == london(2026, 4, 5, 1, 10)


def test_repeated_hour_opens_again_on_its_second_occurrence() -> None:
    """01:30-01:45 happens twice on 25 October 2026: first in BST, then in GMT."""
    night = WorkingHours.from_names(["SU"], time(1, 30), time(1, 45), LONDON)
    after_first = datetime(2026, 10, 25, 0, 50, tzinfo=UTC)  # 01:50 BST
    assert not night.is_open(after_first)
    assert night.next_open(after_first) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


def test_clocks_going_back_into_the_window_reopen_it() -> None:
    night = WorkingHours.from_names(["SU"], time(0, 30), time(1, 45), LONDON)
    after_close = datetime(2026, 10, 25, 0, 50, tzinfo=UTC)  # 01:50 BST, just closed
    assert night.next_open(after_close) == datetime(2026, 10, 25, 1, 0, tzinfo=UTC)  # 01:00 GMT


def test_new_york_office() -> None:
    ny = office(NEW_YORK)
    # Saturday 28 November 2026 15:00 UTC is 10:00 EST; Monday 09:00 EST is 14:00 UTC.
    result = ny.next_open(datetime(2026, 11, 28, 15, 0, tzinfo=UTC))
    assert result == datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
    assert result.astimezone(NEW_YORK).hour == 9
    # Monday 18:00 UTC: London has closed, New York (13:00) is open; 22:30 UTC is 17:30 there.
    assert ny.is_open(datetime(2026, 11, 30, 18, 0, tzinfo=UTC))
    assert not office().is_open(datetime(2026, 11, 30, 18, 0, tzinfo=UTC))
    assert not ny.is_open(datetime(2026, 11, 30, 22, 30, tzinfo=UTC))


def test_new_york_changes_clocks_on_its_own_date() -> None:
    """America/New_York went to daylight time on 8 March 2026, London three weeks later."""
    ny = office(NEW_YORK)
    result = ny.next_open(datetime(2026, 3, 7, 12, 0, tzinfo=UTC))  # Saturday
    assert result == datetime(2026, 3, 9, 13, 0, tzinfo=UTC)  # 09:00 EDT


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        office().next_open(datetime(2026, 11, 28, 10, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        office().is_open(datetime(2026, 11, 28, 10, 0))


@pytest.mark.parametrize(
    ("days", "start", "end", "message"),
    [
        (frozenset(), time(9), time(17), "at least one day"),
        (frozenset({7}), time(9), time(17), "weekday numbers"),
        (frozenset({0}), time(17), time(9), "earlier than end"),
        (frozenset({0}), time(9), time(9), "earlier than end"),
    ],
)
def test_invalid_working_hours_are_refused(
    days: frozenset[int], start: time, end: time, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        WorkingHours(days, start, end, LONDON)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("MO", 0), ("tu", 1), ("Wed", 2), ("thursday", 3), (" FR ", 4), ("SA", 5), ("Sunday", 6)],
)
def test_parse_weekday(name: str, expected: int) -> None:
    assert parse_weekday(name) == expected


def test_parse_weekday_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="not a day of the week"):
        parse_weekday("XX")


@pytest.mark.parametrize(
    ("days", "start", "end"),
    [
        (WEEKDAYS, time(9), time(17)),
        (("SA", "SU"), time(0, 30), time(2, 30)),
        (("SU",), time(1, 15), time(1, 45)),
        (("MO", "WE", "SU"), time(23), time(23, 59, 59)),
    ],
)
@pytest.mark.parametrize(
    "weekend", [datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 10, 23, tzinfo=UTC)]
)
def test_next_open_agrees_with_a_brute_force_scan(
    days: tuple[str, ...], start: time, end: time, weekend: datetime
) -> None:
    """Around both clock changes, the answer is open and no earlier second was open."""
    hours = WorkingHours.from_names(days, start, end, LONDON)
    for step in range(0, 4 * 24 * 60, 37):  # every 37 minutes over four days
        at = weekend + timedelta(minutes=step)
        result = hours.next_open(at)
        assert result >= at
        assert hours.is_open(result)
        if result != at:
            assert not hours.is_open(result - timedelta(seconds=1))
            probe = at
            while probe < result:
                assert not hours.is_open(probe), (at, probe, result)
                probe += timedelta(minutes=10)
