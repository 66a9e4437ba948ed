"""Named points where the fault suite stops the bot, to prove that a crash there loses and
doubles nothing. The running bot reaches them through a `Faults` object handed down from
`run_bot`; the installed `patchwork` command always passes `NO_FAULTS`, so no configuration can
turn one on: only the tests' entry point (`devkit.testbot`) passes another."""

from __future__ import annotations

from typing import Protocol

CREATE_ROOM_RETURNED = "create_room.returned"
"""The homeserver made the room; nothing is recorded yet."""
SEND_ACCEPTED = "send.accepted"
"""The homeserver accepted a message or an action; it is not marked sent yet."""
BEFORE_TOKEN = "sync.before_token"  # noqa: S105 - a point name, not a secret
"""A response's events are committed but its last, whose transaction also stores the sync token
and has not committed (or, when the response ends with nothing to apply, all of its events)."""
SWEEP_BATCH = "sweep.batch_committed"
"""One batch of a prompt sweep has committed; the rest of the sweep has not run."""
POINTS = (CREATE_ROOM_RETURNED, SEND_ACCEPTED, BEFORE_TOKEN, SWEEP_BATCH)


class Faults(Protocol):
    def reached(self, point: str) -> None:
        """Called at each point; a test's implementation may end the process there."""


class NoFaults:
    """What production runs with: every point passes."""

    def reached(self, point: str) -> None:
        return None


NO_FAULTS: Faults = NoFaults()
