"""When Patchwork may send still-involved prompts: the operator's working week in their timezone.

Practitioners should not be pinged at night or at the weekend, so a prompt that falls due outside
working hours waits for the next opening. Openings are generated with python-dateutil's rrule on
local wall-clock times and only then turned into instants, so "09:00" stays 09:00 across
daylight-saving changes instead of drifting by an hour.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import islice

from dateutil.rrule import DAILY, rrule

__all__ = ["WEEKDAY_CODES", "WorkingHours", "parse_weekday"]

WEEKDAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
"""Two-letter day codes, as rrule and iCalendar use them, indexed like datetime.weekday()."""

_DAY_NAMES = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
_WEEKDAY_NAMES = {
    alias: index
    for index, (code, name) in enumerate(zip(WEEKDAY_CODES, _DAY_NAMES, strict=True))
    for alias in (code, name[:3], name)
}

# Over a year of working days: far more than any run of windows lost to clock changes.
_SEARCH_OPENINGS = 400
_ONE_DAY = timedelta(days=1)


def parse_weekday(name: str) -> int:
    """Read MO..SU (or Mon, Monday; any case) as a datetime.weekday() number."""
    try:
        return _WEEKDAY_NAMES[name.strip().upper()]
    except KeyError:
        raise ValueError(
            f"{name!r} is not a day of the week (expected one of {', '.join(WEEKDAY_CODES)})"
        ) from None


@dataclass(frozen=True)
class WorkingHours:
    """Open from start to end (local wall-clock time) on the given days, in one timezone.

    days holds datetime.weekday() numbers (Monday is 0). The window cannot cross midnight.
    """

    days: frozenset[int]
    start: time
    end: time
    timezone: tzinfo

    def __post_init__(self) -> None:
        object.__setattr__(self, "days", frozenset(self.days))
        if not self.days:
            raise ValueError("working hours need at least one day of the week")
        if not self.days <= set(range(7)):
            raise ValueError("days must be weekday numbers 0 (Monday) to 6 (Sunday)")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("start and end are wall-clock times; give the zone as timezone")
        if self.start >= self.end:
            raise ValueError(f"start ({self.start}) must be earlier than end ({self.end})")

    @classmethod
    def from_names(
        cls, days: Iterable[str], start: time, end: time, timezone: tzinfo
    ) -> WorkingHours:
        """Build from day codes such as MO, TU, as the configuration spells them."""
        return cls(frozenset(parse_weekday(day) for day in days), start, end, timezone)

    def is_open(self, at: datetime) -> bool:
        """Whether the instant at falls inside working hours, judged by the local clock."""
        local = _require_aware(at).astimezone(self.timezone)
        return local.weekday() in self.days and self.start <= local.time() < self.end

    def next_open(self, at: datetime) -> datetime:
        """The first instant at or after at inside working hours, in at's own timezone.

        Keeping the caller's zone matters: Python compares an aware datetime across zones by
        instant, except in a repeated (clocks-back) hour, where a local result would compare
        unequal to the same instant in UTC.
        """
        if self.is_open(at):
            return at
        at_utc = at.astimezone(UTC)
        # Start a day early: near a clock change the local date of an instant can be ambiguous.
        first_day = _local_date(at, self.timezone) - _ONE_DAY
        best: datetime | None = None
        for opening in islice(self._openings(first_day), _SEARCH_OPENINGS):
            if best is not None and opening.date() > _local_date(best, self.timezone) + _ONE_DAY:
                break
            for candidate in self._instants_opening(opening):
                if candidate >= at_utc and self.is_open(candidate):
                    best = candidate if best is None else min(best, candidate)
        if best is None:
            raise RuntimeError("working hours never open; check days, start and end")
        return best.astimezone(at.tzinfo)

    def _openings(self, first_day: date) -> Iterator[datetime]:
        """Naive local wall-clock start times, one per working day, from first_day on."""
        rule = rrule(
            DAILY,
            dtstart=datetime.combine(first_day, time()),
            byweekday=sorted(self.days),
            byhour=self.start.hour,
            byminute=self.start.minute,
            bysecond=self.start.second,
        )
        return iter(rule)

    def _instants_opening(self, opening: datetime) -> set[datetime]:
        """UTC instants at which the window starting at the wall time opening may open.

        Usually one. When the clocks go back the wall time happens twice; when they go forward
        it may not happen at all, and the window then opens at the moment of the change.
        """
        close = datetime.combine(opening.date(), self.end)
        bounds = [
            _resolve(wall, self.timezone, fold) for wall in (opening, close) for fold in (0, 1)
        ]
        candidates = set(bounds[:2])
        low, high = min(bounds), max(bounds)
        if _offset(low, self.timezone) != _offset(high, self.timezone):
            candidates.add(_change_between(low, high, self.timezone))
        return candidates


def _require_aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("a timezone-aware datetime is needed to compare with working hours")
    return at


def _local_date(instant: datetime, zone: tzinfo) -> date:
    return instant.astimezone(zone).date()


def _resolve(wall: datetime, zone: tzinfo, fold: int) -> datetime:
    return wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)


def _offset(instant: datetime, zone: tzinfo) -> timedelta | None:
    return instant.astimezone(zone).utcoffset()


def _change_between(low: datetime, high: datetime, zone: tzinfo) -> datetime:
    """The first instant in (low, high] with the offset of high, to the second."""
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle <= low:
            middle = low + timedelta(seconds=1)
        if _offset(middle, zone) == _offset(low, zone):
            low = middle
        else:
            high = middle
    return high
