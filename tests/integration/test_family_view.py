"""A family's own view of their team against a real Synapse, with real nio clients for the
practitioners and a parent: the card, its edits and notes, `!correct`, `!mydata`, and who may
not be shown it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from devkit.botproc import BotProcess
from devkit.practitioner import Practitioner
from tests.integration.conftest import BotFactory, MakePractitioner
from tests.integration.test_family_rooms import activate, create_family, direct_chat
from tests.integration.test_governance import join_team, received_files

REFERENCE = "LDC-2026-0950"
PHONE = "020 7946 0555"


def is_edit(event: Any) -> bool:
    relates = event.source["content"].get("m.relates_to") or {}
    return relates.get("rel_type") == "m.replace"


def latest_card(parent: Practitioner, room_id: str, bot: BotProcess) -> str:
    """The card as Element shows it: the original's text, or its newest edit's."""
    body = ""
    for event in parent.notices(room_id, bot.user_id):
        content = event.source["content"]
        if is_edit(event):
            body = content["m.new_content"]["body"]
        elif "The people supporting your family" in content.get("body", ""):
            body = content["body"]
    return body


async def test_a_parent_sees_their_team_kept_current(
    make_practitioner: MakePractitioner, make_bot: BotFactory
) -> None:
    bot = await make_bot()
    lead = await make_practitioner("lead", displayname="Lena Lead")
    teacher = await make_practitioner("teacher", displayname="Tom Teacher")
    worker = await make_practitioner("worker", displayname="Dee Worker")
    nurse = await make_practitioner("nurse", displayname="Nia Nurse")
    parent = await make_practitioner("parent", displayname="Pat Parent")
    room_id, _ = await create_family(lead, bot, REFERENCE)
    await activate(lead, bot, room_id)  # records that the family was told
    await lead.ask(room_id, "!role Social worker", bot=bot.user_id)
    await join_team(bot, lead, room_id, teacher, "Class teacher")
    await join_team(bot, lead, room_id, worker, "DV support")
    await worker.ask(room_id, "!sensitive on", bot=bot.user_id)
    teacher_dm = await direct_chat(teacher, bot)
    for command in ("!contact set org Oak Primary", f"!contact set phone {PHONE}",
                    "!contact share on"):
        await teacher.ask(teacher_dm, command, bot=bot.user_id)

    # 1. Shared with the parent: their own room, the card, no phone yet.
    shared = await lead.ask(room_id, f"!family share-with {parent.user_id}", bot=bot.user_id)
    assert "I am opening a room" in shared.body
    view = await parent.wait_for_invite(f"Your team: {REFERENCE}")
    await parent.join(view)
    await parent.wait_for_notice(
        view, sender=bot.user_id, predicate=lambda e: "supporting your family" in e.body
    )
    card = latest_card(parent, view, bot)
    assert "Lena Lead: Social worker (the lead for your family)" in card
    assert "Tom Teacher: Class teacher, Oak Primary" in card
    assert "7946" not in card, "shared with teams is not shared with families"
    assert "Dee Worker" not in card, "a hidden involvement never appears"
    assert "DV support" not in card
    await teacher.ask(teacher_dm, "!contact share-family on", bot=bot.user_id)
    await parent.wait_for_notice(
        view, sender=bot.user_id, predicate=lambda e: is_edit(e) and "7946" in str(e.source)
    )
    assert "7946" in latest_card(parent, view, bot)

    # 2. A practitioner joins and leaves: the card is edited in place, with a note each time.
    await join_team(bot, lead, room_id, nurse, "Health visitor")
    await parent.wait_for_notice(
        view, sender=bot.user_id,
        predicate=lambda e: "A Health visitor joined the team supporting you." in e.body,
    )
    assert "Nia Nurse: Health visitor" in latest_card(parent, view, bot)
    await nurse.ask(room_id, "!leave moved away", bot=bot.user_id)
    await parent.wait_for_notice(
        view, sender=bot.user_id,
        predicate=lambda e: "A Health visitor left the team supporting you." in e.body,
    )
    assert "Nia Nurse" not in latest_card(parent, view, bot)
    originals = [e for e in parent.notices(view, bot.user_id)
                 if "supporting your family (" in e.body and not is_edit(e)]
    assert len(originals) == 1, "one card, edited in place"

    # 3. !correct reaches the lead as a notifying mention; both steps are audited.
    asked = await parent.send_text(view, "!correct my son's school is Oak Primary")
    relayed = await lead.wait_for_notice(
        room_id, sender=bot.user_id, predicate=lambda e: "asks for a correction" in e.body
    )
    content = relayed.source["content"]
    assert content["msgtype"] == "m.text"
    assert content["m.mentions"]["user_ids"] == [lead.user_id]
    thanks = await parent.wait_for_notice(view, sender=bot.user_id, after_event_id=asked)
    assert "passed this to your family's lead" in thanks.body
    audit = await lead.ask(room_id, "!audit 30", bot=bot.user_id)
    assert "asked for a correction (!correct)" in audit.body
    assert "passed a correction request to the lead" in audit.body

    # 5. The parent's !mydata: the card and the access history, and nothing more.
    await teacher.ask(room_id, "!whois", bot=bot.user_id)
    asked = await parent.send_text(view, "!mydata")
    data = json.loads((await received_files(parent, view, bot, asked))["json"])
    assert data["reference"] == REFERENCE
    assert {entry["name"] for entry in data["involved"]} == {
        "Lena Lead", "Tom Teacher", "Nia Nurse"
    }
    teacher_entry = next(e for e in data["involved"] if e["name"] == "Tom Teacher")
    assert teacher_entry["phone"] is not None, "the teacher agreed to show families"
    assert {"organisation": "Oak Primary", "what": "looked up the team (!whois)"} in [
        {key: row[key] for key in ("organisation", "what")} for row in data["record_looked_at"]
    ]
    dumped = json.dumps(data)
    for hidden in (lead.user_id, teacher.user_id, worker.user_id, "Dee Worker", "DV support"):
        assert hidden not in dumped

    # 4. Unshared: the parent is removed, and later changes no longer reach them.
    await lead.ask(room_id, f"!family unshare {parent.user_id}", bot=bot.user_id)
    await parent.wait_for_membership(view, parent.user_id, "leave")
    seen = len(parent.notices(view, bot.user_id))
    await teacher.ask(room_id, "!role Head teacher", bot=bot.user_id)
    await asyncio.sleep(2)
    assert len(parent.notices(view, bot.user_id)) == seen


async def test_a_family_unsafe_to_tell_or_outside_the_servers_is_not_shown(
    make_practitioner: MakePractitioner, make_bot: BotFactory
) -> None:
    bot = await make_bot()
    lead = await make_practitioner("lead")
    parent = await make_practitioner("parent")
    room_id, _ = await create_family(lead, bot, REFERENCE)
    await lead.ask(room_id, "!family basis public_task s.47", bot=bot.user_id)
    await lead.ask(room_id, "!family unsafe telling them puts a child at risk", bot=bot.user_id)
    refused = await lead.ask(room_id, f"!family share-with {parent.user_id}", bot=bot.user_id)
    assert "recorded as unsafe to tell" in refused.body
    await lead.ask(room_id, "!family informed told at the meeting", bot=bot.user_id)
    outside = await lead.ask(room_id, "!family share-with @mum:elsewhere.example",
                             bot=bot.user_id)
    assert "elsewhere.example" in outside.body
    assert "only on localhost" in outside.body
    assert parent.client.invited_rooms == {}
