"""The bot's log on standard error: readable text lines, or one JSON object a line for a log
collector (`logging.format: json`).

A JSON line holds the time, level, logger, an `event` name that stays the same from one
occurrence to the next (the `event` given in `extra=`, else the message's template, before
its values are filled in), the message, any ids passed in `extra=`, and the traceback of an
error. Neither format ever gets message bodies, contact details or case references above
DEBUG: the code logs ids (family, outbox item, event, room), never what people wrote.

Nothing routine is logged at INFO on a timer: the libraries that would (APScheduler writes
two lines per sweep, about 2,900 a day; nio one per request; aiohttp one per request to the
metrics endpoint) are held at WARNING whatever the level.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

QUIET_LIBRARIES = ("apscheduler", "nio", "aiohttp.access", "peewee")
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.__dict__.get("event") or str(record.msg),
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD_ATTRIBUTES or key == "event":
                continue
            if isinstance(value, str | int | float | bool) or value is None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, log_format: str = "text", stream: TextIO | None = None) -> None:
    """Configure the root logger once at start-up (replacing any earlier handler)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = getattr(logging, level)
    root.setLevel(numeric)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, numeric))
