"""Practitioners, families, involvements and prompts: round trips and the rules the schema
keeps (unique reference, one lead per family, one prompt per due date)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bot.clock import ManualClock
from storage import ConflictError, Database, Family, NotFoundError, Transaction

START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
LEAD = "@lead:council.example"
TEACHER = "@teacher:school.example"
NURSE = "@nurse:nhs.example"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def db(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "patchwork.sqlite3", clock=clock)
    yield database
    await database.close()


async def new_family(tx: Transaction, reference: str = "LDC-2026-0042") -> Family:
    return await tx.families.create(reference, f"!{reference}:council.example", LEAD)


# --- practitioners ----------------------------------------------------------------------------


async def test_ensure_creates_once_and_does_not_share_by_default(
    db: Database, clock: ManualClock
) -> None:
    async with db.transaction() as tx:
        assert await tx.practitioners.get(TEACHER) is None
        created = await tx.practitioners.ensure(TEACHER, "Ms Patel")
        clock.advance(hours=1)
        again = await tx.practitioners.ensure(TEACHER, "Someone Else")
    assert created == again
    assert created.display_name == "Ms Patel"
    assert created.share_contact is False
    assert created.share_contact_changed_at is None
    assert created.created_at == created.updated_at == START


async def test_update_contact_sets_known_fields_only(db: Database, clock: ManualClock) -> None:
    async with db.transaction() as tx:
        await tx.practitioners.ensure(TEACHER)
        clock.advance(minutes=1)
        updated = await tx.practitioners.update_contact(
            TEACHER, organisation="Lichfield Primary", phone="01543 000000", job_title=None
        )
        assert updated.organisation == "Lichfield Primary"
        assert updated.phone == "01543 000000"
        assert updated.email is None
        assert updated.updated_at == START + timedelta(minutes=1)

        with pytest.raises(ValueError, match="date_of_birth"):
            await tx.practitioners.update_contact(TEACHER, date_of_birth="2000-01-01")
        with pytest.raises(NotFoundError):
            await tx.practitioners.update_contact("@nobody:x", phone="1")
        unchanged = await tx.practitioners.get(TEACHER)
    assert unchanged == updated


async def test_a_phone_numbers_shown_form_goes_with_the_number(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.practitioners.ensure(TEACHER)
        kept = await tx.practitioners.update_contact(
            TEACHER, phone="+441543000000", phone_shown="01543 000000"
        )
        assert (kept.phone, kept.phone_shown) == ("+441543000000", "01543 000000")
        changed = await tx.practitioners.update_contact(TEACHER, phone="+441543000001")
        assert (changed.phone, changed.phone_shown) == ("+441543000001", None), (
            "a new number without its shown form kept the old number's"
        )
        await tx.practitioners.update_contact(
            TEACHER, phone="+441543000000", phone_shown="01543 000000"
        )
        assert await tx.practitioners.erase(TEACHER)
        erased = await tx.practitioners.get(TEACHER)
    assert erased is not None
    assert (erased.phone, erased.phone_shown) == (None, None)


async def test_share_contact_consent_time_changes_only_with_the_answer(
    db: Database, clock: ManualClock
) -> None:
    async with db.transaction() as tx:
        await tx.practitioners.ensure(NURSE)
        clock.advance(minutes=1)
        given = await tx.practitioners.set_share_contact(NURSE, True)
        clock.advance(minutes=1)
        repeated = await tx.practitioners.set_share_contact(NURSE, True)
        clock.advance(minutes=1)
        withdrawn = await tx.practitioners.set_share_contact(NURSE, False)
    assert given.share_contact is True
    assert given.share_contact_changed_at == START + timedelta(minutes=1)
    assert repeated.share_contact_changed_at == START + timedelta(minutes=1)
    assert withdrawn.share_contact is False
    assert withdrawn.share_contact_changed_at == START + timedelta(minutes=3)


async def test_away_until_round_trips_and_clears(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.practitioners.ensure(NURSE)
        away = await tx.practitioners.set_away_until(NURSE, date(2026, 12, 24))
        back = await tx.practitioners.set_away_until(NURSE, None)
    assert away.away_until == date(2026, 12, 24)
    assert back.away_until is None


# --- families ---------------------------------------------------------------------------------


async def test_family_create_and_look_ups(db: Database) -> None:
    async with db.transaction() as tx:
        family = await new_family(tx)
        assert family.status == "pending"
        assert family.lawful_basis is None
        assert family.created_by == LEAD
        assert family.created_at == START
        assert await tx.families.get(family.id) == family
        assert await tx.families.by_room("!LDC-2026-0042:council.example") == family
        assert await tx.families.by_reference("LDC-2026-0042") == family
        assert await tx.families.by_reference("ldc-2026-0042") == family
        assert await tx.families.by_reference("LDC-2026-0043") is None
        assert await tx.families.get(family.id + 1) is None


async def test_family_reference_and_room_are_unique(db: Database) -> None:
    async with db.transaction() as tx:
        await new_family(tx)
        with pytest.raises(ConflictError, match="LDC-2026-0042"):
            await tx.families.create("LDC-2026-0042", "!other:x", LEAD)
        with pytest.raises(ConflictError, match="already"):
            await tx.families.create("ldc-2026-0042", None, LEAD)
        with pytest.raises(ConflictError, match="room"):
            await tx.families.create("LDC-2026-0099", "!LDC-2026-0042:council.example", LEAD)
        # The schema itself refuses duplicates too, whoever writes.
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            await tx.execute(
                "INSERT INTO family (reference, created_by, created_at, updated_at)"
                " VALUES ('Ldc-2026-0042', 'x', 'x', 'x')"
            )


async def test_family_without_room_gets_one_later(db: Database) -> None:
    async with db.transaction() as tx:
        first = await tx.families.create("LDC-2026-0001", None, LEAD)
        second = await tx.families.create("LDC-2026-0002", None, LEAD)
        attached = await tx.families.set_room(first.id, "!room1:x")
        with pytest.raises(ConflictError):
            await tx.families.set_room(second.id, "!room1:x")
    assert attached.room_id == "!room1:x"


async def test_a_family_is_active_once_it_has_a_basis_and_was_informed(db: Database) -> None:
    async with db.transaction() as tx:
        family = await new_family(tx)
        with pytest.raises(ValueError, match="lawful basis"):
            await tx.families.record_basis(family.id, "because", LEAD, None)  # type: ignore[arg-type]
        recorded = await tx.families.record_basis(family.id, "public_task", LEAD, "s.17 CA 1989")
        assert recorded.status == "pending", "a basis alone does not activate the family"
        informed = await tx.families.record_informed(family.id, note="leaflet given")
    assert informed.status == "active"
    assert recorded.lawful_basis == "public_task"
    assert recorded.basis_recorded_by == LEAD
    assert recorded.basis_recorded_at == START
    assert recorded.basis_note == "s.17 CA 1989"


async def test_family_informed_or_reason_not_to(db: Database, clock: ManualClock) -> None:
    async with db.transaction() as tx:
        family = await new_family(tx)
        unsafe = await tx.families.record_informed(
            family.id, not_informed_reason="risk of harm to a parent"
        )
        clock.advance(days=30)
        told = await tx.families.record_informed(family.id, note="leaflet given at home visit")
        with pytest.raises(ValueError, match="either"):
            await tx.families.record_informed(family.id, note="a", not_informed_reason="b")
    assert unsafe.family_informed_at is None
    assert unsafe.not_informed_reason == "risk of harm to a parent"
    assert told.family_informed_at == START + timedelta(days=30)
    assert told.informed_note == "leaflet given at home visit"
    assert told.not_informed_reason is None


async def test_closed_families_are_not_open(db: Database) -> None:
    async with db.transaction() as tx:
        second = await new_family(tx, "LDC-2026-0002")
        first = await new_family(tx, "LDC-2026-0001")
        third = await new_family(tx, "LDC-2026-0003")
        await tx.families.record_basis(first.id, "consent", LEAD, None)
        closed = await tx.families.close(
            third.id, "family moved away", purge_after=START + timedelta(days=365)
        )
        assert [f.reference for f in await tx.families.all_open()] == [
            "LDC-2026-0001",
            "LDC-2026-0002",
        ]
        purged = await tx.families.set_status(second.id, "purged")
        with pytest.raises(NotFoundError):
            await tx.families.set_status(9999, "closed")
    assert closed.status == "closed"
    assert closed.closed_at == START
    assert closed.close_reason == "family moved away"
    assert closed.purge_after == START + timedelta(days=365)
    assert not closed.is_open
    assert purged.status == "purged"


# --- involvements -----------------------------------------------------------------------------


async def test_membership_changes_are_mirrored(db: Database, clock: ManualClock) -> None:
    async with db.transaction() as tx:
        family = await new_family(tx)
        invited, changed = await tx.involvements.upsert_membership(
            family.id, TEACHER, "invite", invited_by=LEAD
        )
        assert changed
        assert (invited.status, invited.membership, invited.invited_by) == (
            "active",
            "invite",
            LEAD,
        )
        assert invited.started_at == START
        assert await tx.practitioners.get(TEACHER) is not None

        clock.advance(minutes=5)
        joined, changed = await tx.involvements.upsert_membership(family.id, TEACHER, "join")
        assert changed
        assert joined.membership == "join"
        assert joined.started_at == START
        same, changed = await tx.involvements.upsert_membership(family.id, TEACHER, "join")
        assert not changed
        assert same == joined

        clock.advance(days=10)
        left, changed = await tx.involvements.upsert_membership(family.id, TEACHER, "leave")
        assert changed
        assert (left.status, left.end_reason) == ("ended", "left")
        assert left.ended_at == clock.current

        clock.advance(minutes=1)
        banned, changed = await tx.involvements.upsert_membership(
            family.id, TEACHER, "ban", end_reason="removed"
        )
        assert changed
        assert banned.membership == "ban"
        assert banned.end_reason == "left"
        assert banned.ended_at == left.ended_at

        clock.advance(days=1)
        back, changed = await tx.involvements.upsert_membership(
            family.id, TEACHER, "invite", invited_by=NURSE
        )
        assert changed
        assert back.id == invited.id
        assert (back.status, back.ended_at, back.end_reason) == ("active", None, None)
        assert back.started_at == clock.current
        assert back.invited_by == NURSE


async def test_kick_is_recorded_as_removed(db: Database) -> None:
    async with db.transaction() as tx:
        family = await new_family(tx)
        await tx.involvements.upsert_membership(family.id, NURSE, "join")
        kicked, _ = await tx.involvements.upsert_membership(
            family.id, NURSE, "leave", end_reason="removed"
        )
        with pytest.raises(ValueError, match="end_reason"):
            await tx.involvements.upsert_membership(family.id, NURSE, "join", end_reason="removed")
    assert kicked.end_reason == "removed"


async def test_lapsed_member_still_in_room_stays_lapsed(db: Database) -> None:
    async with db.transaction() as tx:
        family = await new_family(tx)
        joined, _ = await tx.involvements.upsert_membership(family.id, NURSE, "join")
        assert await tx.involvements.end(joined.id, "lapsed") is True
        assert await tx.involvements.end(joined.id, "left") is False
        seen_again, changed = await tx.involvements.upsert_membership(family.id, NURSE, "join")
    assert not changed
    assert (seen_again.status, seen_again.end_reason) == ("ended", "lapsed")


async def test_roster_queries(db: Database) -> None:
    async with db.transaction() as tx:
        one = await new_family(tx, "LDC-2026-0001")
        two = await new_family(tx, "LDC-2026-0002")
        await tx.involvements.upsert_membership(one.id, LEAD, "join")
        await tx.involvements.upsert_membership(one.id, TEACHER, "join")
        await tx.involvements.upsert_membership(one.id, NURSE, "invite")
        await tx.involvements.upsert_membership(two.id, TEACHER, "join")
        await tx.involvements.upsert_membership(one.id, NURSE, "leave")

        active = await tx.involvements.for_family(one.id)
        everyone = await tx.involvements.for_family(one.id, active_only=False)
        teacher_cases = await tx.involvements.for_user(TEACHER)
        nurse_cases = await tx.involvements.for_user(NURSE)
        nurse_history = await tx.involvements.for_user(NURSE, active_only=False)
    assert [i.user_id for i in active] == [LEAD, TEACHER]
    assert [i.user_id for i in everyone] == [LEAD, TEACHER, NURSE]
    assert {i.family_id for i in teacher_cases} == {one.id, two.id}
    assert nurse_cases == []
    assert len(nurse_history) == 1


async def test_role_and_sensitive(db: Database) -> None:
    async with db.transaction() as tx:
        family = await new_family(tx)
        await tx.involvements.upsert_membership(family.id, TEACHER, "join")
        with_role = await tx.involvements.set_role(family.id, TEACHER, "Class teacher")
        hidden = await tx.involvements.set_sensitive(family.id, TEACHER, True)
        with pytest.raises(NotFoundError):
            await tx.involvements.set_role(family.id, NURSE, "Health visitor")
    assert with_role.role == "Class teacher"
    assert hidden.sensitive is True
    assert hidden.role == "Class teacher"


async def test_a_family_has_one_lead(db: Database) -> None:
    async with db.transaction() as tx:
        family = await new_family(tx)
        other = await new_family(tx, "LDC-2026-0099")
        for user in (LEAD, TEACHER, NURSE):
            await tx.involvements.upsert_membership(family.id, user, "join")
        await tx.involvements.upsert_membership(other.id, NURSE, "join")

        await tx.involvements.set_lead(family.id, LEAD)
        await tx.involvements.set_lead(other.id, NURSE)
        handed_over = await tx.involvements.set_lead(family.id, TEACHER)
        assert handed_over.is_lead
        assert [i.user_id for i in await tx.involvements.for_family(family.id) if i.is_lead] == [
            TEACHER
        ]
        lead = await tx.involvements.lead(other.id)
        assert lead is not None
        assert lead.user_id == NURSE

        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            await tx.execute(
                "UPDATE involvement SET is_lead = 1 WHERE family_id = ? AND user_id = ?",
                (family.id, NURSE),
            )

        await tx.involvements.upsert_membership(family.id, NURSE, "leave")
        with pytest.raises(ConflictError):
            await tx.involvements.set_lead(family.id, NURSE)


async def test_confirm_and_due_for_prompt(db: Database, clock: ManualClock) -> None:
    async with db.transaction() as tx:
        family = await new_family(tx)
        lead, _ = await tx.involvements.upsert_membership(family.id, LEAD, "join")
        teacher, _ = await tx.involvements.upsert_membership(family.id, TEACHER, "join")
        nurse, _ = await tx.involvements.upsert_membership(family.id, NURSE, "join")
        await tx.involvements.set_next_prompt(lead.id, START + timedelta(days=90))
        await tx.involvements.set_next_prompt(teacher.id, START + timedelta(days=30))
        await tx.involvements.set_next_prompt(nurse.id, START + timedelta(days=10))
        await tx.involvements.end(nurse.id, "left")

        assert await tx.involvements.due_for_prompt(START + timedelta(days=29), 10) == []
        due = await tx.involvements.due_for_prompt(START + timedelta(days=91), 10)
        assert [i.user_id for i in due] == [TEACHER, LEAD]
        assert len(await tx.involvements.due_for_prompt(START + timedelta(days=91), 1)) == 1

        clock.advance(days=30)
        confirmed = await tx.involvements.confirm(teacher.id, clock.current + timedelta(days=90))
        assert confirmed.last_confirmed_at == clock.current
        assert confirmed.next_prompt_at == clock.current + timedelta(days=90)
        assert await tx.involvements.due_for_prompt(clock.current, 10) == []

        with pytest.raises(ConflictError):
            await tx.involvements.confirm(nurse.id, clock.current)


# --- prompts ----------------------------------------------------------------------------------


async def test_one_prompt_per_due_date(db: Database, clock: ManualClock) -> None:
    due = START + timedelta(days=90)
    async with db.transaction() as tx:
        family = await new_family(tx)
        involvement, _ = await tx.involvements.upsert_membership(family.id, TEACHER, "join")
        prompt = await tx.prompts.create(involvement.id, due)
        assert prompt is not None
        assert (prompt.due_at, prompt.sent_at, prompt.answer) == (due, None, None)
        assert await tx.prompts.create(involvement.id, due) is None
        later = await tx.prompts.create(involvement.id, due + timedelta(days=90))
        assert later is not None
        assert later.id != prompt.id
        count = await tx.fetchone("SELECT COUNT(*) FROM prompt")
    assert count is not None
    assert count[0] == 2


async def test_prompt_lifecycle(db: Database, clock: ManualClock) -> None:
    async with db.transaction() as tx:
        family = await new_family(tx)
        involvement, _ = await tx.involvements.upsert_membership(family.id, TEACHER, "join")
        assert await tx.prompts.open_for(involvement.id) is None
        prompt = await tx.prompts.create(involvement.id, START)
        assert prompt is not None

        clock.advance(minutes=1)
        sent = await tx.prompts.mark_sent(prompt.id, "$prompt_event")
        assert sent.sent_at == clock.current
        assert sent.event_id == "$prompt_event"
        assert await tx.prompts.by_event("$prompt_event") == sent
        assert await tx.prompts.open_for(involvement.id) == sent

        clock.advance(days=3)
        reminded = await tx.prompts.mark_reminded(prompt.id)
        assert reminded.reminded_at == clock.current

        clock.advance(hours=2)
        assert await tx.prompts.answer(prompt.id, "yes") is True
        assert await tx.prompts.answer(prompt.id, "no") is False
        answered = await tx.prompts.get(prompt.id)
        assert answered is not None
        assert (answered.answer, answered.answered_at) == ("yes", clock.current)
        assert await tx.prompts.open_for(involvement.id) is None

        with pytest.raises(NotFoundError):
            await tx.prompts.answer(9999, "yes")
        with pytest.raises(ValueError, match="answer"):
            await tx.prompts.answer(prompt.id, "maybe")  # type: ignore[arg-type]
