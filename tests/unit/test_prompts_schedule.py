"""The still-involved scheduling arithmetic, offline: intervals on the local calendar across
clock changes, working hours, away dates, reminder and lapse deadlines, reaction keys."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.working_hours import WorkingHours
from rooms.prompts import (
    PromptSettings,
    add_interval,
    back_from_away,
    is_away,
    lapse_due,
    next_prompt_time,
    reaction_answer,
    reminder_due,
)
from storage import Practitioner, Prompt

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
EIGHT_WEEKS = timedelta(weeks=8)


def london(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=LONDON)  # type: ignore[misc]


def settings(zone: ZoneInfo = LONDON, interval: timedelta = EIGHT_WEEKS) -> PromptSettings:
    return PromptSettings(
        interval=interval,
        remind_after=timedelta(days=3),
        lapse_after=timedelta(days=14),
        remove_on_lapse=True,
        schedule=WorkingHours.from_names(("MO", "TU", "WE", "TH", "FR"), time(9), time(17), zone),
    )


@pytest.mark.parametrize(
    ("start", "interval", "expected"),
    [
        # Across the spring change (29 Mar 2026): Tuesday 10:00 GMT -> Tuesday 10:00 BST,
        # which is one hour less of elapsed time.
        (london(2026, 3, 3, 10, 0), EIGHT_WEEKS, london(2026, 4, 28, 10, 0)),
        # Across the autumn change (25 Oct 2026): 10:00 BST -> 10:00 GMT.
        (london(2026, 10, 6, 10, 0), EIGHT_WEEKS, london(2026, 12, 1, 10, 0)),
        # No change in between: plain addition.
        (london(2026, 6, 2, 16, 45), EIGHT_WEEKS, london(2026, 7, 28, 16, 45)),
        # Landing in the skipped hour (01:30 on 29 Mar does not exist): moved on by the gap.
        (london(2026, 3, 28, 1, 30), timedelta(days=1), london(2026, 3, 29, 2, 30)),
        # Landing in the repeated hour (01:30 on 25 Oct happens twice): the first one, BST.
        (
            london(2026, 10, 24, 1, 30),
            timedelta(days=1),
            datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        ),
        # Parts shorter than a day are elapsed time, added after the calendar days.
        (
            london(2026, 3, 28, 12, 0),
            timedelta(days=1, hours=12),
            datetime(2026, 3, 29, 23, 0, tzinfo=UTC),
        ),
    ],
)
def test_add_interval_counts_days_on_the_local_calendar(
    start: datetime, interval: timedelta, expected: datetime
) -> None:
    result = add_interval(start.astimezone(UTC), interval, LONDON)
    assert result == expected
    assert result.tzinfo == UTC


def test_eight_weeks_across_a_clock_change_is_not_56_times_24_hours() -> None:
    start = london(2026, 3, 3, 10, 0).astimezone(UTC)
    assert add_interval(start, EIGHT_WEEKS, LONDON) - start == EIGHT_WEEKS - timedelta(hours=1)
    assert add_interval(start, EIGHT_WEEKS, UTC) - start == EIGHT_WEEKS


@pytest.mark.parametrize(
    ("confirmed", "expected"),
    [
        # Confirmed on a Friday afternoon: asked again on a Friday afternoon.
        (london(2026, 6, 5, 16, 30), london(2026, 7, 31, 16, 30)),
        # Confirmed on a Friday evening: Friday 18:00 is closed, so Monday 09:00.
        (london(2026, 6, 5, 18, 0), london(2026, 8, 3, 9, 0)),
        # Joined on a Saturday: the prompt due on a Saturday goes out on Monday 09:00 BST,
        # which is 08:00 UTC.
        (london(2026, 6, 6, 10, 0), datetime(2026, 8, 3, 8, 0, tzinfo=UTC)),
        # Across the autumn change: Wednesday 08:30 BST + 8 weeks = 08:30 GMT, before hours.
        (london(2026, 10, 7, 8, 30), london(2026, 12, 2, 9, 0)),
    ],
)
def test_next_prompt_time_is_moved_into_working_hours(
    confirmed: datetime, expected: datetime
) -> None:
    result = next_prompt_time(confirmed.astimezone(UTC), settings())
    assert result == expected
    assert result.tzinfo == UTC


def test_next_prompt_time_uses_the_configured_zone() -> None:
    # Friday 16:00 in New York is 21:00 UTC; 8 weeks on it is still inside New York's hours,
    # and it would be outside London's.
    confirmed = datetime(2026, 6, 5, 16, 0, tzinfo=NEW_YORK).astimezone(UTC)
    assert next_prompt_time(confirmed, settings(NEW_YORK)) == datetime(
        2026, 7, 31, 16, 0, tzinfo=NEW_YORK
    )
    assert next_prompt_time(confirmed, settings(LONDON)) == london(2026, 8, 3, 9, 0)


@pytest.mark.parametrize(
    ("away_until", "expected"),
    [
        (date(2026, 8, 10), datetime(2026, 8, 10, 23, 0, tzinfo=UTC)),  # BST midnight
        (date(2026, 12, 10), datetime(2026, 12, 11, 0, 0, tzinfo=UTC)),  # GMT midnight
        (date(2026, 3, 28), datetime(2026, 3, 29, 0, 0, tzinfo=UTC)),  # the night of the change
    ],
)
def test_back_from_away_is_local_midnight_after_the_last_day(
    away_until: date, expected: datetime
) -> None:
    assert back_from_away(away_until, LONDON) == expected


def _practitioner(away_until: date | None) -> Practitioner:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Practitioner(
        "@p:example.org", None, None, None, None, None, False, None, away_until, now, now
    )


def test_away_through_the_whole_last_day() -> None:
    away = _practitioner(date(2026, 8, 10))
    assert is_away(away, london(2026, 8, 10, 23, 59), LONDON)
    assert not is_away(away, london(2026, 8, 11, 0, 0), LONDON)
    assert not is_away(_practitioner(None), london(2026, 8, 10, 12, 0), LONDON)
    assert not is_away(None, london(2026, 8, 10, 12, 0), LONDON)


def _prompt(sent: datetime | None, reminded: datetime | None) -> Prompt:
    return Prompt(1, 1, datetime(2026, 8, 3, 8, tzinfo=UTC), sent, "$p", reminded, None, None)


def test_reminder_and_lapse_deadlines() -> None:
    sent = datetime(2026, 8, 3, 9, 0, tzinfo=UTC)
    assert reminder_due(_prompt(None, None), settings()) is None
    assert reminder_due(_prompt(sent, None), settings()) == sent + timedelta(days=3)
    # Nobody lapses unreminded.
    assert lapse_due(_prompt(sent, None), settings()) is None
    # A reminder on time: lapse_after from sending.
    on_time = sent + timedelta(days=3)
    assert lapse_due(_prompt(sent, on_time), settings()) == sent + timedelta(days=14)
    # A late reminder (the bot was down, or the weekend): still the full 11 days' notice.
    late = sent + timedelta(days=20)
    assert lapse_due(_prompt(sent, late), settings()) == late + timedelta(days=11)


@pytest.mark.parametrize(
    ("key", "answer"),
    [
        ("\u2705", True),
        ("\u2705\ufe0f", True),
        ("\u274c", False),
        (" \u274c\ufe0f", False),
        ("\U0001f44d", None),
        ("yes", None),
        ("", None),
    ],
)
def test_only_the_two_prompt_reactions_are_answers(key: str, answer: bool | None) -> None:
    assert reaction_answer(key) is answer


def test_settings_refuse_a_lapse_before_the_reminder() -> None:
    with pytest.raises(ValueError, match="lapse_after"):
        PromptSettings(
            interval=EIGHT_WEEKS,
            remind_after=timedelta(days=3),
            lapse_after=timedelta(days=2),
            remove_on_lapse=True,
            schedule=settings().schedule,
        )
