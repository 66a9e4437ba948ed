"""Who may look a family's team up: only its current members, and administrators (with an
audit row saying so). A lapsed member who stayed in the room, or anyone the roster does not
know, is refused, and the refusal is audited too."""

from __future__ import annotations

from storage import Database
from tests.unit.test_team_commands_support import (
    ADMIN,
    LEAD,
    NURSE,
    TEACHER,
    WORKER,
    ManualClock,
    active_family,
    audits,
    say,
    snapshot,
)
from tests.unit.test_team_commands_whois import TEACHER_PHONE, team

pytest_plugins = ("tests.unit.test_team_commands_support",)


async def test_a_lapsed_member_who_stayed_sees_nothing(db: Database, clock: ManualClock) -> None:
    family = await team(db, clock)
    async with db.transaction() as tx:
        nurse = await tx.involvements.get(family.id, NURSE)
        assert nurse is not None
        await tx.involvements.end(nurse.id, "lapsed")
    reply = await say(db, "!whois", sender=NURSE)
    assert TEACHER_PHONE not in reply.body
    assert "Only members of this family's team" in reply.body
    [refused] = await audits(db, "whois_refused")
    assert refused.actor == NURSE


async def test_someone_not_on_the_roster_sees_nothing(db: Database, clock: ManualClock) -> None:
    await team(db, clock)
    before = await snapshot(db)
    reply = await say(db, "!whois teacher", sender="@stranger:council.example")
    assert TEACHER_PHONE not in reply.body
    assert "Only members of this family's team" in reply.body
    outbox_size, audit_size, rows = await snapshot(db)
    assert (outbox_size, rows) == (before[0], before[2])
    assert audit_size == before[1] + 1


async def test_an_admin_not_on_the_team_sees_it_and_the_audit_says_so(
    db: Database, clock: ManualClock
) -> None:
    await team(db, clock)
    reply = await say(db, "!whois", sender=ADMIN)
    assert TEACHER_PHONE in reply.body
    entry = (await audits(db, "whois"))[-1]
    assert entry.actor == ADMIN
    assert entry.detail["as_admin"] is True


async def test_members_look_up_as_before(db: Database, clock: ManualClock) -> None:
    await active_family(db, joined=(TEACHER, WORKER))
    reply = await say(db, "!whois", sender=TEACHER)
    assert "The team for" in reply.body
    assert (await audits(db, "whois"))[-1].detail.get("as_admin") is None
    assert LEAD
