"""What the bot counts for its operator, in Prometheus form (`/metrics`, see `bot.health`).

One `Metrics` object is built at start-up, with a CollectorRegistry of its own (never the
library's global one), and handed to the router, the sync loop and the outbox sender. Every
name starts `patchwork_`. Labels take only fixed values: a command's registered name (anything
else counts as "unknown"), an outcome, an error kind, a status. Never a user, room, event or
case reference, so a scrape holds no personal data.

Counters move as things happen; the gauges about stored work (outbox depth and age, prompts,
families and involvements by status) are read from the database at each scrape.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import get_args

from nio import ErrorResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.exposition import generate_latest

from bot import __version__
from storage import Database
from storage.models import FamilyStatus, InvolvementStatus
from storage.stats import read_stats

CommandOutcome = str
"""ok, user_error, failed, refused (server not allowed), rate_limited, unencrypted_room."""
DEFAULT_RETRY_AFTER_SECONDS = 5.0
"""What nio waits when a 429 names no retry_after_ms."""


class Metrics:
    """The bot's counters and gauges, and whether it is caught up with its homeserver."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self._last_sync: float | None = None
        self.registry = CollectorRegistry()
        registry = self.registry
        self._commands = Counter(
            "patchwork_commands", "Commands handled, by command and outcome",
            ["command", "outcome"], registry=registry,
        )
        self._errors = Counter(
            "patchwork_errors", "Errors by kind: sync, event, outbox_failed, reconcile",
            ["kind"], registry=registry,
        )
        self._undecryptable = Counter(
            "patchwork_undecryptable_events", "Events the bot could not decrypt on arrival",
            registry=registry,
        )
        self._limited = Counter(
            "patchwork_rate_limited_responses", "429 M_LIMIT_EXCEEDED answers waited out",
            registry=registry,
        )
        self._limited_seconds = Counter(
            "patchwork_rate_limit_wait_seconds", "Seconds spent waiting out 429 answers",
            registry=registry,
        )
        self._sent = Counter(
            "patchwork_outbox_sent_items", "Outbox items the homeserver accepted, by kind",
            ["kind"], registry=registry,
        )
        Gauge(
            "patchwork_sync_lag_seconds",
            "Seconds since the last sync response was processed (since start before the first)",
            registry=registry,
        ).set_function(self.sync_lag)
        self._outbox_pending = Gauge(
            "patchwork_outbox_pending_items", "Outbox items not yet sent or failed",
            registry=registry,
        )
        self._outbox_oldest = Gauge(
            "patchwork_outbox_oldest_item_age_seconds", "Age of the oldest pending outbox item",
            registry=registry,
        )
        self._prompts_due = Gauge(
            "patchwork_prompts_due", "Active involvements whose still-involved prompt is due",
            registry=registry,
        )
        self._prompts_sent = Gauge(
            "patchwork_prompts_sent", "Still-involved prompts sent (as stored)", registry=registry
        )
        self._prompts_lapsed = Gauge(
            "patchwork_prompts_lapsed", "Still-involved prompts left unanswered until they lapsed",
            registry=registry,
        )
        self._families = Gauge(
            "patchwork_families", "Families by status", ["status"], registry=registry
        )
        self._involvements = Gauge(
            "patchwork_involvements", "Involvements by status", ["status"], registry=registry
        )
        Info("patchwork_build", "The running Patchwork", registry=registry).info(
            {"version": __version__, "python": platform.python_version()}
        )

    # Events, counted as they happen.

    def command(self, name: str, outcome: CommandOutcome) -> None:
        self._commands.labels(command=name, outcome=outcome).inc()

    def error(self, kind: str) -> None:
        self._errors.labels(kind=kind).inc()

    def undecryptable(self) -> None:
        self._undecryptable.inc()

    def sent(self, kind: str) -> None:
        self._sent.labels(kind=kind).inc()

    async def on_response(self, response: object) -> None:
        """nio response callback: nio calls it with each 429 before it waits that one out."""
        if isinstance(response, ErrorResponse) and response.status_code == "M_LIMIT_EXCEEDED":
            retry_ms = getattr(response, "retry_after_ms", None)
            wait = retry_ms / 1000 if retry_ms else DEFAULT_RETRY_AFTER_SECONDS
            self._limited.inc()
            self._limited_seconds.inc(wait)

    # Being caught up, for /healthz.

    def synced(self) -> None:
        """A sync response has been processed and committed."""
        self._last_sync = self._clock()

    def sync_lag(self) -> float:
        return self._clock() - (self._started if self._last_sync is None else self._last_sync)

    def health(self, max_lag_seconds: float) -> tuple[bool, str]:
        """(healthy, why) for /healthz: caught up once the first sync is processed, and
        unhealthy again while no sync has completed for longer than `max_lag_seconds`."""
        if self._last_sync is None:
            return False, "starting: the first sync has not been processed yet"
        lag = self.sync_lag()
        if lag > max_lag_seconds:
            return False, f"lagging: the last sync was processed {lag:.0f}s ago"
        return True, f"ok: the last sync was processed {lag:.0f}s ago"

    # The scrape.

    async def render(self, db: Database) -> bytes:
        """The Prometheus text exposition, with the stored-work gauges read just now."""
        async with db.read() as tx:
            stats = await read_stats(tx)
        self._outbox_pending.set(stats.outbox_pending)
        self._outbox_oldest.set(stats.outbox_oldest_age_seconds)
        self._prompts_due.set(stats.prompts_due)
        self._prompts_sent.set(stats.prompts_sent)
        self._prompts_lapsed.set(stats.prompts_lapsed)
        for status in get_args(FamilyStatus):
            self._families.labels(status=status).set(stats.families.get(status, 0))
        for status in get_args(InvolvementStatus):
            self._involvements.labels(status=status).set(stats.involvements.get(status, 0))
        return generate_latest(self.registry)
