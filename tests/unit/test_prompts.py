"""Still-involved prompts over a real database with a movable clock: each prompt, reminder and
lapse happens once, in working hours, not while someone is away; the answers (reactions,
`!confirm`, `!leave`) are recorded with their audit rows; the outbox sender's hook records the
prompt's event and adds the two reactions, once, even when a send is replayed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from nio import RoomGetStateEventResponse, RoomKickResponse, RoomSendResponse

from bot.outbox import OutboxSender
from commands.framework.context import RoomKind
from rooms.policy import TeamPolicy
from rooms.prompts import (
    LAPSE_KICK_REASON,
    LEAVE_KICK_REASON,
    NO,
    YES,
    DirectRooms,
    PromptSettings,
    SweepReport,
    on_message_sent,
    on_poll_response,
    on_reaction,
    poll_answers,
    queued_content,
    sweep,
)
from rooms.prompts.rendering import REMINDER, RENDER_KEY
from rooms.prompts.wording import POLL_START, POLL_TEXT
from storage import Database, Family, Involvement, OutboxItem, Prompt
from tests.unit.test_team_commands_support import (
    ADMIN,
    BOT,
    DM,
    LEAD,
    LONDON,
    NURSE,
    OFFICE,
    POLICY,
    ROOM,
    SETTINGS,
    TEACHER,
    ManualClock,
    active_family,
    audits,
    member,
    outbox,
    run,
    say,
)

pytest_plugins = ("tests.unit.test_team_commands_support",)

# The support module's clock starts on Monday 2 March 2026, 10:30 UTC (GMT); the team joins
# then, so the first prompts fall due eight weeks on: Monday 27 April, 11:30 BST.
DUE = datetime(2026, 4, 27, 10, 30, tzinfo=UTC)


def london(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=LONDON).astimezone(UTC)  # type: ignore[misc]


class FakeClient:
    """What the outbox sender needs of nio: sends get event ids derived from their
    transaction ids, so a replayed send gets the same id back, as Synapse answers."""

    user_id = BOT
    olm = None  # no encryption here

    def __init__(self) -> None:
        self.rooms: dict[str, Any] = {}
        self.sent: list[tuple[str, str, dict[str, Any], str]] = []
        self.kicks: list[tuple[str, str, str | None]] = []
        self.done: list[tuple[str, str]] = []
        """Sends (by transaction id) and kicks (by user), in the order they were made."""

    async def room_send(
        self,
        room_id: str,
        message_type: str,
        content: dict[str, Any],
        tx_id: str,
        ignore_unverified_devices: bool = False,
    ) -> RoomSendResponse:
        self.sent.append((room_id, message_type, content, tx_id))
        self.done.append(("send", tx_id))
        return RoomSendResponse(f"$ev-{tx_id}", room_id)

    async def room_kick(self, room_id: str, user_id: str, reason: str | None) -> RoomKickResponse:
        self.kicks.append((room_id, user_id, reason))
        self.done.append(("kick", user_id))
        return RoomKickResponse()

    async def room_get_state_event(
        self, room_id: str, event_type: str, state_key: str
    ) -> RoomGetStateEventResponse:
        """Asked before a kick: everyone is still in the room."""
        return RoomGetStateEventResponse({"membership": "join"}, event_type, state_key, room_id)


async def do_sweep(
    db: Database,
    settings: PromptSettings = SETTINGS,
    policy: TeamPolicy = POLICY,
    direct_rooms: DirectRooms | None = None,
) -> SweepReport:
    return await sweep(db, settings, policy, direct_rooms=direct_rooms)


async def deliver(db: Database, client: FakeClient | None = None) -> FakeClient:
    """Drain the outbox through the real sender (and its prompt hook) until nothing is due."""
    client = client or FakeClient()
    async with db.transaction() as tx:
        # The family's own set-up (room creation, the lead's invite) is not under test here.
        for item in await tx.outbox.due(1000):
            if item.kind in ("create_room", "invite"):
                await tx.outbox.mark_sent(item.id, None)
    sender = OutboxSender(
        db, client, on_sent=on_message_sent, content=lambda item: written(db, item)  # type: ignore[arg-type]
    )
    while await sender.drain_once():
        pass
    return client


async def written(db: Database, item: OutboxItem) -> dict[str, Any] | None:
    """What the bot's content hook writes for a question, reminder or lapse queued by name."""
    async with db.read() as tx:
        return await queued_content(tx, item.room_id, item.payload, SETTINGS, POLICY)


async def content_of(db: Database, item: OutboxItem) -> dict[str, Any]:
    """The content a queued message is sent with: its own, or the one written as it goes."""
    if "content" in item.payload:
        content: dict[str, Any] = item.payload["content"]
        return content
    found = await written(db, item)
    assert found is not None, "a question, reminder or lapse notice still to be sent"
    return found


def reminders(items: list[OutboxItem]) -> list[OutboxItem]:
    return [item for item in items if item.payload.get(RENDER_KEY) == REMINDER]


async def prompts(db: Database) -> list[Prompt]:
    async with db.read() as tx:
        rows = await tx.fetchall("SELECT * FROM prompt ORDER BY id")
    return [Prompt.from_row(row) for row in rows]


async def involvement(db: Database, family: Family, user_id: str) -> Involvement:
    async with db.read() as tx:
        found = await tx.involvements.get(family.id, user_id)
    assert found is not None
    return found


def messages(items: list[OutboxItem], event_type: str = "m.room.message") -> list[OutboxItem]:
    return [item for item in items if item.kind == "message" and item.payload["type"] == event_type]


def bodies(items: list[OutboxItem]) -> list[str]:
    """The bodies of queued messages; sent ones keep no content."""
    return [
        str(item.payload["content"]["body"])
        for item in messages(items)
        if "content" in item.payload
    ]


async def prompted_team(db: Database, clock: ManualClock) -> tuple[Family, FakeClient]:
    """Lead and teacher on the team, their prompts due, sent and delivered."""
    family = await active_family(db, joined=(TEACHER,))
    clock.current = DUE + timedelta(minutes=5)
    report = await do_sweep(db)
    assert report.prompted == 2
    return family, await deliver(db)


# --- prompting -------------------------------------------------------------------------------


async def test_a_due_prompt_is_sent_once_and_mentions_the_practitioner(
    db: Database, clock: ManualClock
) -> None:
    family = await active_family(db, joined=(TEACHER,))
    clock.current = DUE - timedelta(minutes=1)
    assert (await do_sweep(db)).prompted == 0
    before = len(await outbox(db))

    clock.current = DUE
    first = await do_sweep(db)
    again = await do_sweep(db)
    assert (first.prompted, again.prompted) == (2, 0)
    new = (await outbox(db))[before:]
    assert len(new) == 2
    written_now = [await content_of(db, item) for item in new]
    by_user = {content["m.mentions"]["user_ids"][0]: content for content in written_now}
    assert set(by_user) == {LEAD, TEACHER}
    content = by_user[TEACHER]
    assert content["m.mentions"] == {"user_ids": [TEACHER]}
    assert "https://matrix.to/#/@teacher:school.example" in content["formatted_body"]
    assert "Tara Teacher, are you still involved with this family?" in content["body"]
    assert "!confirm" in content["body"]
    assert "!leave [reason]" in content["body"]
    assert "Tap your answer in the poll below this message" in content["body"]
    assert f"react {YES}" in content["body"]
    assert NO in content["body"]
    assert "You joined this team on Mon 2 Mar 2026" in content["body"]
    assert all(item.room_id == ROOM for item in new)

    rows = await prompts(db)
    assert [row.due_at for row in rows] == [DUE, DUE]
    assert (await involvement(db, family, TEACHER)).next_prompt_at is None
    entries = await audits(db, "prompt")
    assert sorted(entry.detail["user"] for entry in entries) == [LEAD, TEACHER]
    assert {entry.actor for entry in entries} == {BOT}


async def test_sent_prompt_records_its_event_and_gets_one_poll_and_no_reaction(
    db: Database, clock: ManualClock
) -> None:
    """The bot never reacts to its own prompt (Element would count its ✅ as an answer): each
    prompt is followed by one poll whose answers name the prompt."""
    await active_family(db, joined=(TEACHER,))
    clock.current = DUE
    await do_sweep(db)
    client = await deliver(db)
    rows = await prompts(db)
    assert all(row.event_id is not None and row.sent_at == DUE for row in rows)
    assert [sent for sent in client.sent if sent[1] == "m.reaction"] == []
    polls = [content for _, kind, content, _ in client.sent if kind == POLL_START]
    assert len(polls) == 2
    answer_ids = sorted(
        tuple(answer["id"] for answer in poll[POLL_START]["answers"]) for poll in polls
    )
    assert answer_ids == sorted((f"yes-{row.id}", f"no-{row.id}") for row in rows)
    teacher_poll = next(poll for poll in polls if "Tara Teacher" in poll[POLL_TEXT])
    question = teacher_poll[POLL_START]["question"][POLL_TEXT]
    assert question == "Tara Teacher, are you still involved with this family?"
    assert teacher_poll[POLL_START]["max_selections"] == 1
    assert teacher_poll["m.mentions"] == {"user_ids": []}, "the prompt itself notifies"

    # A crash after the send but before it was marked sent replays the hook: nothing new.
    before = await outbox(db)
    prompt_items = [item for item in messages(before) if "prompt_id" in item.payload]
    async with db.transaction() as tx:
        for item in prompt_items:
            await on_message_sent(tx, item, f"$ev-{item.txn_id}")
    assert await outbox(db) == before
    assert [row.event_id for row in await prompts(db)] == [row.event_id for row in rows]


async def test_prompts_wait_for_working_hours_in_the_operators_zone(
    db: Database, clock: ManualClock
) -> None:
    # The team joins on Saturday 6 June 2026, so the prompts fall due on Saturday 1 August.
    clock.current = london(2026, 6, 6, 10, 0)
    await active_family(db, joined=(TEACHER,))
    for moment in (
        london(2026, 8, 1, 10, 1),  # Saturday, when due
        london(2026, 8, 2, 12, 0),  # Sunday
        london(2026, 8, 3, 8, 59, 59),  # Monday, a second before opening (07:59:59 UTC)
    ):
        clock.current = moment
        report = await do_sweep(db)
        assert report.closed_hours
        assert report.prompted == 0
    assert await prompts(db) == []
    clock.current = london(2026, 8, 3, 9, 0)  # 08:00 UTC: open in London's summer time
    assert (await do_sweep(db)).prompted == 2


async def test_practitioners_away_are_asked_when_they_are_back(
    db: Database, clock: ManualClock
) -> None:
    family = await active_family(db, joined=(TEACHER,))
    reply = await say(db, "!contact away 6 May", sender=TEACHER, room_kind=RoomKind.DIRECT)
    assert "away until Wed 6 May 2026" in reply.body
    clock.current = DUE
    report = await do_sweep(db)
    assert (report.prompted, report.deferred) == (1, 1)
    # Back on Thursday 7 May: asked at the first opening, 09:00 BST.
    assert (await involvement(db, family, TEACHER)).next_prompt_at == london(2026, 5, 7, 9, 0)
    clock.current = london(2026, 5, 6, 16, 0)
    assert (await do_sweep(db)).prompted == 0
    clock.current = london(2026, 5, 7, 9, 0)
    report = await do_sweep(db)
    assert report.prompted_users == [TEACHER]


async def test_closed_families_and_invited_members_are_not_asked(
    db: Database, clock: ManualClock
) -> None:
    family = await active_family(db, joined=(TEACHER,))
    async with db.transaction() as tx:
        await tx.families.close(family.id, "case closed")
    clock.current = DUE
    report = await do_sweep(db)
    assert (report.prompted, report.skipped) == (0, 2)
    assert await prompts(db) == []
    assert (await do_sweep(db)).skipped == 0, "skipped rows are not fetched again"


async def test_many_due_prompts_go_out_in_batches_once_each(
    db: Database, clock: ManualClock
) -> None:
    family = await active_family(db)
    people = [f"@worker{index:04d}:council.example" for index in range(450)]
    async with db.transaction() as tx:
        for person in people:
            row, _ = await tx.involvements.upsert_membership(family.id, person, "join")
            await tx.involvements.set_next_prompt(row.id, DUE)
    clock.current = DUE + timedelta(days=30)  # a long outage: all of them overdue at once
    small = PromptSettings(
        interval=SETTINGS.interval,
        remind_after=SETTINGS.remind_after,
        lapse_after=SETTINGS.lapse_after,
        remove_on_lapse=True,
        schedule=OFFICE,
        batch_size=64,
    )
    report = await do_sweep(db, small)
    assert report.prompted == 451  # the lead's own prompt too
    assert (await do_sweep(db, small)).prompted == 0
    items = messages(await outbox(db))
    prompt_items = [item for item in items if "prompt_id" in item.payload]
    assert len(prompt_items) == 451
    assert len({item.txn_id for item in prompt_items}) == 451
    assert len(await prompts(db)) == 451
    assert len(await audits(db, "prompt")) == 451
    async with db.read() as tx:
        assert await tx.audit.verify() is None, "rows written in bulk keep the hash chain"


# --- reminders and lapses --------------------------------------------------------------------


async def test_one_reminder_then_a_lapse_with_every_step_audited(
    db: Database, clock: ManualClock
) -> None:
    family, _ = await prompted_team(db, clock)
    await say(db, "!confirm", sender=LEAD)
    sent = (await prompts(db))[0].sent_at
    assert sent is not None

    clock.current = sent + timedelta(days=3) - timedelta(minutes=1)
    assert (await do_sweep(db)).reminded == 0
    clock.current = sent + timedelta(days=3)
    assert (await do_sweep(db)).reminded == 1
    assert (await do_sweep(db)).reminded == 0
    [reminder] = reminders(await outbox(db))
    content = await content_of(db, reminder)
    assert "A reminder" in content["body"]
    teacher_prompt = next(row for row in await prompts(db) if row.answered_at is None)
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": teacher_prompt.event_id}}
    assert content["m.mentions"] == {"user_ids": [TEACHER]}
    assert "Without an answer by Mon 11 May 2026" in content["body"]

    clock.current = sent + timedelta(days=14) - timedelta(minutes=1)
    assert (await do_sweep(db)).lapsed == 0
    clock.current = sent + timedelta(days=14)
    assert (await do_sweep(db)).lapsed == 1
    assert (await do_sweep(db)).lapsed == 0

    teacher = await involvement(db, family, TEACHER)
    assert (teacher.status, teacher.end_reason) == ("ended", "lapsed")
    [row] = [row for row in await prompts(db) if row.id == teacher_prompt.id]
    assert row.answer == "lapsed"
    items = await outbox(db)
    [kick] = [item for item in items if item.kind == "kick"]
    assert kick.payload == {"user_id": TEACHER, "reason": LAPSE_KICK_REASON}
    told = await content_of(db, messages(items)[-1])
    assert told["m.mentions"] == {"user_ids": [LEAD]}
    assert "did not answer whether they are still involved" in told["body"]
    assert "removed them from this room" in told["body"]
    steps = [e.action for e in await audits(db) if e.detail.get("user") == TEACHER]
    assert steps[-4:] == ["membership", "prompt", "prompt_reminder", "lapse"]

    # The kick comes back as a membership event: mirrored, but the team is not told twice.
    before = len(messages(await outbox(db)))
    await member(db, TEACHER, "leave", sender=BOT)
    assert len(messages(await outbox(db))) == before
    assert (await involvement(db, family, TEACHER)).end_reason == "lapsed"


async def test_nobody_lapses_without_a_reminder_and_its_full_notice(
    db: Database, clock: ManualClock
) -> None:
    family, _ = await prompted_team(db, clock)
    sent = (await prompts(db))[0].sent_at
    assert sent is not None
    # The bot was down past both deadlines: the first sweep back only reminds.
    clock.current = sent + timedelta(days=21)  # Monday 18 May
    report = await do_sweep(db)
    assert (report.reminded, report.lapsed) == (2, 0)
    clock.current = sent + timedelta(days=32) - timedelta(minutes=1)
    assert (await do_sweep(db)).lapsed == 0
    clock.current = sent + timedelta(days=32, hours=1)
    assert (await do_sweep(db)).lapsed == 2
    assert (await involvement(db, family, LEAD)).end_reason == "lapsed"


async def test_a_lapsed_lead_is_reported_to_the_admins(db: Database, clock: ManualClock) -> None:
    family, _ = await prompted_team(db, clock)
    await say(db, "!confirm", sender=TEACHER)
    sent = (await prompts(db))[0].sent_at
    assert sent is not None
    clock.current = sent + timedelta(days=3)
    await do_sweep(db)
    clock.current = sent + timedelta(days=14)
    dms = {ADMIN: DM}
    report = await do_sweep(db, direct_rooms=dms.get)
    assert report.lapsed == 1
    items = messages(await outbox(db))
    in_room = await content_of(db, items[-2])
    assert items[-2].room_id == ROOM
    assert in_room["m.mentions"] == {"user_ids": [ADMIN]}
    assert "They were this family's lead" in in_room["body"]
    direct = items[-1]
    assert direct.room_id == DM
    direct_body = (await content_of(db, direct))["body"]
    assert family.reference in direct_body
    assert "!lead @user:server" in direct_body
    [entry] = await audits(db, "lapse")
    assert entry.detail["was_lead"] is True


async def test_lapsed_members_stay_in_the_room_when_the_operator_says_so(
    db: Database, clock: ManualClock
) -> None:
    keep = PromptSettings(
        interval=SETTINGS.interval,
        remind_after=SETTINGS.remind_after,
        lapse_after=SETTINGS.lapse_after,
        remove_on_lapse=False,
        schedule=OFFICE,
    )
    family = await active_family(db, joined=(TEACHER,))
    clock.current = DUE
    await do_sweep(db, keep)
    await deliver(db)
    clock.current = DUE + timedelta(days=3)
    await do_sweep(db, keep)
    clock.current = DUE + timedelta(days=14)
    assert (await do_sweep(db, keep)).lapsed == 2
    assert not [item for item in await outbox(db) if item.kind == "kick"]
    assert (await involvement(db, family, TEACHER)).membership == "join"


async def test_reminders_and_lapses_wait_while_someone_is_away(
    db: Database, clock: ManualClock
) -> None:
    family, _ = await prompted_team(db, clock)
    sent = (await prompts(db))[0].sent_at
    assert sent is not None
    await say(db, "!contact away 31 May", sender=TEACHER, room_kind=RoomKind.DIRECT)
    clock.current = sent + timedelta(days=3)
    assert (await do_sweep(db)).reminded == 1  # the lead only
    clock.current = sent + timedelta(days=21)  # Monday 18 May
    report = await do_sweep(db)
    assert (report.reminded, report.lapsed) == (0, 1)  # the lead lapses; the teacher is away
    assert (await involvement(db, family, TEACHER)).is_active
    clock.current = london(2026, 6, 1, 9, 0)
    assert (await do_sweep(db)).reminded == 1


async def test_nothing_happens_outside_working_hours(db: Database, clock: ManualClock) -> None:
    await prompted_team(db, clock)
    clock.current = london(2026, 5, 16, 12, 0)  # a Saturday, past every deadline
    report = await do_sweep(db)
    assert report.closed_hours
    assert (report.reminded, report.lapsed) == (0, 0)


# --- answers ---------------------------------------------------------------------------------


async def react(db: Database, prompt: Prompt, sender: str, key: str, event_id: str) -> bool:
    assert prompt.event_id is not None
    async with db.transaction() as tx:
        return await on_reaction(
            tx,
            room_id=ROOM,
            sender=sender,
            reacts_to=prompt.event_id,
            key=key,
            event_id=event_id,
            settings=SETTINGS,
            prefix=POLICY.command_prefix,
        )


async def prompt_of(db: Database, family: Family, user_id: str) -> Prompt:
    row = await involvement(db, family, user_id)
    return next(prompt for prompt in await prompts(db) if prompt.involvement_id == row.id)


async def test_a_tick_confirms_and_sets_the_next_prompt(db: Database, clock: ManualClock) -> None:
    family, _ = await prompted_team(db, clock)
    prompt = await prompt_of(db, family, TEACHER)
    clock.current = london(2026, 4, 28, 16, 30)  # Tuesday afternoon
    assert not await react(db, prompt, LEAD, YES, "$lead-tick"), "not the lead's prompt"
    assert not await react(db, prompt, TEACHER, "\U0001f44d", "$thumb"), "not an answer"
    assert await react(db, prompt, TEACHER, YES + "\ufe0f", "$tick")
    assert not await react(db, prompt, TEACHER, NO, "$late-cross"), "the first answer wins"

    teacher = await involvement(db, family, TEACHER)
    assert teacher.is_active
    assert teacher.last_confirmed_at == clock.current
    assert teacher.next_prompt_at == london(2026, 6, 23, 16, 30)
    assert (await prompt_of(db, family, TEACHER)).answer == "yes"
    reply = messages(await outbox(db))[-1].payload["content"]
    assert reply["m.relates_to"] == {"m.in_reply_to": {"event_id": prompt.event_id}}
    assert "you are confirmed as still involved" in reply["body"]
    assert "I will ask again on Tue 23 Jun 2026" in reply["body"]
    [entry] = await audits(db, "confirm")
    assert entry.detail["via"] == "reaction"
    assert entry.detail["prompt_id"] == prompt.id

    # Replaying the same reaction (the sync after a crash) changes nothing.
    before = len(await outbox(db))
    assert not await react(db, prompt, TEACHER, YES, "$tick")
    assert len(await outbox(db)) == before


async def vote(db: Database, sender: str, answer_id: str, event_id: str) -> bool:
    source = {
        "type": "org.matrix.msc3381.poll.response",
        "content": {
            "org.matrix.msc3381.poll.response": {"answers": [answer_id]},
            "m.relates_to": {"rel_type": "m.reference", "event_id": "$poll"},
        },
    }
    answers = poll_answers(source)
    assert answers is not None
    async with db.transaction() as tx:
        return await on_poll_response(
            tx,
            room_id=ROOM,
            sender=sender,
            answers=answers,
            event_id=event_id,
            settings=SETTINGS,
            prefix=POLICY.command_prefix,
        )


async def test_a_vote_in_the_poll_answers_only_for_the_person_asked(
    db: Database, clock: ManualClock
) -> None:
    family, _ = await prompted_team(db, clock)
    prompt = await prompt_of(db, family, TEACHER)
    assert poll_answers({"type": "m.room.message", "content": {}}) is None
    assert not await vote(db, LEAD, f"yes-{prompt.id}", "$lead-vote"), "not the lead's prompt"
    assert not await vote(db, TEACHER, "maybe", "$odd"), "not one of our answers"
    assert await vote(db, TEACHER, f"yes-{prompt.id}", "$vote")
    assert not await vote(db, TEACHER, f"no-{prompt.id}", "$changed"), "the first answer wins"
    assert (await prompt_of(db, family, TEACHER)).answer == "yes"
    reply = messages(await outbox(db))[-1].payload["content"]
    assert reply["m.relates_to"] == {"m.in_reply_to": {"event_id": prompt.event_id}}
    assert "you are confirmed as still involved" in reply["body"]
    [entry] = await audits(db, "confirm")
    assert entry.detail["via"] == "poll"


async def test_a_cross_ends_the_involvement_and_removes_them(
    db: Database, clock: ManualClock
) -> None:
    family, _ = await prompted_team(db, clock)
    prompt = await prompt_of(db, family, TEACHER)
    assert await react(db, prompt, TEACHER, NO, "$cross")
    teacher = await involvement(db, family, TEACHER)
    assert (teacher.status, teacher.end_reason) == ("ended", "left")
    assert (await prompt_of(db, family, TEACHER)).answer == "no"
    *_, goodbye, kick = await outbox(db)
    assert kick.kind == "kick"
    assert kick.payload == {"user_id": TEACHER, "reason": LEAVE_KICK_REASON}
    assert "is no longer involved with this family" in goodbye.payload["content"]["body"]
    assert goodbye.payload["content"]["m.relates_to"] == {
        "m.in_reply_to": {"event_id": prompt.event_id}
    }
    [entry] = await audits(db, "leave")
    assert entry.detail == {"user": TEACHER, "via": "reaction", "reason": None,
                            "prompt_id": prompt.id}


async def test_confirm_command_answers_the_prompt_or_resets_the_clock(
    db: Database, clock: ManualClock
) -> None:
    family, _ = await prompted_team(db, clock)
    clock.current = london(2026, 4, 29, 10, 0)
    reply = await say(db, "!confirm", sender=TEACHER)
    assert "Tara Teacher: you are confirmed" in reply.body
    assert (await prompt_of(db, family, TEACHER)).answer == "yes"
    # Unprompted, later: no prompt to answer, the clock starts again from now.
    clock.current = london(2026, 5, 13, 11, 0)
    await say(db, "!confirm", sender=TEACHER)
    teacher = await involvement(db, family, TEACHER)
    assert teacher.next_prompt_at == london(2026, 7, 8, 11, 0)
    entries = await audits(db, "confirm")
    assert [entry.detail["prompt_id"] is None for entry in entries] == [False, True]
    # Nobody is asked early: the next sweep before then sends nothing to the teacher.
    clock.current = london(2026, 7, 8, 10, 59)
    assert TEACHER not in (await do_sweep(db)).prompted_users


async def test_leave_command_says_goodbye_before_removing_and_audits_the_reason(
    db: Database, clock: ManualClock
) -> None:
    family, _ = await prompted_team(db, clock)
    before = len(await outbox(db))
    assert await run(db, "!leave moved to   another school", sender=TEACHER, event_id="$bye") == []
    goodbye, kick = (await outbox(db))[before:]
    # The goodbye goes first, so it is still encrypted for the person leaving.
    assert goodbye.kind == "message"
    content = goodbye.payload["content"]
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$bye"}}
    assert "Tara Teacher is no longer involved with this family" in content["body"]
    assert "another school" not in content["body"]
    assert kick.kind == "kick"
    assert kick.payload == {"user_id": TEACHER, "reason": LEAVE_KICK_REASON}
    teacher = await involvement(db, family, TEACHER)
    assert (teacher.status, teacher.end_reason) == ("ended", "left")
    assert (await prompt_of(db, family, TEACHER)).answer == "no"
    [entry] = await audits(db, "leave")
    assert entry.detail["reason"] == "moved to another school"
    assert entry.detail["via"] == "command"
    # The lead leaving is told how the lead role passes on.
    await run(db, "!leave", sender=LEAD)
    assert "They were this family's lead" in bodies(await outbox(db))[-1]


async def test_answers_need_an_active_team_member_in_a_family_room(
    db: Database, clock: ManualClock
) -> None:
    await prompted_team(db, clock)
    assert "not on this family's team" in (await say(db, "!confirm", sender=NURSE)).body
    assert "not on this family's team" in (await say(db, "!leave", sender=NURSE)).body
    outside = await say(db, "!confirm", sender=TEACHER, room_kind=RoomKind.DIRECT, room_id=DM)
    assert "only works in a family room" in outside.body


async def test_an_earlier_periods_question_is_not_chased(db: Database, clock: ManualClock) -> None:
    family, _ = await prompted_team(db, clock)
    # The teacher walks out of the room without answering, and is invited back later.
    await member(db, TEACHER, "leave")
    clock.current = DUE + timedelta(days=1)
    await member(db, TEACHER, "invite", sender=LEAD)
    await member(db, TEACHER, "join")
    old = await prompt_of(db, family, TEACHER)
    assert old.answered_at is None
    clock.current = DUE + timedelta(days=21)
    report = await do_sweep(db)
    assert report.reminded == 1  # the lead's
    assert (await involvement(db, family, TEACHER)).is_active


# --- !contact away ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10 Aug", date(2026, 8, 10)),
        ("10/08/2026", date(2026, 8, 10)),
        ("2026-08-10", date(2026, 8, 10)),
        ("Friday", date(2026, 3, 6)),
        ("1 Feb", date(2027, 2, 1)),  # already passed this year: next year's
    ],
)
async def test_away_dates_are_read_as_people_write_them(
    db: Database, text: str, expected: date
) -> None:
    await say(db, f"!contact away {text}", sender=TEACHER, room_kind=RoomKind.DIRECT)
    async with db.read() as tx:
        practitioner = await tx.practitioners.get(TEACHER)
    assert practitioner is not None
    assert practitioner.away_until == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("next week", "is not a date I can read"),
        ("1 Feb 2026", "has already passed"),
        ("2028-01-01", "more than a year away"),
    ],
)
async def test_bad_away_dates_are_explained(db: Database, text: str, message: str) -> None:
    reply = await say(db, f"!contact away {text}", sender=TEACHER, room_kind=RoomKind.DIRECT)
    assert message in reply.body


async def test_away_off_clears_the_date_and_contact_shows_it(db: Database) -> None:
    await say(db, "!contact away 10 Aug", sender=TEACHER, room_kind=RoomKind.DIRECT)
    shown = await say(db, "!contact", sender=TEACHER, room_kind=RoomKind.DIRECT)
    assert "Away until: Mon 10 Aug 2026" in shown.body
    back = await say(db, "!contact away off", sender=TEACHER, room_kind=RoomKind.DIRECT)
    assert "Welcome back" in back.body
    async with db.read() as tx:
        practitioner = await tx.practitioners.get(TEACHER)
    assert practitioner is not None
    assert practitioner.away_until is None
    assert [entry.detail for entry in await audits(db, "contact_away")] == [
        {"until": "2026-08-10"},
        {"until": None},
    ]
