"""Family team rooms against a real Synapse: creation, governance, invites, the roster mirrored
from membership (also across a restart), `!whois`, `!cases`, refusals, and room state."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from nio import RoomGetStateResponse

from bot.auditkey import load_audit_key
from devkit.botproc import BotProcess
from devkit.practitioner import BotMessage, Practitioner
from storage import Database, Family, Involvement
from tests.integration.conftest import BotFactory, MakePractitioner

REFERENCE = "LDC-2026-0042"


@asynccontextmanager
async def bot_database(bot: BotProcess) -> AsyncIterator[Database]:
    """The running bot's own database (SQLite in WAL mode allows a second reader), with the
    bot's audit key so the chain can be verified."""
    data = bot.config_path.parent / "data"
    db = await Database.open(
        data / "patchwork.db", audit_key=load_audit_key(data, create=False)
    )
    try:
        yield db
    finally:
        await db.close()


async def family_and_roster(bot: BotProcess, reference: str) -> tuple[Family, list[Involvement]]:
    async with bot_database(bot) as db, db.read() as tx:
        family = await tx.families.by_reference(reference)
        assert family is not None
        roster = await tx.involvements.for_family(family.id, active_only=False)
    return family, roster


async def direct_chat(person: Practitioner, bot: BotProcess) -> str:
    room_id = await person.create_encrypted_room(invite=[bot.user_id])
    await person.wait_for_membership(room_id, bot.user_id, "join")
    return room_id


async def direct_invite_from(bot: BotProcess, person: Practitioner, timeout: float = 30) -> str:  # noqa: ASYNC109
    """The id of a room without a name (a direct chat) that the bot has invited `person` to."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for room_id, room in person.client.invited_rooms.items():
            if (
                room.inviter == bot.user_id
                and room.name is None
                and person.membership(room_id, person.user_id) == "invite"
            ):
                return str(room_id)
        await person.wait_for_sync(timeout=max(0.1, deadline - time.monotonic()))
    raise AssertionError(f"{person.user_id} was not invited to a direct chat by the bot")


async def create_family(lead: Practitioner, bot: BotProcess, reference: str) -> tuple[str, float]:
    """`!family new` in a direct chat; returns the family room id once the lead has joined,
    and the seconds from sending the command to being in the new room."""
    dm = await direct_chat(lead, bot)
    started = time.monotonic()
    reply = await lead.ask(dm, f"!family new {reference}", bot=bot.user_id)
    assert reference in reply.body
    room_id = await lead.wait_for_invite(f"Team {reference}")
    await lead.join(room_id)
    seconds = time.monotonic() - started
    # The join is announced in the room and the lead is welcomed in the direct chat; wait for
    # both, so neither is taken for the answer to a later command.
    await lead.wait_for_notice(
        room_id, sender=bot.user_id, predicate=lambda n: "joined the team" in n.body
    )
    await private_welcome(lead, bot, reference)
    return room_id, seconds


async def private_welcome(
    person: Practitioner, bot: BotProcess, reference: str, timeout: float = 30  # noqa: ASYNC109
) -> tuple[str, BotMessage]:
    """The bot's welcome to the team `reference`, in any of the person's direct chats with it
    (the bot uses the first it finds): the room and the message."""
    deadline = time.monotonic() + timeout
    while True:
        for room_id in list(person.client.rooms):
            for notice in person.notices(room_id, bot.user_id):
                if notice.body.startswith(f"Welcome to Team {reference}"):
                    return room_id, notice
        assert time.monotonic() < deadline, f"{person.user_id} got no welcome to {reference}"
        await person.wait_for_sync(timeout=max(0.1, deadline - time.monotonic()))


async def activate(lead: Practitioner, bot: BotProcess, room_id: str) -> None:
    basis = await lead.ask(room_id, "!family basis public_task s.17 Children Act 1989",
                           bot=bot.user_id)
    assert "public_task" in basis.body or "public task" in basis.body.lower()
    await lead.ask(room_id, "!family informed leaflet given at home visit", bot=bot.user_id)
    async with bot_database(bot) as db, db.read() as tx:
        family = await tx.families.by_room(room_id)
    assert family is not None
    assert family.status == "active"


def active_members(roster: list[Involvement]) -> dict[str, str]:
    return {row.user_id: row.membership for row in roster if row.status == "active"}


async def test_a_full_team_story(
    make_practitioner: MakePractitioner, make_bot: BotFactory
) -> None:
    bot = await make_bot()
    lead = await make_practitioner("lead", displayname="Sam Lead")
    teacher = await make_practitioner("teacher", displayname="Tess Teacher")
    visitor = await make_practitioner("visitor", displayname="Vic Visitor")
    youth = await make_practitioner("youth", displayname="Yan Youth")

    room_id, seconds = await create_family(lead, bot, REFERENCE)
    print(f"\nfamily room created and joined in {seconds:.2f} s")
    family, roster = await family_and_roster(bot, REFERENCE)
    assert family.room_id == room_id
    assert family.status == "pending"
    assert active_members(roster) == {lead.user_id: "join"}
    assert next(row for row in roster if row.user_id == lead.user_id).is_lead

    await activate(lead, bot, room_id)
    invited = await lead.ask(room_id, f'!invite {teacher.user_id} "Class teacher"',
                             bot=bot.user_id)
    assert "Class teacher" in invited.body
    await lead.ask(room_id, f"!invite {visitor.user_id} Health visitor", bot=bot.user_id)
    await lead.invite(room_id, youth.user_id)  # Element's own invite button, not the bot

    for person in (teacher, visitor, youth):
        await person.wait_for_invite(f"Team {REFERENCE}")
        await person.join(room_id)
        await lead.wait_for_membership(room_id, person.user_id, "join")
        # The team reads one quiet line; the newcomer's instructions go to them alone.
        line = await lead.wait_for_notice(
            room_id, sender=bot.user_id, predicate=lambda n, p=person: "joined the team" in n.body
            and p.user_id in (n.formatted_body or "")
        )
        assert line.source["content"]["m.mentions"] == {"user_ids": []}
        assert "!role" not in line.body
        dm = await direct_invite_from(bot, person)
        await person.join(dm)
        welcome = await person.wait_for_notice(
            dm, sender=bot.user_id, predicate=lambda n: "!role" in n.body
        )
        assert welcome.source["content"]["msgtype"] == "m.text"
        assert person.user_id in welcome.source["content"]["m.mentions"]["user_ids"]
        assert "!contact share" in welcome.body, "a newcomer is asked whether to share"
        assert f'href="https://matrix.to/#/{room_id}' in (welcome.formatted_body or "")
        assert not [
            n for n in lead.notices(room_id, bot.user_id) if "!contact share" in n.body
        ], "the whole team does not read one person's welcome"

    await youth.ask(room_id, "!role Youth worker", bot=bot.user_id)
    # Phone numbers and email addresses are given in a direct chat, not in front of the team.
    teacher_dm = await direct_chat(teacher, bot)
    await teacher.ask(teacher_dm, "!contact set phone 01234 567890", bot=bot.user_id)
    await teacher.ask(teacher_dm, "!contact set email tess@school.example", bot=bot.user_id)
    await teacher.ask(room_id, "!contact set org Oak Primary School", bot=bot.user_id)
    await teacher.ask(room_id, "!contact share on", bot=bot.user_id)
    visitor_dm = await direct_chat(visitor, bot)
    await visitor.ask(visitor_dm, "!contact set phone 0161 496 0123", bot=bot.user_id)
    await visitor.ask(room_id, "!contact share off", bot=bot.user_id)
    youth_dm = await direct_chat(youth, bot)
    await youth.ask(youth_dm, "!contact set email yan@youth.example", bot=bot.user_id)
    await youth.ask(room_id, "!contact share on", bot=bot.user_id)

    _, roster = await family_and_roster(bot, REFERENCE)
    assert active_members(roster) == {
        person.user_id: "join" for person in (lead, teacher, visitor, youth)
    }
    roles = {row.user_id: row.role for row in roster}
    assert roles[teacher.user_id] == "Class teacher"
    assert roles[visitor.user_id] == "Health visitor"
    assert roles[youth.user_id] == "Youth worker"
    youth_row = next(row for row in roster if row.user_id == youth.user_id)
    assert youth_row.invited_by == lead.user_id

    whois = await visitor.ask(room_id, "!whois", bot=bot.user_id)
    assert "01234 567890" in whois.body, "the teacher shares her phone number"
    assert "tess@school.example" in whois.body
    assert "Oak Primary School" in whois.body
    assert "yan@youth.example" in whois.body
    assert "0161 496 0123" not in whois.body, "the health visitor declined to share"
    for name in ("Sam Lead", "Tess Teacher", "Vic Visitor", "Yan Youth"):
        assert name in whois.body
    card = await lead.ask(room_id, "!whois teacher", bot=bot.user_id)
    assert "Tess Teacher" in card.body
    assert "Vic Visitor" not in card.body

    async with bot_database(bot) as db, db.read() as tx:
        reads = await tx.audit.count("whois")
        assert reads == 2, "every look-up is audited"
        assert await tx.audit.verify() is None

    for person in (lead, teacher, visitor, youth):
        dm = await direct_chat(person, bot)
        cases = await person.ask(dm, "!cases", bot=bot.user_id)
        assert REFERENCE in cases.body, f"{person.user_id}: {cases.body}"


async def test_membership_changes_while_the_bot_is_down_are_mirrored_once(
    make_practitioner: MakePractitioner, make_bot: BotFactory
) -> None:
    bot = await make_bot()
    lead = await make_practitioner("lead")
    leaver = await make_practitioner("leaver")
    kicked = await make_practitioner("kicked")
    room_id, _ = await create_family(lead, bot, "LDC-2026-0100")
    await activate(lead, bot, room_id)
    for person in (leaver, kicked):
        await lead.ask(room_id, f"!invite {person.user_id} Support worker", bot=bot.user_id)
        await person.wait_for_invite("Team LDC-2026-0100")
        await person.join(room_id)
        await lead.wait_for_membership(room_id, person.user_id, "join")
    await lead.ask(room_id, "!help", bot=bot.user_id)  # everything so far is processed

    assert await bot.stop() == 0
    await leaver.leave(room_id)
    await lead.kick(room_id, kicked.user_id, "moved to another team")
    await lead.wait_for_membership(room_id, kicked.user_id, "leave")
    await bot.start()
    await lead.ask(room_id, "!help", bot=bot.user_id)
    await bot.stop()
    await bot.start()  # a second start must not record anything again
    await lead.ask(room_id, "!help", bot=bot.user_id)

    family, roster = await family_and_roster(bot, "LDC-2026-0100")
    rows = {row.user_id: row for row in roster}
    assert rows[leaver.user_id].status == "ended"
    assert rows[leaver.user_id].end_reason == "left"
    assert rows[kicked.user_id].status == "ended"
    assert rows[kicked.user_id].end_reason == "removed"
    assert active_members(roster) == {lead.user_id: "join"}
    async with bot_database(bot) as db, db.read() as tx:
        entries = await tx.audit.recent(family.id, 200)
    for person in (leaver, kicked):
        ended = [
            entry for entry in entries
            if entry.action == "membership"
            and entry.detail.get("user") == person.user_id
            and entry.detail.get("after") == "leave"
        ]
        assert len(ended) == 1, f"{person.user_id}: {[e.detail for e in ended]}"
    notices = lead.notices(room_id, bot.user_id)
    for person, word in ((leaver, "left"), (kicked, "removed")):
        told = [
            notice.body for notice in notices
            if person.user_id in str(notice.source["content"].get("formatted_body"))
            and word in notice.body
        ]
        assert len(told) == 1, [notice.body for notice in notices]


async def test_refusals_are_clear_and_change_nothing(
    make_practitioner: MakePractitioner, make_bot: BotFactory
) -> None:
    bot = await make_bot()
    lead = await make_practitioner("lead")
    other = await make_practitioner("other")
    room_id, _ = await create_family(lead, bot, "LDC-2026-0200")
    dm = await direct_chat(lead, bot)

    async def snapshot() -> tuple[int, list[tuple[str, str, str]]]:
        family, roster = await family_and_roster(bot, "LDC-2026-0200")
        async with bot_database(bot) as db, db.read() as tx:
            changes = len([e for e in await tx.audit.recent(None, 1000) if e.action != "whois"])
        return changes, [(r.user_id, r.membership, r.status) for r in roster]

    before = await snapshot()
    pending = await lead.ask(room_id, f"!invite {other.user_id} Teacher", bot=bot.user_id)
    assert "!family basis" in pending.body
    bad_user = await lead.ask(room_id, "!invite sam Teacher", bot=bot.user_id)
    assert "Usage" in bad_user.body
    bad_reference = await lead.ask(dm, "!family new 42", bot=bot.user_id)
    assert "Usage" in bad_reference.body
    duplicate = await lead.ask(dm, "!family new LDC-2026-0200", bot=bot.user_id)
    assert "LDC-2026-0200" in duplicate.body
    not_family = await lead.ask(dm, "!whois", bot=bot.user_id)
    assert "family room" in not_family.body
    bad_phone = await lead.ask(room_id, "!contact set phone call me maybe", bot=bot.user_id)
    assert "Usage" in bad_phone.body or "phone" in bad_phone.body.lower()
    assert await snapshot() == before

    await activate(lead, bot, room_id)
    await lead.ask(room_id, f"!invite {other.user_id} Teacher", bot=bot.user_id)
    await other.wait_for_invite("Team LDC-2026-0200")
    await other.join(room_id)
    await lead.wait_for_membership(room_id, other.user_id, "join")
    # The bot has mirrored the join (its notice is out) before the refusals begin.
    await lead.wait_for_notice(
        room_id,
        sender=bot.user_id,
        predicate=lambda n: "joined the team as `Teacher`" in n.body,  # not the lead's own
    )
    before = await snapshot()
    foreign = await lead.ask(room_id, "!invite @sam:example.org Teacher", bot=bot.user_id)
    assert "example.org" in foreign.body
    unknown = await lead.ask(room_id, "!invite @nobody-here:localhost Teacher", bot=bot.user_id)
    assert "@nobody-here:localhost" in unknown.body
    not_lead = await other.ask(room_id, f"!lead {other.user_id}", bot=bot.user_id)
    assert "lead" in not_lead.body.lower()
    already = await lead.ask(room_id, f"!invite {other.user_id} Teacher", bot=bot.user_id)
    assert "already on this team" in already.body
    assert await snapshot() == before


async def test_room_state_holds_nothing_but_the_reference(
    make_practitioner: MakePractitioner, make_bot: BotFactory
) -> None:
    bot = await make_bot()
    lead = await make_practitioner("lead", displayname="Sam Lead")
    room_id, _ = await create_family(lead, bot, "LDC-2026-0300")
    await activate(lead, bot, room_id)

    response = await lead.client.room_get_state(room_id)
    assert isinstance(response, RoomGetStateResponse)
    state = {(event["type"], event["state_key"]): event["content"] for event in response.events}
    assert state[("m.room.name", "")] == {"name": "Team LDC-2026-0300"}
    assert state[("m.room.topic", "")]["topic"] == (
        "Team room for a family's support network — send !help"
    )
    assert state[("org.patchwork.family", "")] == {"reference": "LDC-2026-0300"}
    assert state[("m.room.encryption", "")]["algorithm"] == "m.megolm.v1.aes-sha2"
    assert state[("m.room.join_rules", "")]["join_rule"] == "invite"
    assert state[("m.room.guest_access", "")]["guest_access"] == "forbidden"
    assert state[("m.room.history_visibility", "")]["history_visibility"] == "invited"
    allowed_types = {
        "m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules",
        "m.room.history_visibility", "m.room.guest_access", "m.room.encryption",
        "m.room.name", "m.room.topic", "org.patchwork.family",
        "m.room.server_acl",  # server names only: the allowed servers and the bot's own
    }
    assert {event_type for event_type, _ in state} <= allowed_types
    topic = state[("m.room.topic", "")]["topic"]
    assert "public_task" not in topic
    assert "Children Act" not in topic
