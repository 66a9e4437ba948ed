"""The `retention` section: how long a closed family's record is kept, and how often the
purge of records past their time runs."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, field_validator

from bot.config.section import _Section
from bot.durations import Duration

SIX_YEARS = timedelta(days=2192)
"""The default retention of a closed case: six years, counting one leap day in four."""


class RetentionConfig(_Section):
    """Keeping closed families' records no longer than needed."""

    closed_case: Duration = Field(
        default=SIX_YEARS,
        description="a duration in days or weeks such as 2192d (six years) or 313w",
    )
    purge_every: Duration = Field(
        default=timedelta(days=1), description="a duration such as 1d or 6h"
    )

    @field_validator("closed_case", "purge_every", mode="after")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("should be longer than zero (e.g. 2192d)")
        return value
