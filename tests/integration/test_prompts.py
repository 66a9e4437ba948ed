"""Still-involved prompts against a real Synapse, moving the bot's clock: prompts arrive once in
working hours (not while someone is away) and are answered by reaction or command; a reminder
and a lapse each happen once, across restarts and a SIGKILL right after a prompt was sent."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from nio import ReactionEvent, RoomMessageNotice, RoomSendResponse, UnknownEvent
from nio.api import Api

from devkit.botproc import BotProcess
from devkit.clock import CLOCK_FILE_ENV
from devkit.practitioner import Practitioner
from storage import AuditEntry, Involvement, Prompt
from tests.integration.conftest import BotFactory, MakePractitioner
from tests.integration.replies import in_reply_to
from tests.integration.test_family_rooms import activate, bot_database, create_family

LONDON = ZoneInfo("Europe/London")
YES = "\u2705"
NO = "\u274c"
FAST_SWEEPS = {"prompts": {"sweep_every": "1s"}}


class BotClock:
    """Moves the bot's time through the file named by PATCHWORK_CLOCK_FILE."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def set(self, *parts: int) -> None:
        """A London wall-clock time (year, month, day, hour, minute[, second])."""
        instant = datetime(*parts, tzinfo=LONDON).astimezone(UTC)  # type: ignore[misc]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(instant.isoformat(), encoding="utf-8")
        os.replace(tmp, self.path)


@pytest.fixture
def clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BotClock:
    """Every bot this test starts reads its time from the file (see bot.clock.FileClock)."""
    path = tmp_path / "clock.txt"
    monkeypatch.setenv(CLOCK_FILE_ENV, str(path))
    return BotClock(path)


def is_prompt(notice: RoomMessageNotice) -> bool:
    return "are you still involved with this family?" in notice.body and not notice.body.startswith(
        "A reminder"
    )


def is_reminder(notice: RoomMessageNotice) -> bool:
    return notice.body.startswith("A reminder")


def mentioned(notice: RoomMessageNotice) -> list[str]:
    return list(notice.source["content"].get("m.mentions", {}).get("user_ids", []))


def prompts_for(person: Practitioner, room_id: str, bot: BotProcess) -> dict[str, int]:
    """How many prompts each user was asked, as `person` saw the room."""
    counts: dict[str, int] = {}
    for notice in person.notices(room_id, bot.user_id):
        if is_prompt(notice):
            for user_id in mentioned(notice):
                counts[user_id] = counts.get(user_id, 0) + 1
    return counts


async def wait_for_prompt(
    person: Practitioner, room_id: str, bot: BotProcess, user_id: str, timeout: float = 30
) -> RoomMessageNotice:
    return await person.wait_for_notice(
        room_id,
        sender=bot.user_id,
        predicate=lambda n: is_prompt(n) and mentioned(n) == [user_id],
        timeout=timeout,
    )


async def react_encrypted(person: Practitioner, room_id: str, event_id: str, key: str) -> str:
    """React as current Element does, inside an encrypted event (the harness's `react` sends
    reactions in the clear, as older clients and nio do)."""
    await person.send_text(room_id, "(checking in)")  # makes sure the bot has our room key
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
    event_type, encrypted = person.client.encrypt(room_id, "m.reaction", content)
    method, path, data = Api.room_send(
        person.client.access_token, room_id, event_type, encrypted, f"react-{event_id}-{key}"
    )
    response = await person.client._send(RoomSendResponse, method, path, data, (room_id,))
    assert isinstance(response, RoomSendResponse), response
    return str(response.event_id)


def bot_reactions(person: Practitioner, room_id: str, bot: BotProcess, event_id: str) -> list[str]:
    return sorted(
        event.key
        for event in person.timeline(room_id)
        if isinstance(event, ReactionEvent)
        and event.sender == bot.user_id
        and event.reacts_to == event_id
    )


POLL_START = "org.matrix.msc3381.poll.start"
POLL_RESPONSE = "org.matrix.msc3381.poll.response"


def bot_polls(person: Practitioner, room_id: str, bot: BotProcess) -> list[dict[str, Any]]:
    """The content of every poll the bot started in the room, as `person` decrypted it."""
    return [
        event.source["content"]
        for event in person.timeline(room_id)
        if isinstance(event, UnknownEvent) and event.type == POLL_START
        and event.sender == bot.user_id
    ]


def poll_for(
    person: Practitioner, room_id: str, bot: BotProcess, user_id: str
) -> tuple[str, dict[str, str]] | None:
    """The poll asking `user_id` (its question names them): its event id and answer ids."""
    name = user_id.removeprefix("@").split(":")[0]
    for event in person.timeline(room_id):
        if isinstance(event, UnknownEvent) and event.type == POLL_START and (
            event.sender == bot.user_id
        ):
            start = event.source["content"][POLL_START]
            question = start["question"]["org.matrix.msc1767.text"]
            if name in question:
                answers = {a["id"].split("-")[0]: a["id"] for a in start["answers"]}
                return str(event.event_id), answers
    return None


async def vote(person: Practitioner, room_id: str, poll_id: str, answer_id: str) -> str:
    """Vote as Element does: an encrypted poll response referring to the poll."""
    content = {
        POLL_RESPONSE: {"answers": [answer_id]},
        "m.relates_to": {"rel_type": "m.reference", "event_id": poll_id},
    }
    await person.send_text(room_id, "(checking in)")  # makes sure the bot has our room key
    event_type, encrypted = person.client.encrypt(room_id, POLL_RESPONSE, content)
    method, path, data = Api.room_send(
        person.client.access_token, room_id, event_type, encrypted, f"vote-{poll_id}"
    )
    response = await person.client._send(RoomSendResponse, method, path, data, (room_id,))
    assert isinstance(response, RoomSendResponse), response
    return str(response.event_id)


async def relation_senders(person: Practitioner, room_id: str, event_id: str) -> list[str]:
    """Who sent each event relating to `event_id` (reactions, votes), as the homeserver
    aggregates them for every client: what Element counts under a message."""
    path = Api._build_path(
        ["rooms", room_id, "relations", event_id],
        {"access_token": person.client.access_token},
        base_path="/_matrix/client/v1",
    )
    response = await person.client.send("GET", path)
    assert response.status == 200, await response.text()
    body = await response.json()
    return sorted(str(event["sender"]) for event in body["chunk"])


async def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll `check` until it is true; fail naming `what` after `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not check():  # noqa: ASYNC110 - the practitioner's sync fills what we check
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}") from None


async def command(
    person: Practitioner, room_id: str, bot: BotProcess, body: str
) -> RoomMessageNotice:
    """Send a command and return the bot's reply to it (other notices may come in between)."""
    event_id = await person.send_text(room_id, body)
    return await person.wait_for_notice(
        room_id, sender=bot.user_id, predicate=lambda n: in_reply_to(n) == event_id
    )


async def join_team(
    lead: Practitioner, bot: BotProcess, room_id: str, reference: str, person: Practitioner
) -> None:
    await lead.ask(room_id, f"!invite {person.user_id} Support worker", bot=bot.user_id)
    await person.wait_for_invite(f"Team {reference}")
    await person.join(room_id)
    await lead.wait_for_membership(room_id, person.user_id, "join")
    await lead.wait_for_notice(
        room_id,
        sender=bot.user_id,
        predicate=lambda n: "joined" in n.body and person.user_id in (n.formatted_body or ""),
    )


async def roster(bot: BotProcess, room_id: str) -> dict[str, Involvement]:
    async with bot_database(bot) as db, db.read() as tx:
        family = await tx.families.by_room(room_id)
        assert family is not None
        rows = await tx.involvements.for_family(family.id, active_only=False)
    return {row.user_id: row for row in rows}


async def prompt_rows(bot: BotProcess) -> list[Prompt]:
    async with bot_database(bot) as db, db.read() as tx:
        rows = await tx.fetchall("SELECT * FROM prompt ORDER BY id")
    return [Prompt.from_row(row) for row in rows]


async def audit_trail(bot: BotProcess) -> list[AuditEntry]:
    async with bot_database(bot) as db, db.read() as tx:
        assert await tx.audit.verify() is None
        return list(reversed(await tx.audit.recent(None, 1000)))


async def test_prompts_come_once_in_working_hours_and_every_answer_works(
    make_practitioner: MakePractitioner, make_bot: BotFactory, clock: BotClock
) -> None:
    reference = "LDC-2026-0500"
    clock.set(2026, 6, 6, 10, 0)  # a Saturday: the prompts will fall due on a Saturday too
    bot = await make_bot(extra=FAST_SWEEPS)
    lead = await make_practitioner("lead")
    ticks = await make_practitioner("ticks")
    crosses = await make_practitioner("crosses")
    leaves = await make_practitioner("leaves")
    away = await make_practitioner("away")
    room_id, _ = await create_family(lead, bot, reference)
    await activate(lead, bot, room_id)
    for person in (ticks, crosses, leaves, away):
        await join_team(lead, bot, room_id, reference, person)
    reply = await away.ask(room_id, "!contact away 4 Aug", bot=bot.user_id)
    assert "away until Tue 4 Aug 2026" in reply.body

    # Due on Saturday 1 August: nothing at the weekend, nothing before 09:00 on Monday.
    clock.set(2026, 8, 1, 12, 0)
    await asyncio.sleep(4)
    clock.set(2026, 8, 3, 8, 59, 57)
    marker = await lead.send_text(room_id, "marker")
    await asyncio.sleep(1)
    assert prompts_for(lead, room_id, bot) == {}
    asked = [lead, ticks, crosses, leaves]
    notices = {p.user_id: await wait_for_prompt(lead, room_id, bot, p.user_id) for p in asked}
    rows = await prompt_rows(bot)
    assert len(rows) == 4
    opening = datetime(2026, 8, 3, 8, 0, tzinfo=UTC)  # 09:00 in London's summer time
    assert all(row.sent_at is not None and row.sent_at >= opening for row in rows)
    first = await lead.wait_for_notice(room_id, sender=bot.user_id, after_event_id=marker)
    assert is_prompt(first)

    # Each prompt is decryptable, mentions its practitioner, and is followed by a poll; the
    # bot adds no reaction of its own, so every count Element shows is people.
    ticks_prompt = await wait_for_prompt(ticks, room_id, bot, ticks.user_id)
    assert ticks_prompt.decrypted
    assert ticks_prompt.source["content"]["msgtype"] == "m.text", "a prompt must notify"
    assert ticks.user_id in ticks_prompt.source["content"]["formatted_body"]
    await eventually(lambda: len(bot_polls(lead, room_id, bot)) == 4, "a poll per prompt")
    for notice in notices.values():
        assert bot_reactions(lead, room_id, bot, notice.event_id) == []

    # The answers: an encrypted ✅, an encrypted ❌ (one sent in the clear does not count in an
    # encrypted room: the homeserver could have put it there), !confirm and !leave.
    await react_encrypted(ticks, room_id, notices[ticks.user_id].event_id, YES)
    await crosses.send_text(room_id, "(checking in)")  # nio shares its room key first
    await crosses.react(room_id, notices[crosses.user_id].event_id, NO)
    await react_encrypted(crosses, room_id, notices[crosses.user_id].event_id, NO)
    confirmed = await command(lead, room_id, bot, "!confirm")
    assert "you are confirmed as still involved" in confirmed.body
    assert "I will ask again on Mon 28 Sep 2026" in confirmed.body
    left = await command(leaves, room_id, bot, "!leave moved to another school")
    assert "no longer involved" in left.body
    thanks = await lead.wait_for_notice(
        room_id,
        sender=bot.user_id,
        predicate=lambda n: "you are confirmed" in n.body
        and in_reply_to(n) == notices[ticks.user_id].event_id,
    )
    assert ticks.user_id in thanks.source["content"]["formatted_body"]
    await lead.wait_for_membership(room_id, crosses.user_id, "leave")
    await lead.wait_for_membership(room_id, leaves.user_id, "leave")
    # A prompt answered by one person shows that person's answer alone.
    assert await relation_senders(lead, room_id, notices[ticks.user_id].event_id) == [
        ticks.user_id
    ]

    # Back from being away: asked on Wednesday, once; answered with one tap in the poll.
    clock.set(2026, 8, 5, 10, 0)
    away_prompt = await wait_for_prompt(lead, room_id, bot, away.user_id)
    await eventually(lambda: poll_for(away, room_id, bot, away.user_id) is not None, "the poll")
    found = poll_for(away, room_id, bot, away.user_id)
    assert found is not None
    poll_id, answer_ids = found
    await vote(away, room_id, poll_id, answer_ids["yes"])
    voted = await lead.wait_for_notice(
        room_id,
        sender=bot.user_id,
        predicate=lambda n: "you are confirmed" in n.body
        and in_reply_to(n) == away_prompt.event_id,
    )
    assert away.user_id in voted.source["content"]["formatted_body"]
    assert await relation_senders(lead, room_id, poll_id) == [away.user_id]
    assert await relation_senders(lead, room_id, away_prompt.event_id) == []

    barrier = await command(lead, room_id, bot, "!help confirm")
    await asyncio.sleep(3)  # three more sweeps: any duplicate would have come by now
    assert barrier.body
    assert prompts_for(lead, room_id, bot) == {
        p.user_id: 1 for p in (lead, ticks, crosses, leaves, away)
    }

    rows_by_user = await roster(bot, room_id)
    assert rows_by_user[ticks.user_id].is_active
    assert rows_by_user[ticks.user_id].last_confirmed_at is not None
    assert (rows_by_user[crosses.user_id].status, rows_by_user[crosses.user_id].end_reason) == (
        "ended",
        "left",
    )
    assert rows_by_user[leaves.user_id].end_reason == "left"
    assert rows_by_user[lead.user_id].is_active
    answers = sorted(str(row.answer) for row in await prompt_rows(bot))
    assert answers == ["no", "no", "yes", "yes", "yes"]
    trail = await audit_trail(bot)
    confirms = {e.detail["user"]: e.detail["via"] for e in trail if e.action == "confirm"}
    assert confirms == {
        ticks.user_id: "reaction", lead.user_id: "command", away.user_id: "poll"
    }
    leaves_audit = {e.detail["user"]: e.detail for e in trail if e.action == "leave"}
    assert leaves_audit[leaves.user_id]["reason"] == "moved to another school"
    assert leaves_audit[crosses.user_id]["via"] == "reaction"
    assert len([e for e in trail if e.action == "prompt"]) == 5


async def test_reminder_and_lapse_happen_once_across_restarts_and_a_crash(
    make_practitioner: MakePractitioner, make_bot: BotFactory, clock: BotClock
) -> None:
    reference = "LDC-2026-0600"
    clock.set(2026, 6, 3, 10, 0)  # Wednesday
    bot = await make_bot(extra=FAST_SWEEPS)
    lead = await make_practitioner("lead")
    quiet = await make_practitioner("quiet")
    room_id, _ = await create_family(lead, bot, reference)
    await activate(lead, bot, room_id)
    await join_team(lead, bot, room_id, reference, quiet)

    # Down across the due time; the start-up sweep sends the prompts, and the bot is killed
    # the moment the first one arrives.
    assert await bot.stop() == 0
    clock.set(2026, 7, 29, 11, 0)
    await bot.start()
    await lead.wait_for_notice(room_id, sender=bot.user_id, predicate=is_prompt, timeout=60)
    await bot.kill()
    await bot.start()
    prompts = {
        p.user_id: await wait_for_prompt(lead, room_id, bot, p.user_id) for p in (lead, quiet)
    }
    await eventually(lambda: len(bot_polls(lead, room_id, bot)) == 2, "a poll per prompt")
    await command(lead, room_id, bot, "!confirm")

    # One reminder, three days on (Saturday 1 August waits for Monday).
    clock.set(2026, 8, 1, 11, 30)
    await asyncio.sleep(3)
    assert not [n for n in lead.notices(room_id, bot.user_id) if is_reminder(n)]
    clock.set(2026, 8, 3, 10, 0)
    reminder = await lead.wait_for_notice(room_id, sender=bot.user_id, predicate=is_reminder)
    assert mentioned(reminder) == [quiet.user_id]
    assert in_reply_to(reminder) == prompts[quiet.user_id].event_id
    assert "Fri 14 Aug 2026" in reminder.body

    # Down across the lapse deadline: after the restart the quiet member lapses, once.
    assert await bot.stop() == 0
    clock.set(2026, 8, 14, 11, 0)
    await bot.start()
    told = await lead.wait_for_notice(
        room_id, sender=bot.user_id, predicate=lambda n: "has lapsed" in n.body, timeout=60
    )
    assert mentioned(told) == [lead.user_id], "the lead is told"
    assert "removed them from this room" in told.body
    await lead.wait_for_membership(room_id, quiet.user_id, "leave")
    assert await bot.stop() == 0
    await bot.start()
    await command(lead, room_id, bot, "!help")
    await asyncio.sleep(3)

    notices = lead.notices(room_id, bot.user_id)
    assert prompts_for(lead, room_id, bot) == {lead.user_id: 1, quiet.user_id: 1}
    assert len([n for n in notices if is_reminder(n)]) == 1
    assert len([n for n in notices if "has lapsed" in n.body]) == 1
    assert len(bot_polls(lead, room_id, bot)) == 2, "one poll per prompt, across the crash"
    for notice in prompts.values():
        assert bot_reactions(lead, room_id, bot, notice.event_id) == []
    quiet_row = (await roster(bot, room_id))[quiet.user_id]
    assert (quiet_row.status, quiet_row.end_reason, quiet_row.membership) == (
        "ended",
        "lapsed",
        "leave",
    )
    steps = [
        e.action
        for e in await audit_trail(bot)
        if e.detail.get("user") == quiet.user_id and e.action != "membership"
    ]
    assert steps == ["invite", "prompt", "prompt_reminder", "lapse"]
