"""Start-up reconciliation: changes made while the bot was down are recorded once, the team is
told once, the policy still applies, and a second run finds nothing to do."""

from __future__ import annotations

from rooms.reconcile import RosterChange, reconcile_family
from storage import BACKGROUND, Database
from tests.unit.test_team_commands_support import (
    BOT,
    LEAD,
    NURSE,
    OUTSIDER,
    POLICY,
    ROOM,
    TEACHER,
    WORKER,
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


async def reconcile(db: Database, members: dict[str, str]) -> list[RosterChange]:
    async with db.transaction() as tx:
        family = await tx.families.by_room(ROOM)
        assert family is not None
        return await reconcile_family(tx, family, members, POLICY, direct_chat_of)


async def test_leaves_kicks_and_joins_while_down_are_found_once(
    db: Database, clock: ManualClock
) -> None:
    family = await active_family(db, joined=(TEACHER, NURSE))
    await member(db, WORKER, "invite", sender=LEAD)
    before_outbox = len(await outbox(db))
    before_id = (await outbox(db))[-1].id
    before_audit = len(await audits(db))
    clock.advance(days=1)
    # While the bot was down: the teacher left, the nurse was kicked, the invited worker
    # joined, and the admin-less room gained nobody else.
    changes = await reconcile(db, {BOT: "join", LEAD: "join", WORKER: "join"})
    assert sorted((c.user_id, c.before, c.after, c.kind) for c in changes) == [
        (NURSE, "join", "leave", "ended"),
        (TEACHER, "join", "leave", "ended"),
        (WORKER, "invite", "join", "updated"),
    ]
    async with db.read() as tx:
        teacher = await tx.involvements.get(family.id, TEACHER)
        nurse = await tx.involvements.get(family.id, NURSE)
        worker = await tx.involvements.get(family.id, WORKER)
    assert teacher is not None
    assert nurse is not None
    assert worker is not None
    assert (teacher.status, teacher.end_reason) == ("ended", "left")
    assert (nurse.status, nurse.end_reason) == ("ended", "left")
    assert (worker.membership, worker.status) == ("join", "active")
    assert worker.next_prompt_at is not None

    new_audits = (await audits(db))[before_audit:]
    assert len(new_audits) == 3
    assert all(entry.action == "membership" for entry in new_audits)
    assert all(entry.detail["found_at"] == "start-up" for entry in new_audits)
    assert all(entry.actor == BOT for entry in new_audits)

    queued = (await outbox(db))[before_outbox:]
    [summary_item] = [item for item in queued if item.room_id == ROOM]
    async with db.read() as tx:
        rows = await tx.fetchall("SELECT priority FROM outbox WHERE id > ?", (before_id,))
    assert {row["priority"] for row in rows} == {BACKGROUND}, (
        "the notice, the welcome and the ACL wait behind any command answered meanwhile"
    )
    [summary] = notices([summary_item])
    assert summary.startswith("While I was offline, the team changed:")
    assert "Tara Teacher is no longer in this room and has left the team." in summary
    assert "Nina Nurse is no longer in this room" in summary
    assert "Wes Worker joined the team." in summary
    assert "!role" not in summary, "instructions for one person are not posted to the team"
    [welcome] = [item for item in queued if item.room_id == direct_chat_of(WORKER)]
    content = welcome.payload["content"]
    assert "!role <your role>" in content["body"]
    assert (content["msgtype"], content["m.mentions"]) == ("m.text", {"user_ids": [WORKER]})

    settled = await snapshot(db)
    assert await reconcile(db, {BOT: "join", LEAD: "join", WORKER: "join"}) == []
    assert await snapshot(db) == settled


async def test_people_added_while_down_are_added(db: Database) -> None:
    family = await active_family(db)
    changes = await reconcile(db, {LEAD: "join", TEACHER: "join", NURSE: "invite"})
    assert sorted((c.user_id, c.before, c.after, c.kind) for c in changes) == [
        (NURSE, None, "invite", "added"),
        (TEACHER, None, "join", "added"),
    ]
    async with db.read() as tx:
        team = {i.user_id: i.membership for i in await tx.involvements.for_family(family.id)}
    assert team == {LEAD: "join", TEACHER: "join", NURSE: "invite"}


async def test_someone_who_left_and_came_back_later_is_told_again(db: Database) -> None:
    await active_family(db, joined=(TEACHER,))
    await reconcile(db, {LEAD: "join"})

    async def in_room() -> int:
        return len(notices([item for item in await outbox(db) if item.room_id == ROOM]))

    first = await in_room()
    await reconcile(db, {LEAD: "join", TEACHER: "join"})
    await reconcile(db, {LEAD: "join"})
    assert await in_room() == first + 2


async def test_policy_applies_at_start_up_without_repeating_itself(db: Database) -> None:
    await active_family(db)
    changes = await reconcile(db, {LEAD: "join", OUTSIDER: "join"})
    assert [(c.user_id, c.kind) for c in changes] == [(OUTSIDER, "revoked")]
    kicks = [item for item in await outbox(db) if item.kind == "kick"]
    assert [item.payload["user_id"] for item in kicks] == [OUTSIDER]
    assert kicks[0].payload["announce"]["body"].startswith(f"I removed {OUTSIDER} from this room")
    assert len(await audits(db, "membership_revoked")) == 1

    # Still in the room on a second start-up while the kick waits to be sent: nothing new.
    settled = await snapshot(db)
    assert await reconcile(db, {LEAD: "join", OUTSIDER: "join"}) == []
    assert await snapshot(db) == settled

    # Once the kick was sent, finding them again is a new occasion with a new kick.
    async with db.transaction() as tx:
        await tx.outbox.mark_sent(kicks[0].id, None)
    await reconcile(db, {LEAD: "join", OUTSIDER: "invite"})
    kicks_now = [item for item in await outbox(db) if item.kind == "kick"]
    assert len(kicks_now) == 2
    assert kicks_now[0].txn_id != kicks_now[1].txn_id


async def test_pending_families_admit_only_the_lead_at_start_up(db: Database) -> None:
    family = await pending_family(db)
    changes = await reconcile(db, {LEAD: "join", TEACHER: "invite"})
    assert sorted((c.user_id, c.kind) for c in changes) == [
        (LEAD, "updated"),
        (TEACHER, "revoked"),
    ]
    async with db.read() as tx:
        team = {i.user_id for i in await tx.involvements.for_family(family.id)}
    assert team == {LEAD}
    [kick] = [item for item in await outbox(db) if item.kind == "kick"]
    assert "still being set up" in kick.payload["announce"]["body"]


async def test_a_lapsed_member_leaving_while_down_is_recorded_quietly(db: Database) -> None:
    family = await active_family(db, joined=(TEACHER,))
    async with db.transaction() as tx:
        teacher = await tx.involvements.get(family.id, TEACHER)
        assert teacher is not None
        await tx.involvements.end(teacher.id, "lapsed")
    before = len(await outbox(db))
    changes = await reconcile(db, {LEAD: "join"})
    assert [(c.user_id, c.before, c.after, c.kind) for c in changes] == [
        (TEACHER, "join", "leave", "updated")
    ]
    async with db.read() as tx:
        teacher = await tx.involvements.get(family.id, TEACHER)
    assert teacher is not None
    assert (teacher.membership, teacher.end_reason) == ("leave", "lapsed")
    assert len(await outbox(db)) == before
    assert (await audits(db, "membership"))[-1].detail["found_at"] == "start-up"
