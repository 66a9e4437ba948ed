"""`!whois`: who sees what (contact details only with consent, sensitive involvements only for
the lead, admins and the person themselves), single cards, and an audit row per look-up."""

from __future__ import annotations

from commands.framework.context import RoomKind
from storage import Database, Family
from tests.unit.test_team_commands_support import (
    ADMIN,
    DM,
    LEAD,
    NURSE,
    POLICY,
    TEACHER,
    WORKER,
    ManualClock,
    active_family,
    audits,
    direct_chat_of,
    member,
    outbox,
    say,
)

pytest_plugins = ("tests.unit.test_team_commands_support",)

TEACHER_PHONE = "01632 960123"
TEACHER_EMAIL = "tara@school.example"
NURSE_PHONE = "07700 900456"
NURSE_EMAIL = "nina@nhs.example"
WORKER_PHONE = "01632 960999"


async def team(db: Database, clock: ManualClock) -> Family:
    """Teacher shares, nurse does not, the worker shares but is a sensitive involvement."""
    family = await active_family(db, joined=(TEACHER, NURSE, WORKER))
    async with db.transaction() as tx:
        await tx.practitioners.update_contact(
            TEACHER,
            organisation="Oak Primary",
            job_title="Class teacher",
            phone=TEACHER_PHONE,
            email=TEACHER_EMAIL,
        )
        await tx.practitioners.set_share_contact(TEACHER, True)
        await tx.practitioners.update_contact(
            NURSE, organisation="NHS Trust", phone=NURSE_PHONE, email=NURSE_EMAIL
        )
        await tx.practitioners.set_share_contact(NURSE, False)
        await tx.practitioners.update_contact(WORKER, phone=WORKER_PHONE)
        await tx.practitioners.set_share_contact(WORKER, True)
        await tx.involvements.set_role(family.id, TEACHER, "Class teacher")
        await tx.involvements.set_role(family.id, NURSE, "Health visitor")
        await tx.involvements.set_role(family.id, WORKER, "DV support")
        await tx.involvements.set_sensitive(family.id, WORKER, True)
        teacher = await tx.involvements.get(family.id, TEACHER)
        assert teacher is not None
        clock.advance(days=3)
        await tx.involvements.confirm(teacher.id, clock() + POLICY.prompt_interval)
    return family


def lines_about(body: str, name: str) -> list[str]:
    """The lines naming someone, leaving out the note on who to ask about a confidential one."""
    return [
        line
        for line in body.splitlines()
        if name in line and not line.startswith("A confidential service")
    ]


async def test_the_team_shows_contact_details_only_for_those_who_share(
    db: Database, clock: ManualClock
) -> None:
    await team(db, clock)
    reply = await say(db, "!whois", sender=NURSE)
    body = reply.body
    assert body.startswith("The team for LDC-2026-0042 (3):")
    [lead_line] = lines_about(body, "Lee Lead")
    assert "lead" in lead_line.split(" · ")
    [teacher_line] = lines_about(body, "Tara Teacher")
    assert "Class teacher" in teacher_line
    assert "Oak Primary" in teacher_line
    assert "last confirmed 5 Mar 2026" in teacher_line
    assert TEACHER_PHONE in teacher_line
    assert TEACHER_EMAIL in teacher_line
    [nurse_line] = lines_about(body, "Nina Nurse")
    assert "Health visitor" in nurse_line
    assert "NHS Trust" in nurse_line
    assert "not confirmed yet" in nurse_line
    assert NURSE_PHONE not in body
    assert NURSE_EMAIL not in body
    # Sensitive: not even a trace for an ordinary member.
    assert "Wes Worker" not in body
    assert WORKER_PHONE not in body
    assert "DV support" not in body
    assert reply.mentions == ()
    assert f'href="https://matrix.to/#/{TEACHER}"' in reply.formatted_body


async def test_sensitive_members_are_seen_by_the_lead_admins_and_themselves(
    db: Database, clock: ManualClock
) -> None:
    await team(db, clock)
    for viewer in (LEAD, ADMIN, WORKER):
        if viewer == ADMIN:
            await member(db, ADMIN, "invite", sender=LEAD)
            await member(db, ADMIN, "join")
        before = len(await outbox(db))
        reply = await say(db, "!whois", sender=viewer)
        # The answer is read by everyone in the room: the sensitive member is not in it ...
        assert "Wes Worker" not in reply.body
        assert WORKER_PHONE not in reply.body
        assert "A confidential service is also involved" in reply.body
        assert "sent the confidential involvements you may see to our direct chat" in reply.body
        # ... but goes, with their details, to the viewer's own direct chat.
        [private] = [
            item for item in (await outbox(db))[before:] if item.room_id == direct_chat_of(viewer)
        ]
        body = private.payload["content"]["body"]
        [worker_line] = lines_about(body, "Wes Worker")
        assert "DV support" in worker_line
        assert WORKER_PHONE in worker_line
        if viewer != WORKER:
            assert "sensitive: hidden from ordinary look-ups" in worker_line


async def test_an_ordinary_member_learns_only_that_a_confidential_service_is_involved(
    db: Database, clock: ManualClock
) -> None:
    await team(db, clock)
    before = len(await outbox(db))
    reply = await say(db, "!whois", sender=NURSE)
    assert "A confidential service is also involved with this family; the lead, Lee Lead, " \
        "can put you in touch." in reply.body
    assert "direct chat" not in reply.body
    assert [item for item in (await outbox(db))[before:] if item.room_id.startswith("!dm-")] == []


async def test_one_card_by_name_role_or_user_id(db: Database, clock: ManualClock) -> None:
    await team(db, clock)
    by_role = (await say(db, "!whois health", sender=TEACHER)).body
    assert by_role.splitlines()[0] == "Nina Nurse"
    assert "Health visitor" in by_role
    assert "contact details not shared" in by_role
    assert NURSE_PHONE not in by_role
    card = await say(db, f"!whois {TEACHER}", sender=NURSE)
    by_id = card.body
    assert by_id.splitlines()[0] == "Tara Teacher"
    # A phone number is a tel: link, written for reading (not inline code).
    assert f"phone {TEACHER_PHONE}" in by_id
    assert f'phone <a href="tel:+441632960123">{TEACHER_PHONE}</a>' in card.formatted_body
    by_localpart = (await say(db, "!whois @tea", sender=NURSE)).body
    assert by_localpart == by_id
    hidden = (await say(db, "!whois DV", sender=NURSE)).body
    assert hidden.startswith("Nobody on this team matches `DV`.")


async def test_several_matches_give_a_short_list(db: Database, clock: ManualClock) -> None:
    await team(db, clock)
    body = (await say(db, "!whois e", sender=NURSE)).body
    assert body.startswith("3 people on this team match `e`:")
    assert TEACHER_PHONE not in body
    assert "!whois @user:server" in body


async def test_every_look_up_is_audited_without_contact_data(
    db: Database, clock: ManualClock
) -> None:
    family = await team(db, clock)
    await say(db, "!whois", sender=NURSE)
    await say(db, "!whois teacher", sender=NURSE)
    await say(db, "!whois nobody-at-all", sender=NURSE)
    rows = await audits(db, "whois")
    assert [(row.actor, row.family_id, row.detail["query"]) for row in rows] == [
        (NURSE, family.id, None),
        (NURSE, family.id, "teacher"),
        (NURSE, family.id, "nobody-at-all"),
    ]
    assert rows[0].detail["shown"] == [LEAD, TEACHER, NURSE]
    assert rows[1].detail["shown"] == [TEACHER]
    assert rows[2].detail["shown"] == []
    for row in rows:
        text = str(row.detail)
        assert TEACHER_PHONE not in text
        assert TEACHER_EMAIL not in text


async def test_whois_works_only_in_a_family_room(db: Database, clock: ManualClock) -> None:
    await team(db, clock)
    reply = await say(db, "!whois", sender=NURSE, room_id=DM, room_kind=RoomKind.DIRECT)
    assert reply.body == "`!whois` only works in a family room."
    assert await audits(db, "whois") == []


async def test_invited_members_are_marked(db: Database, clock: ManualClock) -> None:
    await team(db, clock)
    await member(db, ADMIN, "invite", sender=LEAD)
    body = (await say(db, "!whois ada", sender=LEAD)).body
    assert "invited, not joined yet" in body
