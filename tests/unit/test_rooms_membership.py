"""Mirroring m.room.member events into the roster: every change recorded once, no-ops ignored,
and the invite policy (allowed servers, pending families) enforced with a kick and a notice."""

from __future__ import annotations

from datetime import timedelta

from rooms.direct_chat import (
    DIRECT_FOR_KEY,
    MESSAGES_KEY,
    awaited_member,
    on_direct_chat_created,
    on_joined,
)
from storage import Database, OutboxItem
from tests.unit.test_team_commands_support import (
    ADMIN,
    BOT,
    LEAD,
    NURSE,
    OUTSIDER,
    POLICY,
    REF,
    ROOM,
    START,
    TEACHER,
    ManualClock,
    active_family,
    audits,
    direct_chat_of,
    member,
    notices,
    outbox,
    pending_family,
    snapshot,
)

pytest_plugins = ("tests.unit.test_team_commands_support",)


async def test_invite_join_leave_is_mirrored_with_one_audit_row_each(
    db: Database, clock: ManualClock
) -> None:
    family = await active_family(db)
    before = len(await outbox(db))
    await member(db, TEACHER, "invite", sender=LEAD)
    async with db.read() as tx:
        invited = await tx.involvements.get(family.id, TEACHER)
    assert invited is not None
    assert (invited.membership, invited.status, invited.invited_by) == ("invite", "active", LEAD)
    assert len(await outbox(db)) == before  # an invite is visible in the room already

    clock.advance(hours=1)
    await member(db, TEACHER, "join")
    async with db.read() as tx:
        joined = await tx.involvements.get(family.id, TEACHER)
    assert joined is not None
    assert joined.membership == "join"
    assert joined.next_prompt_at == START + timedelta(hours=1) + POLICY.prompt_interval
    line, welcome = [item for item in (await outbox(db))[before:] if item.kind == "message"]
    # The team gets one quiet line naming who joined and their role...
    assert line.room_id == ROOM
    assert line.payload["content"]["msgtype"] == "m.notice"
    assert line.payload["content"]["body"] == (
        "Tara Teacher joined the team; their role is not given yet."
    )
    assert line.payload["content"]["m.mentions"] == {"user_ids": []}
    # ...and the instructions go to the newcomer alone, in their direct chat, notifying them.
    assert welcome.room_id == direct_chat_of(TEACHER)
    content = welcome.payload["content"]
    assert content["msgtype"] == "m.text"
    assert content["body"].startswith(f"Welcome to Team {REF} (https://matrix.to/#/{ROOM}")
    assert f'<a href="https://matrix.to/#/{ROOM}?via=' in content["formatted_body"]
    assert "!role <your role>" in content["body"]
    assert "!contact share on" in content["body"]
    assert content["m.mentions"] == {"user_ids": [TEACHER]}

    await member(db, TEACHER, "leave")
    async with db.read() as tx:
        left = await tx.involvements.get(family.id, TEACHER)
    assert left is not None
    assert (left.membership, left.status, left.end_reason) == ("leave", "ended", "left")
    assert notices(await outbox(db))[-1] == "Tara Teacher left the team."

    rows = [entry for entry in await audits(db, "membership") if entry.detail["user"] == TEACHER]
    assert [(row.detail["before"], row.detail["after"]) for row in rows] == [
        (None, "invite"),
        ("invite", "join"),
        ("join", "leave"),
    ]
    assert rows[0].actor == LEAD
    assert rows[-1].detail["end_reason"] == "left"


async def test_a_kick_or_ban_by_someone_else_is_a_removal(db: Database) -> None:
    family = await active_family(db, joined=(TEACHER, NURSE))
    await member(db, TEACHER, "leave", sender=LEAD)
    await member(db, NURSE, "ban", sender=LEAD)
    async with db.read() as tx:
        teacher = await tx.involvements.get(family.id, TEACHER)
        nurse = await tx.involvements.get(family.id, NURSE)
    assert teacher is not None
    assert nurse is not None
    assert (teacher.end_reason, nurse.end_reason, nurse.membership) == ("removed", "removed", "ban")
    assert notices(await outbox(db))[-2:] == [
        "Tara Teacher was removed from the team by Lee Lead.",
        "Nina Nurse was removed from the team by Lee Lead.",
    ]


async def test_declined_and_withdrawn_invitations(db: Database) -> None:
    await active_family(db)
    await member(db, TEACHER, "invite", sender=LEAD)
    await member(db, TEACHER, "leave")
    await member(db, NURSE, "invite", sender=LEAD)
    await member(db, NURSE, "leave", sender=LEAD)
    assert notices(await outbox(db))[-2:] == [
        "Tara Teacher did not accept the invitation to this team.",
        "The invitation to Nina Nurse was withdrawn by Lee Lead.",
    ]


async def test_a_display_name_change_records_nothing(db: Database) -> None:
    await active_family(db, joined=(TEACHER,))
    before = await snapshot(db)
    await member(db, TEACHER, "join", display_name="Tara T.")
    assert await snapshot(db) == before


async def test_a_replayed_event_changes_and_sends_nothing_twice(db: Database) -> None:
    await active_family(db)
    await member(db, TEACHER, "invite", sender=LEAD)
    event_id = await member(db, TEACHER, "join")
    after_first = await snapshot(db)
    await member(db, TEACHER, "join", event_id=event_id)
    assert await snapshot(db) == after_first
    joins = [e for e in await audits(db, "membership") if e.detail["event_id"] == event_id]
    assert len(joins) == 1


async def test_the_room_display_name_is_kept_until_one_is_given(db: Database) -> None:
    await active_family(db, joined=(TEACHER,))
    async with db.transaction() as tx:
        practitioner = await tx.practitioners.get(TEACHER)
        assert practitioner is not None
        assert practitioner.display_name == "Tara Teacher"
        await tx.practitioners.update_contact(TEACHER, display_name="Ms T. Patel")
    await member(db, TEACHER, "leave")
    await member(db, TEACHER, "invite", sender=LEAD)
    await member(db, TEACHER, "join", display_name="tara")
    async with db.read() as tx:
        practitioner = await tx.practitioners.get(TEACHER)
    assert practitioner is not None
    assert practitioner.display_name == "Ms T. Patel"


async def test_users_outside_the_allowed_servers_are_revoked(db: Database) -> None:
    family = await active_family(db)
    before = len(await outbox(db))
    invite_id = await member(db, OUTSIDER, "invite", sender=LEAD)
    items = (await outbox(db))[before:]
    assert [item.kind for item in items] == ["kick"], "announced only once the kick succeeds"
    assert items[0].payload["user_id"] == OUTSIDER
    assert "council.example" in items[0].payload["reason"]
    body = items[0].payload["announce"]["body"]
    assert body.startswith(f"I withdrew the invitation to {OUTSIDER}")
    assert "elsewhere.example" in body
    async with db.read() as tx:
        assert await tx.involvements.get(family.id, OUTSIDER) is None
    [revoked] = await audits(db, "membership_revoked")
    assert revoked.detail["user"] == OUTSIDER
    assert revoked.detail["rule"] == "server"

    # Replaying the invite queues nothing more; the kick's own leave event records nothing.
    snap = await snapshot(db)
    await member(db, OUTSIDER, "invite", sender=LEAD, event_id=invite_id)
    await member(db, OUTSIDER, "leave", sender=BOT)
    assert await snapshot(db) == snap

    # A join that beats the kick is removed too.
    await member(db, OUTSIDER, "join")
    last = (await outbox(db))[-1]
    assert last.kind == "kick"
    assert last.payload["announce"]["body"].startswith(f"I removed {OUTSIDER} from this room")


async def test_a_pending_family_admits_only_its_lead_and_admins(db: Database) -> None:
    family = await pending_family(db)
    await member(db, LEAD, "join")
    lead_welcome = notices(await outbox(db))[-1]
    assert "You are this family's lead" in lead_welcome
    assert "!family basis" in lead_welcome
    assert "!family informed" in lead_welcome

    await member(db, ADMIN, "invite", sender=LEAD)
    await member(db, ADMIN, "join")
    before = len(await outbox(db))
    await member(db, TEACHER, "invite", sender=LEAD)
    [kick] = (await outbox(db))[before:]
    assert kick.kind == "kick"
    assert kick.payload["user_id"] == TEACHER
    body = kick.payload["announce"]["body"]
    assert "still being set up" in body
    assert "!family basis" in body
    assert "!family informed" in body
    async with db.read() as tx:
        on_roster = {i.user_id for i in await tx.involvements.for_family(family.id)}
    assert on_roster == {LEAD, ADMIN}
    assert (await audits(db, "membership_revoked"))[-1].detail["rule"] == "pending"


async def test_other_rooms_and_the_bot_are_ignored(db: Database) -> None:
    await active_family(db)
    before = await snapshot(db)
    await member(db, TEACHER, "join", room_id="!elsewhere:council.example")
    await member(db, BOT, "join", sender=BOT)
    await member(db, TEACHER, "knock")
    assert await snapshot(db) == before


async def test_a_welcome_opens_a_direct_chat_when_there_is_none(db: Database) -> None:
    await active_family(db)
    await member(db, TEACHER, "invite", sender=LEAD)
    before = len(await outbox(db))
    event_id = await member(db, TEACHER, "join", direct_rooms=lambda user_id: None)
    line, opening = (await outbox(db))[before:]
    assert (line.kind, line.room_id) == ("message", ROOM)
    assert "Tara Teacher joined the team" in line.payload["content"]["body"]
    assert opening.kind == "create_room"
    request = opening.payload["request"]
    assert request["is_direct"] is True
    assert request["invite"] == [TEACHER]
    assert request["initial_state"][0]["type"] == "m.room.encryption"
    assert opening.payload[DIRECT_FOR_KEY] == TEACHER
    [content] = opening.payload[MESSAGES_KEY]
    assert "!role <your role>" in content["body"]
    # Replaying the join opens nothing more.
    await member(db, TEACHER, "join", event_id=event_id, direct_rooms=lambda user_id: None)
    assert len(await outbox(db)) == before + 2

    # Once the room exists the welcome is queued there, held until the teacher has joined it
    # (before that their devices would not get the room key), and their join releases it.
    async with db.transaction() as tx:
        await on_direct_chat_created(tx, opening, "!newdm:council.example")
        await tx.outbox.mark_retry(
            (await tx.outbox.for_room("!newdm:council.example", ("message",)))[0].id,
            "held", START + timedelta(hours=1), counted=False,
        )
    [held] = (await outbox(db))[before + 2 :]
    assert held.room_id == "!newdm:council.example"
    assert held.payload["content"] == content
    assert awaited_member(held.payload) == TEACHER
    async with db.transaction() as tx:
        await on_joined(tx, "!newdm:council.example", NURSE)
        assert held.id not in [item.id for item in await tx.outbox.due(100)]
        await on_joined(tx, "!newdm:council.example", TEACHER)
        assert held.id in [item.id for item in await tx.outbox.due(100)]


async def test_welcome_skips_what_is_already_known(db: Database) -> None:
    family = await active_family(db)
    async with db.transaction() as tx:
        await tx.practitioners.ensure(TEACHER)
        await tx.practitioners.set_share_contact(TEACHER, False)
        await tx.involvements.upsert_membership(family.id, TEACHER, "invite", invited_by=LEAD)
        await tx.involvements.set_role(family.id, TEACHER, "Class teacher")
    await member(db, TEACHER, "join")
    body = notices(await outbox(db))[-1]
    assert "You were invited as `Class teacher`" in body
    assert "contact share" not in body


async def test_the_lead_leaving_is_pointed_out(db: Database) -> None:
    await active_family(db, joined=(TEACHER,))
    await member(db, LEAD, "leave")
    body = notices(await outbox(db))[-1]
    assert body.startswith("Lee Lead left the team.")
    assert "!lead @user:server" in body


async def test_first_prompt_keeps_the_local_time_across_a_clock_change(db: Database) -> None:
    from dataclasses import replace
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    london = replace(POLICY, timezone=ZoneInfo("Europe/London"))
    family = await active_family(db)
    await member(db, TEACHER, "invite", sender=LEAD, policy=london)
    await member(db, TEACHER, "join", policy=london)  # 10:30 GMT on Monday 2 March 2026
    async with db.read() as tx:
        joined = await tx.involvements.get(family.id, TEACHER)
    assert joined is not None
    # Eight weeks on the clocks are on summer time: still 10:30 in London, so 09:30 UTC.
    assert joined.next_prompt_at == datetime(2026, 4, 27, 9, 30, tzinfo=UTC)


async def test_one_direct_chat_is_opened_however_many_welcomes_wait_for_it(
    db: Database,
) -> None:
    # Welcomes to several families at once (a start-up finding many newcomers) used to open a
    # direct chat each; a person has one, and every message waiting for it goes there.
    await active_family(db)
    no_chat_yet = {"direct_rooms": lambda user_id: None}
    await member(db, TEACHER, "invite", sender=LEAD)
    await member(db, TEACHER, "join", **no_chat_yet)
    await member(db, TEACHER, "leave", **no_chat_yet)
    await member(db, TEACHER, "invite", sender=LEAD)
    await member(db, TEACHER, "join", **no_chat_yet)
    [opening] = await openings(db)
    assert len(opening.payload[MESSAGES_KEY]) == 2

    async with db.transaction() as tx:
        await on_direct_chat_created(tx, opening, "!newdm:council.example")
        await tx.outbox.mark_sent(opening.id, "!newdm:council.example")
    # Created but not yet synced: the next message goes into the same room, held the same way.
    await member(db, TEACHER, "leave", **no_chat_yet)
    await member(db, TEACHER, "invite", sender=LEAD)
    await member(db, TEACHER, "join", **no_chat_yet)
    assert [item.id for item in await openings(db)] == [opening.id]
    held = [item for item in await outbox(db) if item.room_id == "!newdm:council.example"]
    assert len(held) == 3
    assert all(awaited_member(item.payload) == TEACHER for item in held)
    assert all("!role <your role>" in item.payload["content"]["body"] for item in held)


async def openings(db: Database) -> list[OutboxItem]:
    """The direct chats the bot has set out to open."""
    return [item for item in await outbox(db) if item.payload.get(DIRECT_FOR_KEY)]
