"""A family member's own view of their team: who may be shown it, the card and its updates,
and what the family member can do in their room, against a real database."""

from __future__ import annotations

import dataclasses
import json

from commands.framework.context import CommandContext, RoomKind, Services
from commands.framework.dispatcher import Dispatcher
from commands.view import build_view_registry
from markup import Reply
from rooms.exports import build_attachment
from rooms.family_view import on_card_sent, on_view_room_created
from storage import Database, FamilyView, OutboxItem
from tests.unit.test_team_commands_support import (
    LEAD,
    NURSE,
    POLICY,
    REF,
    ROOM,
    SETTINGS,
    TEACHER,
    WORKER,
    FakeMatrix,
    ManualClock,
    active_family,
    audits,
    member,
    new_event_id,
    outbox,
    pending_family,
    say,
)

pytest_plugins = ("tests.unit.test_team_commands_support",)

PARENT = "@parent:council.example"
RESIDENT = "@mum:residents.example"
VIEW_ROOM = "!view:council.example"
TEACHER_PHONE = "+442079460555"


async def shared(db: Database, clock: ManualClock) -> FamilyView:
    """An informed family with a teacher, a nurse and a hidden worker, shown to the parent,
    whose room exists and whose card was sent."""
    family = await active_family(db, joined=(TEACHER, NURSE, WORKER))
    async with db.transaction() as tx:
        await tx.involvements.set_role(family.id, TEACHER, "Class teacher")
        await tx.involvements.set_role(family.id, LEAD, "Social worker")
        await tx.practitioners.update_contact(
            TEACHER, organisation="Oak Primary", phone=TEACHER_PHONE
        )
        await tx.practitioners.set_share_contact(TEACHER, True)
        await tx.involvements.set_sensitive(family.id, WORKER, True)
    reply = await say(db, f"!family share-with {PARENT}", sender=LEAD)
    assert reply.body.startswith(f"I am opening a room for {PARENT}")
    async with db.transaction() as tx:
        view = await tx.views.of(family.id, PARENT)
        assert view is not None
        await on_view_room_created(tx, view.id, VIEW_ROOM)
    return view


async def card_items(db: Database) -> list[OutboxItem]:
    return [item for item in await outbox(db) if item.room_id == VIEW_ROOM]


async def test_sharing_opens_a_private_room_for_the_family_member(
    db: Database, clock: ManualClock
) -> None:
    await shared(db, clock)
    [create] = [item for item in await outbox(db) if item.kind == "create_room"
                and "view_id" in item.payload]
    request = create.payload["request"]
    assert request["name"] == f"Your team: {REF}"
    assert request["invite"] == [PARENT]
    assert {"type": "m.room.encryption", "state_key": "",
            "content": {"algorithm": "m.megolm.v1.aes-sha2"}} in request["initial_state"]
    assert request["power_level_content_override"]["invite"] == 100
    [row] = await audits(db, "view_shared")
    assert (row.actor, row.detail) == (LEAD, {"user": PARENT})


async def test_the_card_shows_the_team_without_hidden_people_or_unshared_numbers(
    db: Database, clock: ManualClock
) -> None:
    await shared(db, clock)
    [card] = await card_items(db)
    body = card.payload["content"]["body"]
    assert card.payload["await_join"] == PARENT, "sent once the family member is in the room"
    assert "Lee Lead: Social worker (the lead for your family)" in body
    assert "Tara Teacher: Class teacher, Oak Primary" in body
    assert "Wes Worker" not in body
    assert TEACHER_PHONE not in body, "shared with teams is not shared with families"
    assert TEACHER not in json.dumps(card.payload), "no user ids on the card"


async def test_a_team_change_edits_the_card_in_place_and_adds_a_note(
    db: Database, clock: ManualClock
) -> None:
    view = await shared(db, clock)
    async with db.transaction() as tx:
        await tx.practitioners.set_share_family(TEACHER, True)
        await on_card_sent(tx, view.id, "$card")
    before = len(await card_items(db))
    await member(db, NURSE, "leave")
    edit, note = (await card_items(db))[before:]
    content = edit.payload["content"]
    assert content["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$card"}
    assert "Nina Nurse" not in content["m.new_content"]["body"]
    assert TEACHER_PHONE in content["m.new_content"]["body"], "the teacher agreed for families"
    assert note.payload["content"]["body"] == "A practitioner left the team supporting you."
    assert [row.detail for row in await audits(db, "view_updated")] == [{"user": PARENT}]


async def test_a_note_names_the_role_and_organisation(db: Database, clock: ManualClock) -> None:
    view = await shared(db, clock)
    async with db.transaction() as tx:
        await on_card_sent(tx, view.id, "$card")
    await member(db, TEACHER, "leave")
    note = (await card_items(db))[-1]
    assert note.payload["content"]["body"] == (
        "A Class teacher from Oak Primary left the team supporting you."
    )


async def test_a_card_not_sent_yet_is_rewritten_where_it_waits(
    db: Database, clock: ManualClock
) -> None:
    await shared(db, clock)
    await say(db, "!role Health visitor", sender=NURSE)
    [card] = await card_items(db)
    assert "Nina Nurse: Health visitor" in card.payload["content"]["body"]


async def test_who_may_be_given_a_view(db: Database, clock: ManualClock) -> None:
    family = await active_family(db, joined=(TEACHER,))
    outside = await say(db, "!family share-with @mum:elsewhere.example", sender=LEAD)
    assert "only on council.example" in outside.body
    assert "elsewhere.example" in outside.body
    team = await say(db, f"!family share-with {TEACHER}", sender=LEAD)
    assert "is on this family's team" in team.body
    async with db.transaction() as tx:
        await tx.families.record_informed(
            family.id, not_informed_reason="a parent would be at risk", recorded_by=LEAD
        )
    unsafe = await say(db, f"!family share-with {PARENT}", sender=LEAD)
    assert "recorded as unsafe to tell" in unsafe.body
    assert await audits(db, "view_shared") == []


async def test_a_pending_family_cannot_be_shared(db: Database, clock: ManualClock) -> None:
    await pending_family(db)
    await member(db, LEAD, "join")
    reply = await say(db, f"!family share-with {PARENT}", sender=LEAD)
    assert "active and who were told" in reply.body


async def test_family_servers_may_be_shown_a_view(db: Database, clock: ManualClock) -> None:
    await active_family(db)
    policy = dataclasses.replace(POLICY, family_servers=frozenset({"Residents.example"}))
    reply = await say(db, f"!family share-with {RESIDENT}", sender=LEAD, policy=policy)
    assert reply.body.startswith(f"I am opening a room for {RESIDENT}")


async def test_unsharing_removes_them_and_later_changes_no_longer_reach_them(
    db: Database, clock: ManualClock
) -> None:
    view = await shared(db, clock)
    async with db.transaction() as tx:
        await on_card_sent(tx, view.id, "$card")
    reply = await say(db, f"!family unshare {PARENT}", sender=LEAD)
    assert "no longer sees this team" in reply.body
    [kick] = [item for item in await card_items(db) if item.kind == "kick"]
    assert kick.payload["user_id"] == PARENT
    before = len(await card_items(db))
    await member(db, NURSE, "leave")
    assert len(await card_items(db)) == before
    again = await say(db, f"!family unshare {PARENT}", sender=LEAD)
    assert "has no view of this team to end" in again.body


async def test_closing_the_family_ends_every_view(db: Database, clock: ManualClock) -> None:
    view = await shared(db, clock)
    await say(db, "!family close", sender=LEAD)
    async with db.read() as tx:
        ended = await tx.views.get(view.id)
    assert ended is not None
    assert not ended.is_active
    assert [row.detail for row in await audits(db, "view_unshared")] == [{"user": PARENT}]


async def in_view(db: Database, body: str, sender: str = PARENT) -> list[Reply]:
    registry = build_view_registry()
    async with db.transaction() as tx:
        ctx = CommandContext(
            sender=sender,
            room_id=VIEW_ROOM,
            event_id=new_event_id(),
            room_kind=RoomKind.VIEW,
            tx=tx,
            matrix=FakeMatrix(),
            registry=registry,
            services=Services(policy=POLICY, prompts=SETTINGS),
        )
        assert await Dispatcher(registry, prefix="!").handle(ctx, body)
    return ctx.replies


async def test_correct_reaches_the_lead_as_a_notifying_mention(
    db: Database, clock: ManualClock
) -> None:
    await shared(db, clock)
    before = len(await outbox(db))
    [reply] = await in_view(db, "!correct my son's school is Oak Primary")
    assert reply.body.startswith("Thank you. I have passed this to your family's lead")
    [relay] = [item for item in (await outbox(db))[before:] if item.room_id == ROOM]
    content = relay.payload["content"]
    assert content["msgtype"] == "m.text"
    assert content["m.mentions"] == {"user_ids": [LEAD]}
    assert content["body"].endswith("my son's school is Oak Primary")
    assert [row.action for row in await audits(db)][-2:] == [
        "correction_requested",
        "correction_relayed",
    ]


async def test_the_family_member_has_their_own_commands_only(
    db: Database, clock: ManualClock
) -> None:
    await shared(db, clock)
    [help_reply] = await in_view(db, "!help")
    assert "your own room with Patchwork" in help_reply.body
    assert "!whois" not in help_reply.body
    [unknown] = await in_view(db, "!whois")
    assert "!whois" in unknown.body
    assert "Lee Lead" not in unknown.body
    [card] = await in_view(db, "!team")
    assert "Tara Teacher: Class teacher, Oak Primary" in card.body
    assert [row.action for row in await audits(db)][-1] == "view_team"


async def test_the_family_members_data_holds_the_card_and_who_looked(
    db: Database, clock: ManualClock
) -> None:
    await shared(db, clock)
    await say(db, "!whois", sender=TEACHER)
    await in_view(db, "!mydata")
    [item, _] = [item for item in await outbox(db) if item.kind == "export"]
    async with db.read() as tx:
        data = json.loads((await build_attachment(tx, item.payload)).data)
    assert data["reference"] == REF
    assert data["lawful_basis"] == "public_task"
    names = {entry["name"] for entry in data["involved"]}
    assert names == {"Lee Lead", "Tara Teacher", "Nina Nurse"}, "never the hidden worker"
    assert all("phone" not in entry for entry in data["involved"])
    assert {"organisation": "Oak Primary", "what": "looked up the team (!whois)"} in [
        {key: row[key] for key in ("organisation", "what")} for row in data["record_looked_at"]
    ]
    text = json.dumps(data)
    for user_id in (LEAD, TEACHER, NURSE, WORKER):
        assert user_id not in text, "practitioners' user ids are not the family's to see"


async def test_a_family_member_who_leaves_their_room_ends_their_view(
    db: Database, clock: ManualClock
) -> None:
    view = await shared(db, clock)
    await member(db, PARENT, "leave", room_id=VIEW_ROOM)
    async with db.read() as tx:
        ended = await tx.views.get(view.id)
    assert ended is not None
    assert not ended.is_active
    [row] = await audits(db, "view_unshared")
    assert row.actor == PARENT
