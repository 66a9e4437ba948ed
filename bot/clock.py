"""The one source of time for the running bot, injectable so tests can move it."""

from __future__ import annotations

from datetime import datetime, timedelta

from storage import Clock, utc_now

__all__ = ["Clock", "ManualClock", "utc_now"]


class ManualClock:
    """A clock that only moves when told to (for tests and simulations)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta | None = None, **parts: float) -> None:
        """Move on by `delta`, or by keyword parts such as `days=3, hours=2`."""
        self.current += (delta or timedelta()) + timedelta(**parts)
