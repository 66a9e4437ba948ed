"""A queued still-involved question, reminder or lapse notice names its prompt instead of
carrying its text: the text is written when the outbox sends it, the same as the sweep used to
write it; one that is no longer to be said is dropped without a word; an item queued with its
text (by an older version) still goes as it is."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from commands.framework.context import RoomKind
from markup import Reply
from rooms.closing import close_family, purge_family
from rooms.prompts import LAPSE_KICK_REASON, PROMPT_PAYLOAD_KEY, prompt_transaction_id
from rooms.prompts.schedule import WORKING_HOURS_KEY, lapse_due
from rooms.prompts.wording import prompt_text, reminder_text
from storage import BACKGROUND, Database, Family, OutboxItem, transaction_id
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
    ADMIN,
    BOT,
    DM,
    LEAD,
    POLICY,
    ROOM,
    SETTINGS,
    TEACHER,
    ManualClock,
    active_family,
    member,
    outbox,
    run,
    say,
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


async def _reminded(
    db: Database, clock: ManualClock, *, confirmed_by: str
) -> tuple[Family, datetime]:
    """The lead and the teacher asked, one confirms and the other is reminded: the family and
    when the questions were sent."""
    family, _ = await prompted_team(db, clock)
    await run(db, "!confirm", sender=confirmed_by)
    sent = (await prompts(db))[0].sent_at
    assert sent is not None
    clock.current = sent + timedelta(days=3)
    assert (await do_sweep(db)).reminded == 1
    return family, sent


async def test_a_queued_reminder_is_written_as_before(db: Database, clock: ManualClock) -> None:
    family, _ = await _reminded(db, clock, confirmed_by=LEAD)
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


# --- lapse notices ---------------------------------------------------------------------------

LAPSED = (
    " did not answer whether they are still involved, so their involvement has lapsed and I"
    " removed them from this room. If they are still involved, invite them again with "
)
INVITE_CODE = "`!invite @user:server <role>`."
INVITE_HTML = "<code>!invite @user:server &lt;role&gt;</code>."
LEAD_PILL = '<a href="https://matrix.to/#/@lead:council.example">Lee Lead</a>'
TEACHER_PILL = '<a href="https://matrix.to/#/@teacher:school.example">Tara Teacher</a>'
ADMIN_PILL = '<a href="https://matrix.to/#/@admin:council.example">@admin:council.example</a>'
HTML = "org.matrix.custom.html"
TOLD_THE_LEAD = {
    "msgtype": "m.text",
    "body": "Lee Lead: Tara Teacher" + LAPSED + INVITE_CODE,
    "format": HTML,
    "formatted_body": f"<p>{LEAD_PILL}: {TEACHER_PILL}{LAPSED}{INVITE_HTML}</p>",
    "m.mentions": {"user_ids": [LEAD]},
}
"""What the lapse notice said when it was written as the sweep queued it (the lead told)."""
LEAD_LAPSED = {
    "msgtype": "m.text",
    "body": "Lee Lead" + LAPSED + INVITE_CODE + "\nThey were this family's lead. Administrators"
    " (@admin:council.example): please hand the lead role to another member with"
    " `!lead @user:server`.",
    "format": HTML,
    "formatted_body": f"<p>{LEAD_PILL}{LAPSED}{INVITE_HTML}</p><p>They were this family&#x27;s"
    f" lead. Administrators ({ADMIN_PILL}): please hand the lead role to another member with"
    " <code>!lead @user:server</code>.</p>",
    "m.mentions": {"user_ids": [ADMIN]},
}
LEAD_LAPSED_REPORT = {
    "msgtype": "m.text",
    "body": "Lee Lead was the lead of the team for family `LDC-2026-0042` and their involvement "
    "has lapsed, leaving it without an active lead. Please hand the lead role to another "
    "member with `!lead @user:server` in the room `Team LDC-2026-0042`.",
    "format": HTML,
    "formatted_body": f"<p>{LEAD_PILL} was the lead of the team for family "
    "<code>LDC-2026-0042</code> and their involvement has lapsed, leaving it without an active "
    "lead. Please hand the lead role to another member with <code>!lead @user:server</code> "
    "in the room <code>Team LDC-2026-0042</code>.</p>",
    "m.mentions": {"user_ids": []},
}
"""The administrator's direct message when the lead lapsed: it notifies (`m.text`) with no
mention, as before."""


async def _lapse(
    db: Database, clock: ManualClock, *, confirmed_by: str
) -> tuple[Family, list[OutboxItem]]:
    """The lead and the teacher asked; one confirms, the other lapses. The family and what the
    lapse queued, the administrator having a direct chat with the bot."""
    family, sent = await _reminded(db, clock, confirmed_by=confirmed_by)
    await deliver(db)
    before = len(await outbox(db))
    clock.current = sent + timedelta(days=14)
    assert (await do_sweep(db, direct_rooms={ADMIN: DM}.get)).lapsed == 1
    return family, (await outbox(db))[before:]


def _names_in(payload: Mapping[str, Any]) -> list[str]:
    encoded = encode_json_object(payload)
    return [name for name in ("Lee", "Tara", "Teacher", "LDC-2026") if name in encoded]


async def test_a_queued_lapse_notice_names_its_prompt_and_is_written_as_before(
    db: Database, clock: ManualClock
) -> None:
    family, queued = await _lapse(db, clock, confirmed_by=LEAD)
    notice, kick = queued
    assert (notice.kind, kick.kind) == ("message", "kick")
    assert "content" not in notice.payload, "the sweep queues no text"
    assert _names_in(notice.payload) == []
    assert len(encode_json_object(notice.payload)) < 160
    teacher = await involvement(db, family, TEACHER)
    [prompt] = [row for row in await prompts(db) if row.answer == "lapsed"]
    assert teacher.id == prompt.involvement_id
    # What was decided at the lapse: ids and facts, no words.
    assert notice.payload == {
        "type": "m.room.message",
        "render": "lapse",
        "lapsed_prompt_id": prompt.id,
        "removed": True,
        "lead_lapsed": False,
        "told_lead": LEAD,
    }
    assert notice.txn_id == transaction_id("prompt", str(prompt.id), "lapse", "notice")
    assert await content_of(db, notice) == TOLD_THE_LEAD
    client = await deliver(db)
    # The notice goes first, so the person removed can still read why.
    assert [entry for entry in client.done if entry[1] in (notice.txn_id, TEACHER)] == [
        ("send", notice.txn_id), ("kick", TEACHER)
    ]
    assert [s[2] for s in client.sent if s[3] == notice.txn_id] == [TOLD_THE_LEAD]


async def test_a_lapsed_leads_notice_and_report_are_written_as_before(
    db: Database, clock: ManualClock
) -> None:
    _, (notice, kick, report) = await _lapse(db, clock, confirmed_by=TEACHER)
    assert (kick.kind, kick.payload["user_id"]) == ("kick", LEAD)
    assert (notice.room_id, report.room_id) == (ROOM, DM)
    for item in (notice, report):
        assert "content" not in item.payload
        assert _names_in(item.payload) == []
    assert await content_of(db, notice) == LEAD_LAPSED
    assert await content_of(db, report) == LEAD_LAPSED_REPORT
    client = await deliver(db)
    sent = {s[3]: s[2] for s in client.sent}
    assert (sent[notice.txn_id], sent[report.txn_id]) == (LEAD_LAPSED, LEAD_LAPSED_REPORT)


async def test_a_lapse_notice_says_the_names_as_they_are_when_sent(
    db: Database, clock: ManualClock
) -> None:
    _, (notice, _) = await _lapse(db, clock, confirmed_by=LEAD)
    await say(db, "!contact set name Tara Smith", sender=TEACHER, room_kind=RoomKind.DIRECT)
    await say(db, "!contact set name Lee Jones", sender=LEAD, room_kind=RoomKind.DIRECT)
    client = await deliver(db)
    [told] = [s[2] for s in client.sent if s[3] == notice.txn_id]
    assert told["body"].startswith("Lee Jones: Tara Smith did not answer")
    pills = LEAD_PILL.replace("Lee Lead", "Lee Jones") + ": " + TEACHER_PILL.replace(
        "Tara Teacher", "Tara Smith"
    )
    assert told["formatted_body"].startswith("<p>" + pills + " did not answer")
    assert told["m.mentions"] == {"user_ids": [LEAD]}, "the lead of the time of the lapse"


async def test_a_lapse_is_told_even_if_the_person_is_back_by_then(
    db: Database, clock: ManualClock
) -> None:
    """A lapse is a past fact: the team hears of it, whoever has joined since."""
    _, (notice, _) = await _lapse(db, clock, confirmed_by=LEAD)
    await member(db, TEACHER, "leave", sender=BOT)
    await member(db, TEACHER, "invite", sender=LEAD)
    await member(db, TEACHER, "join")
    client = await deliver(db)
    assert [s[2] for s in client.sent if s[3] == notice.txn_id] == [TOLD_THE_LEAD]


async def test_lapse_notices_of_a_family_closed_since_are_not_sent(
    db: Database, clock: ManualClock
) -> None:
    """Closing told the team that every involvement ended; nobody is asked to act on a lapse
    (invite again, hand the lead role on) in a closed family."""
    family, (notice, _, report) = await _lapse(db, clock, confirmed_by=TEACHER)
    async with db.transaction() as tx:
        await close_family(tx, family, actor=ADMIN, reason=None, policy=POLICY, cause="$close")
    client = await deliver(db)
    assert not [s for s in client.sent if s[3] in (notice.txn_id, report.txn_id)]
    async with db.read() as tx:
        for item in (notice, report):
            dropped = await tx.outbox.get(item.txn_id)
            assert dropped is not None
            assert dropped.last_error == "no longer to be sent"


async def test_a_lapse_report_of_a_family_purged_since_is_not_sent(
    db: Database, clock: ManualClock
) -> None:
    """The purge forgets the room's queue; the administrator's direct message, queued in
    another room, names nobody once the family is gone."""
    family, (_, _, report) = await _lapse(db, clock, confirmed_by=TEACHER)
    async with db.transaction() as tx:
        closed = await close_family(
            tx, family, actor=ADMIN, reason=None, policy=POLICY, cause="$close"
        )
        await purge_family(tx, closed, policy=POLICY)
    client = await deliver(db)
    assert [s for s in client.sent if s[0] == DM] == []
    async with db.read() as tx:
        dropped = await tx.outbox.get(report.txn_id)
    assert dropped is not None
    assert (dropped.failed_at is not None, "content" in dropped.payload) == (True, False)


async def test_a_lapse_notice_queued_with_its_text_still_goes(
    db: Database, clock: ManualClock
) -> None:
    """Lapse notices queued by an older version carry their text: sent as they are, before
    their kick."""
    await active_family(db, joined=(TEACHER,))
    content = {**TOLD_THE_LEAD, "body": "Lee Lead: Tara Teacher did not answer (old text)"}
    async with db.transaction() as tx:
        await tx.outbox.enqueue_many(
            [
                ("old-lapse", ROOM, "message", {"type": "m.room.message", "content": content}),
                ("old-kick", ROOM, "kick", {"user_id": TEACHER, "reason": LAPSE_KICK_REASON}),
            ],
            priority=BACKGROUND,
        )
    client = await deliver(db)
    assert [s[2] for s in client.sent if s[3] == "old-lapse"] == [content]
    assert client.done[-2:] == [("send", "old-lapse"), ("kick", TEACHER)]
