"""The everyday team commands through the real dispatcher and a real database: `!invite`,
`!role`, `!lead`, `!cases` and `!family`, each happy path and each refusal, and that a refused
command changes nothing stored."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import pytest

from commands import build_registry
from commands.framework.context import RoomKind
from commands.framework.registry import Command, Group
from commands.shared import lead_or_admin as sender_is_lead_or_admin
from rooms.policy import TeamPolicy
from storage import Database
from tests.unit.test_team_commands_support import (
    ADMIN,
    BOT,
    DM,
    LEAD,
    NURSE,
    OUTSIDER,
    POLICY,
    REF,
    ROOM,
    TEACHER,
    WORKER,
    active_family,
    audits,
    member,
    notices,
    outbox,
    pending_family,
    run,
    say,
    snapshot,
)

pytest_plugins = ("tests.unit.test_team_commands_support",)

# --- !invite ----------------------------------------------------------------------------------


async def test_invite_records_the_role_and_queues_the_invite(db: Database) -> None:
    family = await active_family(db, joined=(TEACHER,))
    reply = await say(db, f"!invite {NURSE} Health visitor", sender=TEACHER, event_id="$inv")
    assert reply.body == (
        "I have invited Nina Nurse as `Health visitor`. When they join I will welcome them "
        "and ask whether they share their contact details."
    )
    async with db.read() as tx:
        involvement = await tx.involvements.get(family.id, NURSE)
    assert involvement is not None
    assert (involvement.membership, involvement.role, involvement.invited_by) == (
        "invite",
        "Health visitor",
        TEACHER,
    )
    invites = [item for item in await outbox(db) if item.kind == "invite"]
    [item] = [item for item in invites if item.payload["user_id"] == NURSE]
    assert item.room_id == ROOM
    assert "Health visitor" not in item.payload.get("reason", "")  # room state is not encrypted
    [entry] = await audits(db, "invite")
    assert (entry.actor, entry.detail) == (TEACHER, {"user": NURSE, "role": "Health visitor"})

    # The homeserver's own invite event is then mirrored without a second record.
    settled = await snapshot(db)
    await member(db, NURSE, "invite", sender=BOT)
    assert await snapshot(db) == settled
    # And once they join, the welcome knows their role.
    await member(db, NURSE, "join")
    assert "You were invited as `Health visitor`" in notices(await outbox(db))[-1]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("!invite sam Teacher", "is not a Matrix user id"),
        ("!invite @Sam:school.example Teacher", "user ids are lower case"),
        (f"!invite {NURSE}", "needs `<role>`"),
        ("!invite @ghost:school.example Teacher", "I cannot find `@ghost:school.example`"),
        (f"!invite {TEACHER} Teacher", "Tara Teacher is already on this team."),
        (f"!invite {BOT} Bot", "I am already here"),
        (f"!invite {OUTSIDER} Teacher", "only people with an account on council.example"),
    ],
)
async def test_invite_refusals_change_nothing(db: Database, body: str, expected: str) -> None:
    await active_family(db, joined=(TEACHER,))
    before = await snapshot(db)
    reply = await say(db, body, sender=LEAD)
    assert expected in reply.body
    assert await snapshot(db) == before


async def test_invite_refuses_someone_already_invited(db: Database) -> None:
    await active_family(db)
    await say(db, f"!invite {NURSE} Health visitor", sender=LEAD)
    before = await snapshot(db)
    reply = await say(db, f"!invite {NURSE} Health visitor", sender=LEAD)
    assert reply.body == "Nina Nurse has already been invited to this team."
    assert await snapshot(db) == before


async def test_invite_in_a_pending_family_says_what_the_lead_must_do(db: Database) -> None:
    await pending_family(db)
    await member(db, LEAD, "join")
    before = await snapshot(db)
    reply = await say(db, f"!invite {NURSE} Health visitor", sender=LEAD)
    assert reply.body.startswith("This team is still being set up")
    assert "!family basis" in reply.body
    assert "!family informed" in reply.body
    assert await snapshot(db) == before


async def test_only_team_members_invite(db: Database) -> None:
    family = await active_family(db, joined=(TEACHER,))
    await member(db, TEACHER, "leave")
    async with db.transaction() as tx:
        await tx.involvements.upsert_membership(family.id, NURSE, "join")
        nurse = await tx.involvements.get(family.id, NURSE)
        assert nurse is not None
        await tx.involvements.end(nurse.id, "lapsed")
    before = await snapshot(db)
    reply = await say(db, f"!invite {WORKER} Youth worker", sender=NURSE)
    assert reply.body == "Only members of this family's team can invite colleagues."
    assert await snapshot(db) == before
    # An administrator may, team member or not.
    await say(db, f"!invite {WORKER} Youth worker", sender=ADMIN)


# --- !role ------------------------------------------------------------------------------------


async def test_role_sets_your_own_role(db: Database) -> None:
    family = await active_family(db, joined=(TEACHER,))
    reply = await say(db, "!role   Class   teacher ", sender=TEACHER)
    assert reply.body == "Thank you. Your role in this case is now `Class teacher`."
    async with db.read() as tx:
        involvement = await tx.involvements.get(family.id, TEACHER)
    assert involvement is not None
    assert involvement.role == "Class teacher"
    assert (await audits(db, "role"))[-1].detail == {"role": "Class teacher"}


async def test_role_refusals(db: Database) -> None:
    await active_family(db)
    before = await snapshot(db)
    assert "no role here" in (await say(db, "!role Nurse", sender=NURSE)).body
    assert "needs `<your role>`" in (await say(db, "!role", sender=LEAD)).body
    too_long = await say(db, "!role " + "x" * 81, sender=LEAD)
    assert "the most I can take here is 80" in too_long.body
    assert await snapshot(db) == before


# --- !lead ------------------------------------------------------------------------------------


async def test_the_lead_hands_over(db: Database) -> None:
    family = await active_family(db, joined=(TEACHER,))
    reply = await say(db, f"!lead {TEACHER}", sender=LEAD, event_id="$lead")
    assert reply.body == "Tara Teacher is now the lead for this family, handed over by Lee Lead."
    assert reply.mentions == (TEACHER,)
    async with db.read() as tx:
        lead = await tx.involvements.lead(family.id)
    assert lead is not None
    assert lead.user_id == TEACHER
    [state] = [item for item in await outbox(db) if item.kind == "state"]
    assert state.payload["content"]["users"] == {TEACHER: 50}
    assert (await audits(db, "lead"))[-1].detail == {"from": LEAD, "to": TEACHER}
    # The old lead no longer may; an administrator always may.
    before = await snapshot(db)
    refused = await say(db, f"!lead {LEAD}", sender=LEAD)
    assert refused.body == "Only this family's lead or a Patchwork administrator can do that."
    assert await snapshot(db) == before
    await say(db, f"!lead {LEAD}", sender=ADMIN)
    async with db.read() as tx:
        lead = await tx.involvements.lead(family.id)
    assert lead is not None
    assert lead.user_id == LEAD


async def test_lead_refusals(db: Database) -> None:
    await active_family(db, joined=(TEACHER,))
    await member(db, NURSE, "invite", sender=LEAD)
    before = await snapshot(db)
    not_lead = await say(db, f"!lead {TEACHER}", sender=TEACHER)
    assert not_lead.body == "Only this family's lead or a Patchwork administrator can do that."
    invited = await say(db, f"!lead {NURSE}", sender=LEAD)
    assert "Nina Nurse is not a member of this team who has joined the room" in invited.body
    stranger = await say(db, f"!lead {WORKER}", sender=LEAD)
    assert "Wes Worker is not a member" in stranger.body
    already = await say(db, f"!lead {LEAD}", sender=LEAD)
    assert already.body == "Lee Lead is already the lead."
    assert await snapshot(db) == before


# --- !cases -----------------------------------------------------------------------------------


async def test_cases_lists_your_active_families(db: Database) -> None:
    await active_family(db, joined=(TEACHER,))
    async with db.transaction() as tx:
        family = await tx.families.by_room(ROOM)
        assert family is not None
        await tx.involvements.set_role(family.id, TEACHER, "Class teacher")
        other = await tx.families.create("LDC-2026-0007", "!other:council.example", LEAD)
        await tx.involvements.upsert_membership(other.id, TEACHER, "join")
        await tx.involvements.upsert_membership(other.id, TEACHER, "leave")
    reply = await say(db, "!cases", sender=TEACHER, room_id=DM, room_kind=RoomKind.DIRECT)
    link = f"https://matrix.to/#/{ROOM}?via=council.example"
    assert reply.body == (
        "You are on one family's team:\n"
        f"• LDC-2026-0042 ({link}) — Class teacher, not confirmed yet"
    )
    # One tap opens the family's room: Element shows a matrix.to room link as a pill.
    assert f'<strong><a href="{link}">LDC-2026-0042</a></strong>' in reply.formatted_body
    lead = await say(db, "!cases", sender=LEAD, room_id=DM, room_kind=RoomKind.DIRECT)
    assert f"LDC-2026-0042 ({link}) — role not given yet, lead" in lead.body
    nobody = await say(db, "!cases", sender=NURSE, room_id=DM, room_kind=RoomKind.DIRECT)
    assert nobody.body.startswith("You are not on any family's team at the moment.")
    in_room = await say(db, "!cases", sender=TEACHER)
    assert in_room.body == "`!cases` only works in a direct chat with me."


async def test_cases_for_hundreds_of_families_is_split_below_the_event_size_limit(
    db: Database,
) -> None:
    """An administrator leading 600 families: several messages, each small enough for
    Synapse's 64 KiB limit once encrypted (about 4/3 of the plaintext), none lost."""
    async with db.transaction() as tx:
        for number in range(600):
            family = await tx.families.create(
                f"LDC-2026-{number:04d}", f"!room{number:04d}abcdefghijklmnop:council.example", LEAD
            )
            await tx.involvements.upsert_membership(family.id, LEAD, "join")
            await tx.involvements.set_role(family.id, LEAD, "Family support worker (lead)")
    replies = await run(db, "!cases", sender=LEAD, room_id=DM, room_kind=RoomKind.DIRECT)
    assert len(replies) > 1
    for reply in replies:
        size = len(json.dumps(reply.to_content()).encode("utf-8"))
        assert size * 4 / 3 + 2_000 < 65_536, size
    assert replies[0].body.startswith("You are on the teams of 600 families:")
    assert replies[1].body.startswith(f"Your families, continued (2 of {len(replies)}):")
    listed = [line for reply in replies for line in reply.body.splitlines() if line[:1] == "•"]
    assert len(listed) == 600
    assert all("https://matrix.to/#/!room" in line for line in listed)


# --- !family ----------------------------------------------------------------------------------


async def test_family_new_creates_a_pending_family(db: Database) -> None:
    reply = await say(
        db, "!family new ldc-2026-0042", sender=LEAD, room_id=DM, room_kind=RoomKind.DIRECT
    )
    assert reply.body.startswith(
        f"I am creating the room `Team {REF}` and will invite you to it as the family's lead"
    )
    assert "!family basis" in reply.body
    async with db.read() as tx:
        family = await tx.families.by_reference(REF)
    assert family is not None
    assert (family.status, family.created_by) == ("pending", LEAD)
    assert [item.kind for item in await outbox(db)] == ["create_room"]


@pytest.mark.parametrize(
    ("body", "room_kind", "expected"),
    [
        ("!family new Smith family", RoomKind.DIRECT, "`Smith` is not a case reference"),
        ("!family new JaneDoe", RoomKind.DIRECT, "`JaneDoe` is not a case reference"),
        ("!family new LDC-2026-0042", RoomKind.DIRECT, "There is already a family"),
        ("!family new LDC-2026-0099", RoomKind.FAMILY, "only works in a direct chat"),
        ("!family", RoomKind.DIRECT, "`!family` needs a subcommand."),
    ],
)
async def test_family_new_refusals(
    db: Database, body: str, room_kind: RoomKind, expected: str
) -> None:
    await pending_family(db)
    before = await snapshot(db)
    room_id = DM if room_kind is RoomKind.DIRECT else ROOM
    reply = await say(db, body, sender=TEACHER, room_id=room_id, room_kind=room_kind)
    assert expected in reply.body
    assert await snapshot(db) == before


async def test_only_admins_create_families_when_the_policy_says_so(db: Database) -> None:
    strict = TeamPolicy(
        BOT, POLICY.allowed_servers, POLICY.admins, "admins", POLICY.prompt_interval
    )
    refused = await say(
        db,
        "!family new LDC-2026-0042",
        sender=LEAD,
        room_id=DM,
        room_kind=RoomKind.DIRECT,
        policy=strict,
    )
    assert refused.body.startswith("Only Patchwork administrators can create family rooms")
    assert await outbox(db) == []


async def test_governance_records_activate_the_family(db: Database) -> None:
    family = await pending_family(db)
    await member(db, LEAD, "join")
    basis = await say(db, "!family basis public_task s.17 Children Act 1989", sender=LEAD)
    assert basis.body.startswith(f"Recorded the lawful basis for {REF}: public task.")
    assert "Still needed before anyone else can join:" in basis.body
    assert "!family informed" in basis.body
    assert "!family basis" not in basis.body
    async with db.read() as tx:
        pending = await tx.families.get(family.id)
    assert pending is not None
    assert pending.status == "pending"

    informed = await say(db, "!family informed leaflet given at the home visit", sender=LEAD)
    assert informed.body.startswith(f"Recorded that the family for {REF} was told")
    assert "The team is now active" in informed.body
    async with db.read() as tx:
        active = await tx.families.get(family.id)
    assert active is not None
    assert (active.status, active.lawful_basis, active.basis_note) == (
        "active",
        "public_task",
        "s.17 Children Act 1989",
    )
    assert [entry.detail for entry in await audits(db, "family_basis")] == [
        {"basis": "public_task", "note": True}
    ]
    assert [entry.detail for entry in await audits(db, "family_informed")] == [
        {"informed": True, "note": True}
    ]


async def test_unsafe_to_tell_the_family_also_counts(db: Database) -> None:
    family = await pending_family(db)
    await member(db, LEAD, "join")
    unsafe = await say(db, "!family unsafe telling them could put a parent at risk", sender=LEAD)
    assert "Still needed before anyone else can join:" in unsafe.body
    assert "!family basis" in unsafe.body
    await say(db, "!family basis vital_interests", sender=LEAD)
    async with db.read() as tx:
        active = await tx.families.get(family.id)
    assert active is not None
    assert active.status == "active"
    assert active.not_informed_reason == "telling them could put a parent at risk"


async def test_governance_commands_are_for_the_lead_and_admins(db: Database) -> None:
    await active_family(db, joined=(TEACHER,))
    before = await snapshot(db)
    for body in ("!family basis consent", "!family informed", "!family unsafe because"):
        reply = await say(db, body, sender=TEACHER)
        assert reply.body == "Only this family's lead or a Patchwork administrator can do that."
    assert "needs `<reason>`" in (await say(db, "!family unsafe", sender=LEAD)).body
    bad = await say(db, "!family basis because", sender=LEAD)
    assert "`because` is not one of the choices here" in bad.body
    assert await snapshot(db) == before
    await say(db, "!family basis consent", sender=ADMIN)


# --- !help, tailored ---------------------------------------------------------------------------


def _listed_before(body: str, heading: str) -> str:
    """The part of a help answer above `heading` (all of it if the heading is absent)."""
    return body.split(heading, 1)[0]


async def test_help_lists_lead_only_commands_for_the_lead_and_says_who_can_for_others(
    db: Database,
) -> None:
    await active_family(db, joined=(TEACHER,))
    heading = "Only this family's lead or a Patchwork administrator can use these:"
    member_help = (await say(db, "!help", sender=TEACHER)).body
    own, _, theirs = member_help.partition(heading)
    assert theirs, "a member learns that lead-only commands exist, and who can use them"
    # Read from the registry, so commands added later are covered too.
    lead_only = [
        item.qualified_name
        for item in _all_commands(build_registry().all())
        if item.permission is sender_is_lead_or_admin and item.usable_in(RoomKind.FAMILY)
        and not isinstance(item, Group)
    ]
    assert {"lead", "family basis"} <= set(lead_only)
    for name in lead_only:
        assert f"`!{name}` —" not in own, name
        assert f"`!{name}` —" in theirs, name
    assert "`!whois` —" in own
    assert "`!confirm` —" in own

    lead_help = (await say(db, "!help", sender=LEAD)).body
    assert heading not in lead_help
    for name in lead_only:
        assert f"`!{name}` —" in lead_help, name

    detail = (await say(db, "!help lead", sender=TEACHER)).body
    assert "Only this family's lead or a Patchwork administrator can do that." in detail
    assert "Only this family's lead" not in (await say(db, "!help lead", sender=LEAD)).body


def _all_commands(items: Iterable[Command]) -> Iterator[Command]:
    for item in items:
        yield item
        if isinstance(item, Group):
            yield from _all_commands(item.subcommands)
