"""Messages that ask a person to act are `m.text` with that person in `m.mentions`: Element's
default push rules silence every `m.notice` (`.m.rule.suppress_notices` comes before the mention
rule). Replies to commands stay `m.notice` and mention nobody."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from markup import Reply
from storage import Database, OutboxItem
from tests.unit.test_prompts import (
    content_of,
    do_sweep,
    messages,
    prompted_team,
    prompts,
    reminders,
)
from tests.unit.test_team_commands_support import (
    ADMIN,
    DM,
    LEAD,
    TEACHER,
    ManualClock,
    outbox,
    run,
)

pytest_plugins = ("tests.unit.test_team_commands_support",)


async def _content(db: Database, item: OutboxItem) -> dict[str, Any]:
    return await content_of(db, item)


async def test_the_prompt_notifies_the_practitioner(db: Database, clock: ManualClock) -> None:
    _, client = await prompted_team(db, clock)
    asked = [
        content
        for _, _, content, _ in client.sent
        if "are you still involved" in str(content.get("body"))
    ]
    assert len(asked) == 2
    for content in asked:
        assert content["msgtype"] == "m.text"
        assert content["m.mentions"] in ({"user_ids": [LEAD]}, {"user_ids": [TEACHER]})


async def test_the_reminder_and_the_lapse_notice_notify(db: Database, clock: ManualClock) -> None:
    await prompted_team(db, clock)
    await run(db, "!confirm", sender=LEAD)
    sent = (await prompts(db))[0].sent_at
    assert sent is not None
    clock.current = sent + timedelta(days=3)
    await do_sweep(db)
    [reminder] = reminders(await outbox(db))
    assert (await _content(db, reminder))["msgtype"] == "m.text"
    clock.current = sent + timedelta(days=14)
    await do_sweep(db)
    told = await _content(db, messages(await outbox(db))[-1])
    assert "did not answer" in str(told["body"])
    assert (told["msgtype"], told["m.mentions"]) == ("m.text", {"user_ids": [LEAD]})


async def test_a_lapsed_lead_reaches_the_admins_as_a_notification(
    db: Database, clock: ManualClock
) -> None:
    await prompted_team(db, clock)
    await run(db, "!confirm", sender=TEACHER)
    sent = (await prompts(db))[0].sent_at
    assert sent is not None
    clock.current = sent + timedelta(days=3)
    await do_sweep(db)
    clock.current = sent + timedelta(days=14)
    await do_sweep(db, direct_rooms={ADMIN: DM}.get)
    in_room, direct = [await _content(db, item) for item in messages(await outbox(db))[-2:]]
    assert in_room["msgtype"] == "m.text"
    assert direct["msgtype"] == "m.text"


async def test_command_replies_stay_quiet(db: Database) -> None:
    [reply] = await run(db, "!help", sender=LEAD)
    content = reply.to_content()
    assert content["msgtype"] == "m.notice"
    assert content["m.mentions"] == {"user_ids": []}


def test_a_message_for_one_person_to_act_on_notifies_them() -> None:
    content = Reply.mention("@sam:example.org", "I could not read your message.").to_content()
    assert content["msgtype"] == "m.text"
    assert content["m.mentions"] == {"user_ids": ["@sam:example.org"]}
