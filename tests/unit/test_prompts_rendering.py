"""A queued still-involved question or reminder names its prompt instead of carrying its text:
the text is written when the outbox sends it, the same as the sweep used to write it; one that
is no longer to be asked is dropped without a word; an item queued with its text (by an older
version) still goes as it is."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from markup import Reply
from rooms.prompts import PROMPT_PAYLOAD_KEY, prompt_transaction_id
from rooms.prompts.schedule import WORKING_HOURS_KEY, lapse_due
from rooms.prompts.wording import prompt_text, reminder_text
from storage import Database, OutboxItem
from storage.codec import encode_json_object
from tests.unit.test_prompts import (
    DUE,
    content_of,
    deliver,
    do_sweep,
    involvement,
    prompted_team,
    prompts,
    reminders,
)
from tests.unit.test_team_commands_support import (
    LEAD,
    POLICY,
    ROOM,
    SETTINGS,
    TEACHER,
    ManualClock,
    active_family,
    outbox,
    run,
)

pytest_plugins = ("tests.unit.test_team_commands_support",)


async def _questions(db: Database) -> dict[str, OutboxItem]:
    """The queued questions by the practitioner asked."""
    found: dict[str, OutboxItem] = {}
    items = await outbox(db)
    async with db.read() as tx:
        for item in items:
            prompt_id = item.payload.get(PROMPT_PAYLOAD_KEY)
            if item.kind == "message" and isinstance(prompt_id, int):
                prompt = await tx.prompts.get(prompt_id)
                assert prompt is not None
                row = await tx.involvements.by_id(prompt.involvement_id)
                assert row is not None
                found[row.user_id] = item
    return found


async def test_a_queued_question_names_its_prompt_and_is_written_as_before(
    db: Database, clock: ManualClock
) -> None:
    family = await active_family(db, joined=(TEACHER,))
    clock.current = DUE + timedelta(minutes=5)
    assert (await do_sweep(db)).prompted == 2
    item = (await _questions(db))[TEACHER]
    assert "content" not in item.payload, "the sweep queues no text"
    assert item.payload[WORKING_HOURS_KEY] is True
    assert len(encode_json_object(item.payload)) < 120
    teacher = await involvement(db, family, TEACHER)
    assert item.txn_id == prompt_transaction_id(teacher.id, DUE), "exactly once, as before"
    async with db.read() as tx:
        practitioner = await tx.practitioners.get(TEACHER)
    assert practitioner is not None
    # What the sweep used to store in the item, for the same unchanged involvement.
    before = Reply.from_markup(
        prompt_text(teacher, practitioner.display_name, SETTINGS, POLICY.command_prefix),
        notify=True,
    ).to_content()
    assert await content_of(db, item) == before
    client = await deliver(db)
    [(room_id, _, sent, txn_id)] = [s for s in client.sent if s[3] == item.txn_id]
    assert (room_id, sent, txn_id) == (ROOM, before, item.txn_id)
    assert f"$ev-{item.txn_id}" in {row.event_id for row in await prompts(db)}


async def test_a_queued_reminder_is_written_as_before(db: Database, clock: ManualClock) -> None:
    family, _ = await prompted_team(db, clock)
    await run(db, "!confirm", sender=LEAD)
    sent = (await prompts(db))[0].sent_at
    assert sent is not None
    clock.current = sent + timedelta(days=3)
    assert (await do_sweep(db)).reminded == 1
    [item] = reminders(await outbox(db))
    assert "content" not in item.payload
    teacher = await involvement(db, family, TEACHER)
    prompt = next(row for row in await prompts(db) if row.answered_at is None)
    deadline = lapse_due(replace(prompt, reminded_at=clock.current), SETTINGS)
    assert deadline is not None
    before = Reply.from_markup(
        reminder_text(
            teacher, "Tara Teacher", SETTINGS, SETTINGS.schedule.next_open(deadline),
            POLICY.command_prefix,
        ),
        notify=True,
    ).to_content()
    before["m.relates_to"] = {"m.in_reply_to": {"event_id": prompt.event_id}}
    assert await content_of(db, item) == before
    client = await deliver(db)
    assert [s[2] for s in client.sent if s[3] == item.txn_id] == [before]


async def test_a_question_no_longer_to_be_asked_is_dropped_quietly(
    db: Database, clock: ManualClock
) -> None:
    """The teacher left, and a second family's room was closed, between the sweep and the send:
    neither is asked, nobody is told of a failure, and nothing else is held back."""
    family = await active_family(db, joined=(TEACHER,))
    clock.current = DUE + timedelta(minutes=5)
    assert (await do_sweep(db)).prompted == 2
    questions = await _questions(db)
    teacher = await involvement(db, family, TEACHER)
    async with db.transaction() as tx:
        await tx.involvements.end(teacher.id, "left")
    before = len(await outbox(db))
    client = await deliver(db)
    asked = [s[3] for s in client.sent if "still involved" in str(s[2].get("body"))]
    assert asked == [questions[LEAD].txn_id]
    async with db.read() as tx:
        dropped = await tx.outbox.get(questions[TEACHER].txn_id)
    assert dropped is not None
    assert (dropped.failed_at is not None, dropped.last_error) == (True, "no longer to be sent")
    new = (await outbox(db))[before:]
    assert [item.payload.get("type") for item in new] == ["org.matrix.msc3381.poll.start"]


async def test_a_question_of_a_closed_family_is_not_sent(
    db: Database, clock: ManualClock
) -> None:
    family = await active_family(db, joined=(TEACHER,))
    clock.current = DUE + timedelta(minutes=5)
    assert (await do_sweep(db)).prompted == 2
    async with db.transaction() as tx:
        await tx.families.close(family.id, "case closed")
    client = await deliver(db)
    assert not [s for s in client.sent if "still involved" in str(s[2].get("body"))]
    assert all(item.failed_at is not None for item in (await _questions(db)).values())


async def test_a_question_queued_with_its_text_still_goes(
    db: Database, clock: ManualClock
) -> None:
    """Items written before questions were queued by name carry their content: sent as is."""
    family = await active_family(db, joined=(TEACHER,))
    teacher = await involvement(db, family, TEACHER)
    content = {"msgtype": "m.text", "body": "Tara, are you still involved? (old text)",
               "m.mentions": {"user_ids": [TEACHER]}}
    async with db.transaction() as tx:
        prompt_id = await tx.prompts.insert(teacher.id, DUE)
        assert prompt_id is not None
        await tx.outbox.enqueue(
            "old-question", ROOM, "message",
            {"type": "m.room.message", "content": content, PROMPT_PAYLOAD_KEY: prompt_id,
             WORKING_HOURS_KEY: True},
        )
    client = await deliver(db)
    assert [s[2] for s in client.sent if s[3] == "old-question"] == [content]
    [prompt] = [row for row in await prompts(db) if row.id == prompt_id]
    assert prompt.event_id == "$ev-old-question", "the poll follows, as before"
