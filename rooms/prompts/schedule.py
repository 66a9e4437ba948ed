"""When practitioners are asked: the operator's prompt settings and the calendar arithmetic
of due dates, reminders, lapses and time away. Pure functions, no storage or Matrix."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Protocol

from storage import Practitioner, Prompt

DEFAULT_BATCH = 200
WORKING_HOURS_KEY = "working_hours"
"""Marks an outbox item (a question, a reminder) that may only be sent in working hours."""


class WorkingSchedule(Protocol):
    """When prompts may go out: `bot.working_hours.WorkingHours` in the operator's zone."""

    @property
    def timezone(self) -> tzinfo: ...

    def is_open(self, at: datetime) -> bool: ...

    def next_open(self, at: datetime) -> datetime: ...


@dataclass(frozen=True)
class PromptSettings:
    """The operator's `prompts` settings, handed down by the process (rooms never reads config)."""

    interval: timedelta
    remind_after: timedelta
    lapse_after: timedelta
    remove_on_lapse: bool
    schedule: WorkingSchedule
    batch_size: int = DEFAULT_BATCH

    def __post_init__(self) -> None:
        if min(self.interval, self.remind_after) <= timedelta(0):
            raise ValueError("prompt durations must be positive")
        if self.lapse_after <= self.remind_after:
            raise ValueError("lapse_after must be longer than remind_after")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")

    @property
    def zone(self) -> tzinfo:
        return self.schedule.timezone

    @property
    def notice_after_reminder(self) -> timedelta:
        """How long a reminded practitioner always has left before the involvement lapses."""
        return self.lapse_after - self.remind_after


def held_until(
    payload: Mapping[str, object], now: datetime, settings: PromptSettings
) -> datetime | None:
    """When an outbox item marked for working hours may go, if not now: a backlog that drains
    late (after an outage, say) waits for the next opening instead of asking at night."""
    if not payload.get(WORKING_HOURS_KEY) or settings.schedule.is_open(now):
        return None
    return settings.schedule.next_open(now).astimezone(UTC)


def add_interval(start: datetime, interval: timedelta, zone: tzinfo) -> datetime:
    """`start` plus `interval`, whole days counted on the local calendar, in UTC.

    "Every 8 weeks" from Tuesday 10:00 should be Tuesday 10:00, even when the clocks changed in
    between; adding 56 x 24 hours would land at 09:00 or 11:00. Any part shorter than a day is
    elapsed time. A wall time the clocks skip is moved on by the gap; a repeated one takes its
    first occurrence.
    """
    whole_days = timedelta(days=interval.days)
    wall = start.astimezone(zone).replace(tzinfo=None) + whole_days
    landed = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    return landed + (interval - whole_days)


def next_prompt_time(after: datetime, settings: PromptSettings) -> datetime:
    """When to ask next: one interval after `after`, moved into working hours."""
    due = add_interval(after, settings.interval, settings.zone)
    return settings.schedule.next_open(due).astimezone(UTC)


def back_from_away(away_until: date, zone: tzinfo) -> datetime:
    """The first instant after an away date: local midnight as the next day starts."""
    wall = datetime.combine(away_until + timedelta(days=1), time())
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def is_away(practitioner: Practitioner | None, now: datetime, zone: tzinfo) -> bool:
    """Away through the whole of `away_until`, in the operator's timezone."""
    if practitioner is None or practitioner.away_until is None:
        return False
    return now < back_from_away(practitioner.away_until, zone)


def local_today(now: datetime, zone: tzinfo) -> date:
    return now.astimezone(zone).date()


def reminder_due(prompt: Prompt, settings: PromptSettings) -> datetime | None:
    """When an unanswered prompt earns its reminder (None until it has been sent)."""
    return None if prompt.sent_at is None else prompt.sent_at + settings.remind_after


def lapse_due(prompt: Prompt, settings: PromptSettings) -> datetime | None:
    """When an unanswered prompt lapses: `lapse_after` from sending, and never sooner than the
    full notice period after the reminder (which may have waited for working hours, or for the
    bot to be back). None until the reminder has gone out: nobody lapses unreminded."""
    if prompt.sent_at is None or prompt.reminded_at is None:
        return None
    return max(
        prompt.sent_at + settings.lapse_after,
        prompt.reminded_at + settings.notice_after_reminder,
    )
