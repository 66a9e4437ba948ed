"""Counting for the fault suite: what was attempted, what was lost, what was doubled.

A `Ledger` records every command a test sends (who sent it, where, its event id) and counts the
bot's replies to each, as one member of each room saw them: a reply is a message from the bot
whose `m.in_reply_to` names the command. Lost means no reply, doubled means more than one.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from devkit.botproc import BotProcess
from devkit.practitioner import Practitioner
from devkit.testbot import FAULT_ENV
from tests.integration.replies import reply_counts

SLOW_DOWN_WORDS = "faster than I can answer"
"""In the bot's request to slow down (bot.ratelimit): a reply that is not an answer."""

__all__ = ["FAULT_ENV", "Ledger", "Sent", "summary_line", "wait_for_fault"]


@dataclass(frozen=True)
class Sent:
    person: Practitioner
    room_id: str
    event_id: str
    body: str


@dataclass
class Ledger:
    """The commands of one scenario and the bot's answers to them."""

    bot_user: str
    sent: list[Sent] = field(default_factory=list)
    viewers: dict[str, Practitioner] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)
    """Other things that must happen exactly once (a room, an invite, a prompt): how often."""

    async def send(self, person: Practitioner, room_id: str, body: str) -> str:
        event_id = await person.send_text(room_id, body)
        self.record(person, room_id, event_id, body)
        return event_id

    def watch(self, person: Practitioner, room_id: str) -> None:
        """Count (and settle) this room as `person` sees it, without a command of our own."""
        self.viewers.setdefault(room_id, person)

    def expect_once(self, what: str, seen: int) -> None:
        self.items[what] = seen

    def record(self, person: Practitioner, room_id: str, event_id: str, body: str) -> None:
        self.viewers.setdefault(room_id, person)
        self.sent.append(Sent(person, room_id, event_id, body))

    def counts(self) -> Counter[str]:
        """Replies per event id, each room counted once (as its first sender saw it)."""
        total: Counter[str] = Counter()
        for room_id, viewer in self.viewers.items():
            total.update(reply_counts(viewer.notices(room_id, self.bot_user)))  # type: ignore[arg-type]
        return total

    @property
    def attempted(self) -> int:
        return len(self.sent) + len(self.items)

    def lost(self, among: list[Sent] | None = None) -> list[Sent]:
        counts = self.counts()
        return [item for item in (self.sent if among is None else among)
                if counts[item.event_id] == 0]

    def lost_items(self) -> list[str]:
        return [what for what, seen in self.items.items() if seen == 0]

    def doubled_items(self) -> dict[str, int]:
        return {what: seen for what, seen in self.items.items() if seen > 1}

    def doubled(self) -> dict[str, int]:
        counts = self.counts()
        return {
            f"{item.body!r} {item.event_id}": counts[item.event_id]
            for item in self.sent
            if counts[item.event_id] > 1
        }

    def slow_downs(self) -> int:
        """Replies that only asked to slow down: a paced test must never see one."""
        return sum(
            1
            for room_id, viewer in self.viewers.items()
            for message in viewer.notices(room_id, self.bot_user)
            if SLOW_DOWN_WORDS in message.body
        )

    def replies_containing(self, phrases: tuple[str, ...]) -> list[str]:
        """The bot's messages in the watched rooms that contain any of `phrases`."""
        return [
            message.body
            for room_id, viewer in self.viewers.items()
            for message in viewer.notices(room_id, self.bot_user)
            if any(phrase in message.body for phrase in phrases)
        ]

    async def wait_all_answered(
        self, timeout: float = 90, among: list[Sent] | None = None
    ) -> float:
        """Wait until every command (or those `among`) has at least one reply; returns when
        that was (monotonic)."""
        try:
            async with asyncio.timeout(timeout):
                while self.lost(among):  # noqa: ASYNC110 - the practitioners' syncs fill it
                    await asyncio.sleep(0.2)
        except TimeoutError:
            missing = [(item.body, item.event_id) for item in self.lost(among)]
            unreadable = {
                viewer.user_id: len(viewer.undecryptable(room_id))
                for room_id, viewer in self.viewers.items()
            }
            raise AssertionError(
                f"{len(missing)} of {len(self.sent)} commands unanswered after {timeout:g} s: "
                f"{missing[:10]}; events the senders could not decrypt: {unreadable}"
            ) from None
        return time.monotonic()

    async def settle(self, seconds: float = 1.5) -> None:
        """A last command in each room as a barrier, then a pause: once the barrier is
        answered, a duplicate of anything before it would have arrived too (the outbox keeps
        each room's messages in order)."""
        barriers: list[tuple[Practitioner, str, str]] = []
        for room_id, viewer in self.viewers.items():
            barriers.append((viewer, room_id, await viewer.send_text(room_id, "!help help")))
        for viewer, room_id, event_id in barriers:
            await viewer.wait_for_notice(
                room_id,
                sender=self.bot_user,
                predicate=lambda n, e=event_id: (
                    n.source["content"].get("m.relates_to", {}).get("m.in_reply_to", {})
                    .get("event_id") == e
                ),
                timeout=60,
            )
        await asyncio.sleep(seconds)

    def check(self, fault: str, recovery_s: float) -> str:
        """Print the summary line, then fail if anything was lost or doubled."""
        lost = [f"{item.body!r} {item.event_id}" for item in self.lost()] + self.lost_items()
        doubled = {**self.doubled(), **self.doubled_items()}
        line = summary_line(fault, self.attempted, len(lost), len(doubled), recovery_s)
        print(f"\n{line}")
        assert not lost, f"{fault}: lost {lost}"
        assert not doubled, f"{fault}: doubled {doubled}"
        assert self.slow_downs() == 0, f"{fault}: the bot asked to slow down (pacing too fast)"
        return line


def summary_line(fault: str, attempted: int, lost: int, doubled: int, recovery_s: float) -> str:
    return (
        f"fault={fault} attempted={attempted} lost={lost} doubled={doubled} "
        f"recovery_s={recovery_s:.1f}"
    )


async def wait_for_fault(bot: BotProcess, point: str, timeout: float = 60) -> float:
    """Wait for the bot to end itself at `point`; returns the moment (monotonic) it did."""
    process = bot.process
    assert process is not None, "the bot is not running"
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        raise AssertionError(
            f"the bot did not reach {point} within {timeout:g} s; log:\n{bot.log_tail()}"
        ) from None
    died = time.monotonic()
    code = await bot.kill()  # collects the log reader; the process is already gone
    assert code == 137, f"exit code {code}; log:\n{bot.log_tail()}"
    assert f"fault injected at {point}" in bot.log_tail(400), bot.log_tail()
    return died
