"""Lengths of time as operators write them in the configuration.

Patchwork's settings (prompt interval, reminder delay, sync timeout...) accept the short form
people already use (``8w``, ``1d 12h``, ``30m``) as well as ISO 8601 (``P8W``, ``PT12H``), so a
value copied from another system's documentation still works. Years and months are refused:
they have no fixed length, and a prompt interval that drifts with the calendar would surprise.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator

__all__ = ["Duration", "DurationError", "format_duration", "parse_duration"]

EXAMPLES = "e.g. 8w, 7d, 12h, 30m, 45s, 1h30m, or ISO 8601 such as P7D or PT12H"

_UNIT_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_NUMBER = r"\d+(?:\.\d+)?"
_SHORT_PART = re.compile(rf"\s*({_NUMBER})\s*([a-zA-Z]+)\s*")
_PLAIN_NUMBER = re.compile(rf"\s*({_NUMBER})\s*")
_ISO = re.compile(
    rf"""
    P
    (?:(?P<years>{_NUMBER})Y)?
    (?:(?P<months>{_NUMBER})M)?
    (?:(?P<weeks>{_NUMBER})W)?
    (?:(?P<days>{_NUMBER})D)?
    (?:T
        (?:(?P<hours>{_NUMBER})H)?
        (?:(?P<minutes>{_NUMBER})M)?
        (?:(?P<seconds>{_NUMBER})S)?
    )?
    """,
    re.VERBOSE,
)
_ISO_SECONDS = {"weeks": 604_800, "days": 86_400, "hours": 3_600, "minutes": 60, "seconds": 1}


class DurationError(ValueError):
    """A value that is not a usable length of time; the message is meant for an operator."""


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Turn a configured length of time into a timedelta, refusing zero and negative lengths.

    Plain numbers are seconds, because that is what a bare number means for a timeout.
    """
    if isinstance(value, bool):
        # bool is an int subclass; "true" is never a length of time.
        raise DurationError(f"{value!r} is not a duration (expected {EXAMPLES})")
    try:
        result = _to_timedelta(value)
    except OverflowError:
        raise DurationError(f"{_shown(value)} is far too long to be a duration") from None
    if result <= timedelta(0):
        raise DurationError(f"{_shown(value)} must be longer than zero (expected {EXAMPLES})")
    return result


def _to_timedelta(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise DurationError(f"{value!r} is not a duration (expected {EXAMPLES})")
        return timedelta(seconds=value)
    if isinstance(value, str):
        return _parse_text(value)
    raise DurationError(f"a {type(value).__name__} is not a duration (expected {EXAMPLES})")


def format_duration(td: timedelta) -> str:
    """Give the short form (``8w``, ``1d 12h``) that parse_duration reads back unchanged.

    Weeks are used only for a whole number of weeks: "20d" reads better than "2w 6d".
    """
    if td < timedelta(0):
        return "-" + format_duration(-td)
    if td == timedelta(0):
        return "0s"
    whole_seconds = td.days * 86_400 + td.seconds
    in_weeks = whole_seconds % _UNIT_SECONDS["w"] == 0 and not td.microseconds
    parts: list[str] = []
    for unit, size in _UNIT_SECONDS.items():
        if unit == "w" and not in_weeks:
            continue
        amount, whole_seconds = divmod(whole_seconds, size)
        if unit == "s" and td.microseconds:
            fraction = f"{td.microseconds:06d}".rstrip("0")
            parts.append(f"{amount}.{fraction}s")
        elif amount:
            parts.append(f"{amount}{unit}")
    return " ".join(parts)


def _parse_text(text: str) -> timedelta:
    stripped = text.strip()
    if not stripped:
        raise DurationError(f"an empty value is not a duration (expected {EXAMPLES})")
    if stripped.startswith("-"):
        raise DurationError(f"{text!r} must be longer than zero (expected {EXAMPLES})")
    if stripped[0] in "pP":
        return _parse_iso(stripped)
    plain = _PLAIN_NUMBER.fullmatch(stripped)
    if plain:
        return timedelta(seconds=float(plain.group(1)))
    return _parse_short(stripped)


def _parse_short(text: str) -> timedelta:
    total = 0.0
    position = 0
    previous_rank = -1
    ranks = list(_UNIT_SECONDS)
    while position < len(text):
        part = _SHORT_PART.match(text, position)
        if part is None:
            raise DurationError(f"{text!r} is not a duration (expected {EXAMPLES})")
        number, unit = part.groups()
        if unit not in _UNIT_SECONDS:
            raise DurationError(
                f"{text!r} uses the unknown unit {unit!r} "
                "(expected w, d, h, m or s in lower case, e.g. 1h30m)"
            )
        rank = ranks.index(unit)
        if rank <= previous_rank:
            raise DurationError(
                f"{text!r} repeats a unit or lists a smaller one first "
                "(expected units from largest to smallest, each once, e.g. 1d 12h)"
            )
        previous_rank = rank
        total += float(number) * _UNIT_SECONDS[unit]
        position = part.end()
    return timedelta(seconds=total)


def _parse_iso(text: str) -> timedelta:
    match = _ISO.fullmatch(text.upper())
    if match is None or not any(match.groupdict().values()) or text.upper().endswith("T"):
        raise DurationError(
            f"{text!r} is not an ISO 8601 duration (expected e.g. P8W, P7D, PT12H, P1DT12H)"
        )
    if match["years"] or match["months"]:
        raise DurationError(
            f"{text!r} uses years or months, which have no fixed length "
            "(expected weeks, days, hours, minutes or seconds, e.g. P8W or P56D)"
        )
    seconds = sum(float(match[name]) * size for name, size in _ISO_SECONDS.items() if match[name])
    return timedelta(seconds=seconds)


def _shown(value: object) -> str:
    if isinstance(value, timedelta):
        return format_duration(value)
    return repr(value)


def _validate(value: Any) -> timedelta:
    return parse_duration(value)


Duration = Annotated[
    timedelta,
    PlainValidator(_validate, json_schema_input_type=str | int | float),
    PlainSerializer(format_duration, return_type=str),
]
"""A positive length of time for pydantic models, written and shown in the short form."""
