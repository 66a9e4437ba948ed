"""How Patchwork's values are written to SQLite text columns and read back.

Times are stored as fixed-width ISO 8601 UTC text so that SQL string comparison
(`next_attempt_at <= ?`) orders them correctly; JSON is stored compact and with sorted keys
so that the same value always produces the same text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

Clock = Callable[[], datetime]
"""Returns the current time as an aware datetime; injectable so tests can move time."""


def utc_now() -> datetime:
    """The production clock."""
    return datetime.now(UTC)


def encode_time(value: datetime) -> str:
    """Fixed-width UTC text, microseconds always present, so text order is time order."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: Patchwork stores only aware times")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def encode_optional_time(value: datetime | None) -> str | None:
    return None if value is None else encode_time(value)


def decode_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is UTC:  # as `encode_time` writes them
        return parsed
    if parsed.tzinfo is None:
        raise ValueError(f"stored time {text!r} has no UTC offset")
    return parsed.astimezone(UTC)


def decode_optional_time(text: str | None) -> datetime | None:
    return None if text is None else decode_time(text)


def encode_optional_date(value: date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        raise TypeError("expected a date, not a datetime")
    return value.isoformat()


def decode_optional_date(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


def canonical_json(value: Any) -> str:
    """Compact, key-sorted JSON: the same value always gives the same text (and hash)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def encode_json_object(value: Mapping[str, Any]) -> str:
    return canonical_json(dict(value))


def decode_json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if isinstance(value, dict):
        return value
    raise ValueError(f"stored JSON is not an object: {text[:40]!r}")
