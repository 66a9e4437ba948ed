"""`!contact`: your own details, validated before anything is stored, consent with its time,
audit rows without the values, and no phone or email shown to a room without consent."""

from __future__ import annotations

from datetime import timedelta

import pytest

from commands import contact
from commands.framework.context import RoomKind
from storage import Database
from tests.unit.test_team_commands_support import (
    DM,
    START,
    TEACHER,
    ManualClock,
    active_family,
    audits,
    say,
    snapshot,
)

pytest_plugins = ("tests.unit.test_team_commands_support",)


async def direct(db: Database, body: str) -> str:
    return (await say(db, body, sender=TEACHER, room_id=DM, room_kind=RoomKind.DIRECT)).body


@pytest.mark.parametrize(
    ("field", "value", "column", "stored"),
    [
        ("phone", "+44 (0)20 7946-0123", "phone", "+442079460123"),
        ("phone", "020   7946 0123", "phone", "+442079460123"),
        ("phone", "+33 1 23 45 67 89", "phone", "+33123456789"),
        ("email", "tara.p+work@school.example", "email", "tara.p+work@school.example"),
        ("name", "Tara  Patel", "display_name", "Tara Patel"),
        ("org", "Oak Primary School", "organisation", "Oak Primary School"),
        ("title", "Class teacher", "job_title", "Class teacher"),
    ],
)
async def test_contact_set_stores_a_valid_value(
    db: Database, field: str, value: str, column: str, stored: str
) -> None:
    body = await direct(db, f"!contact set {field} {value}")
    assert body.startswith("Saved your ")
    async with db.read() as tx:
        practitioner = await tx.practitioners.get(TEACHER)
    assert practitioner is not None
    assert getattr(practitioner, column) == stored
    [entry] = await audits(db, "contact_update")
    assert entry.actor == TEACHER
    assert entry.detail == {"field": field}
    assert value not in str(entry.detail)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("!contact set phone 12345", "`12345` is not a phone number I can use. Check the"),
        ("!contact set phone 0800 123 456 789 012 34", "is not a phone number I can use"),
        ("!contact set phone call me on 02079460123", "is not a phone number I can use"),
        ("!contact set phone 020+79460123", "is not a phone number I can use"),
        ("!contact set phone 07700 900123", "give a number from outside the UK with its"),
        ("!contact set email tara@", "is not an email address I can use"),
        ("!contact set email tara@school", "is not an email address I can use"),
        ("!contact set email tara..p@school.example", "is not an email address I can use"),
        ("!contact set email <b>@x.example", "is not an email address I can use"),
        ("!contact set name " + "x" * 81, "the most I can keep is 80"),
        ("!contact set fax 01632 960123", "`fax` is not one of the choices here"),
        ("!contact set phone", "needs `<value>`"),
        ("!contact sett phone 1", "Did you mean `!contact set`?"),
    ],
)
async def test_contact_set_refuses_bad_values(db: Database, body: str, expected: str) -> None:
    before = await snapshot(db)
    reply = await direct(db, body)
    assert expected in reply
    assert await snapshot(db) == before


async def test_sharing_consent_is_recorded_with_its_time(
    db: Database, clock: ManualClock
) -> None:
    shown = await direct(db, "!contact")
    assert "not decided yet" in shown
    off = await direct(db, "!contact share off")
    assert off.startswith("Your phone number and email address are now hidden")
    clock.advance(days=2)
    on = await direct(db, "!contact share ON")
    # Nothing given yet: nothing is shared, and the reply says so.
    assert "phone number and email address in" not in on
    assert "you have not given a phone number or an email address" in on
    assert "your teams still see only your name, organisation and job title" in on
    assert "Add them with `!contact set phone <number>` and `!contact set email <address>`" in on
    async with db.read() as tx:
        practitioner = await tx.practitioners.get(TEACHER)
    assert practitioner is not None
    assert practitioner.share_contact is True
    assert practitioner.share_contact_changed_at == START + timedelta(days=2)
    assert [entry.detail for entry in await audits(db, "contact_share")] == [
        {"share": False},
        {"share": True},
    ]
    assert "on, since 4 Mar 2026" in await direct(db, "!contact")
    bad = await direct(db, "!contact share maybe")
    assert "`maybe` is not one of the choices here: `on`, `off`." in bad


async def test_sharing_says_exactly_which_details_are_shared(db: Database) -> None:
    await direct(db, "!contact set phone 020 7946 0123")
    only_phone = await direct(db, "!contact share on")
    assert "Your teams can now see your phone number in `!whois`." in only_phone
    assert "email address in" not in only_phone
    assert "To share your email address too, add it with `!contact set email <address>`" in (
        only_phone
    )
    await direct(db, "!contact set email tara@school.example")
    both = await direct(db, "!contact share on")
    assert "Your teams can now see your phone number and email address in `!whois`." in both
    assert "To share" not in both


async def test_saving_a_phone_number_says_who_can_see_it(db: Database) -> None:
    hidden = await direct(db, "!contact set phone 020 7946 0123")
    assert "Your teams cannot see it until you share" in hidden
    await direct(db, "!contact share on")
    seen = await direct(db, "!contact set phone 020 7946 0124")
    assert "Your teams can see it" in seen
    public = await direct(db, "!contact set org Oak Primary")
    assert "Your teams see it in `!whois`" in public


async def test_a_phone_number_is_kept_as_shown_and_not_laid_out_again_at_each_look_up(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await active_family(db, joined=(TEACHER,))
    await direct(db, "!contact set phone +44 20 7946 0123")
    await direct(db, "!contact share on")
    async with db.read() as tx:
        practitioner = await tx.practitioners.get(TEACHER)
    assert practitioner is not None
    assert (practitioner.phone, practitioner.phone_shown) == ("+442079460123", "020 7946 0123")

    def laid_out_again(value: str) -> None:
        raise AssertionError(f"{value} was laid out again")

    monkeypatch.setattr(contact, "readable_phone", laid_out_again)
    link = '<a href="tel:+442079460123">020 7946 0123</a>'
    assert link in (await say(db, "!whois", sender=TEACHER)).formatted_body
    assert link in (await say(db, "!contact", sender=TEACHER)).formatted_body


async def test_contact_details_are_not_shown_to_a_room_without_consent(db: Database) -> None:
    await active_family(db, joined=(TEACHER,))
    await direct(db, "!contact set phone 020 7946 0123")
    await direct(db, "!contact set email tara@school.example")
    await direct(db, "!contact share off")
    in_room = (await say(db, "!contact", sender=TEACHER)).body
    assert "020 7946 0123" not in in_room
    assert "tara@school.example" not in in_room
    assert "given (hidden here, as you do not share it)" in in_room
    privately = await direct(db, "!contact")
    assert "Phone number: 020 7946 0123" in privately
    assert (
        '<a href="tel:+442079460123">020 7946 0123</a>'
        in (await say(db, "!contact", sender=TEACHER, room_id=DM, room_kind=RoomKind.DIRECT))
        .formatted_body
    )
    assert "Email address: `tara@school.example`" in privately
    await direct(db, "!contact share on")
    assert "020 7946 0123" in (await say(db, "!contact", sender=TEACHER)).body


@pytest.mark.parametrize(
    ("field", "value", "usage"),
    [
        ("phone", "01632 960123", "`!contact set phone <number>`"),
        ("email", "tara@school.example", "`!contact set email <address>`"),
        ("phone", "not a number", "`!contact set phone <number>`"),
    ],
)
async def test_phone_and_email_are_not_taken_in_a_family_room(
    db: Database, field: str, value: str, usage: str
) -> None:
    await active_family(db, joined=(TEACHER,))
    before = await snapshot(db)
    reply = (await say(db, f"!contact set {field} {value}", sender=TEACHER)).body
    assert "everyone on this team can read" in reply
    assert "direct chat with me" in reply
    assert usage in reply
    assert "Saved" not in reply
    assert value not in reply
    assert await snapshot(db) == before


async def test_other_details_can_still_be_set_in_a_family_room(db: Database) -> None:
    await active_family(db, joined=(TEACHER,))
    for field, value in (("name", "Tara Patel"), ("org", "Oak Primary"), ("title", "Teacher")):
        reply = (await say(db, f"!contact set {field} {value}", sender=TEACHER)).body
        assert reply.startswith("Saved your "), reply
    async with db.read() as tx:
        practitioner = await tx.practitioners.get(TEACHER)
    assert practitioner is not None
    assert (practitioner.display_name, practitioner.organisation, practitioner.job_title) == (
        "Tara Patel",
        "Oak Primary",
        "Teacher",
    )
