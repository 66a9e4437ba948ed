"""The `prompts` section: how often practitioners are asked whether they are still involved,
when reminders and lapses follow, and the working hours in which questions may go out."""

from __future__ import annotations

import difflib
import re
from datetime import time, timedelta
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import Field, PlainSerializer, PlainValidator, field_validator, model_validator

from bot.config.errors import _KeyProblem, _kind
from bot.config.section import _Section
from bot.durations import Duration, format_duration
from bot.working_hours import WEEKDAY_CODES, WorkingHours, parse_weekday

_CLOCK_RE = re.compile(r"(?P<hour>[01]?\d|2[0-3]):(?P<minute>[0-5]\d)(?::(?P<second>[0-5]\d))?")
_LONGEST_SWEEP = timedelta(hours=1)


def _clock_time(value: Any) -> time:
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise ValueError("should be a wall-clock time; the zone belongs in prompts.timezone")
        return value
    if isinstance(value, str):
        match = _CLOCK_RE.fullmatch(value.strip())
        if match:
            return time(int(match["hour"]), int(match["minute"]), int(match["second"] or 0))
        raise ValueError(
            f"{value!r} is not a time of day (expected HH:MM on the 24-hour clock, e.g. 09:00)"
        )
    raise ValueError(
        f"should be a time of day, not {_kind(value)} "
        '(expected HH:MM on the 24-hour clock in quotes, e.g. "09:00")'
    )


def _weekday_code(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(  # noqa: TRY004
            f"should be a day code, not {_kind(value)} (expected {', '.join(WEEKDAY_CODES)})"
        )
    return WEEKDAY_CODES[parse_weekday(value)]


def _format_clock(value: time) -> str:
    return value.strftime("%H:%M:%S" if value.second else "%H:%M")


ClockTime = Annotated[
    time,
    PlainValidator(_clock_time, json_schema_input_type=str),
    PlainSerializer(_format_clock, return_type=str),
]
WeekdayCode = Annotated[str, PlainValidator(_weekday_code, json_schema_input_type=str)]


class WorkingHoursConfig(_Section):
    """The days and local times at which prompts may be sent."""

    days: tuple[WeekdayCode, ...] = Field(
        default=("MO", "TU", "WE", "TH", "FR"),
        description=f"a list of day codes from {', '.join(WEEKDAY_CODES)}, e.g. [MO, TU, WE]",
    )
    start: ClockTime = Field(default=time(9), description='a time such as "09:00"')
    end: ClockTime = Field(default=time(17), description='a time such as "17:00"')

    @field_validator("days", mode="after")
    @classmethod
    def _week_order(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(
                f"is empty (expected at least one day from {', '.join(WEEKDAY_CODES)})"
            )
        return tuple(code for code in WEEKDAY_CODES if code in value)

    @model_validator(mode="after")
    def _start_before_end(self) -> Self:
        if self.start >= self.end:
            raise _KeyProblem(
                "end",
                f"{_format_clock(self.end)} is not after start {_format_clock(self.start)} "
                "(expected an end later the same day; working hours cannot cross midnight)",
            )
        return self


class PromptsConfig(_Section):
    """The still-involved check: how often, when to remind, when to give up."""

    interval: Duration = Field(
        default=timedelta(weeks=8), description="a duration such as 8w, 56d or P8W"
    )
    remind_after: Duration = Field(default=timedelta(days=3), description="a duration such as 3d")
    lapse_after: Duration = Field(default=timedelta(days=14), description="a duration such as 14d")
    remove_on_lapse: bool = Field(
        default=True,
        description="true to remove lapsed practitioners from the room, false to keep them",
    )
    working_hours: WorkingHoursConfig = Field(
        default_factory=WorkingHoursConfig,
        description="a section with days, start and end",
    )
    timezone: str = Field(
        default="Europe/London",
        description="an IANA timezone name such as Europe/London",
    )
    sweep_every: Duration = Field(
        default=timedelta(minutes=1),
        description="a duration such as 1m: how often to look for prompts, reminders and lapses",
    )

    @field_validator("timezone", mode="after")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            close = difflib.get_close_matches(value, sorted(available_timezones()), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ValueError(
                f"{value!r} is not a known timezone "
                f"({hint}expected an IANA name such as Europe/London or America/New_York)"
            ) from None
        return value

    @field_validator("sweep_every", mode="after")
    @classmethod
    def _often_enough(cls, value: timedelta) -> timedelta:
        if value > _LONGEST_SWEEP:
            raise ValueError(
                f"{format_duration(value)} is too long (expected at most "
                f"{format_duration(_LONGEST_SWEEP)}, so prompts go out close to when they "
                "fall due, e.g. 1m)"
            )
        return value

    @model_validator(mode="after")
    def _lapse_after_reminder(self) -> Self:
        if self.lapse_after <= self.remind_after:
            raise _KeyProblem(
                "lapse_after",
                f"{format_duration(self.lapse_after)} is not longer than prompts.remind_after "
                f"{format_duration(self.remind_after)} (expected the reminder to come before "
                "the involvement lapses)",
            )
        return self

    @property
    def working_schedule(self) -> WorkingHours:
        """The working hours in the configured timezone, ready for next_open()."""
        return WorkingHours.from_names(
            self.working_hours.days,
            self.working_hours.start,
            self.working_hours.end,
            ZoneInfo(self.timezone),
        )
