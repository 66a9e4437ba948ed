"""`!contact`: a practitioner's own contact details and their consent to share them.

Details belong to the practitioner and are the same on every team they are on. Name,
organisation and job title are always shown to their teams; phone and email only once they
say `!contact share on`, and the time of each change of mind is kept. Audit rows record which
field changed, never its value. Phone numbers are checked and kept in international form with
`phonenumbers` (a number without a country code is read as a UK one) and shown as `tel:` links
written the way people read them (`phone_link`, which `!whois` uses too); that way is kept
beside the number when it is saved, so a team's card does not work it out again.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Literal

import phonenumbers
from dateutil.parser import ParserError
from dateutil.parser import parse as parse_date

from commands.contact_family import contact_share_family
from commands.framework.context import CommandContext, RoomKind
from commands.framework.converters import Choice, Rest, Text, quoted
from commands.framework.errors import UserInputError
from commands.framework.registry import ANYWHERE, Command, command, group
from markup import Markup, blocks, bullet_list, code, day, long_day, paragraph, tel, text
from rooms.family_view import refresh_views_of_member
from storage import Practitioner

Field = Literal["name", "org", "title", "phone", "email"]
FIELDS: tuple[Field, ...] = ("name", "org", "title", "phone", "email")
COLUMNS: dict[str, str] = {
    "name": "display_name",
    "org": "organisation",
    "title": "job_title",
    "phone": "phone",
    "email": "email",
}
LABELS: dict[str, str] = {
    "name": "name",
    "org": "organisation",
    "title": "job title",
    "phone": "phone number",
    "email": "email address",
}
TEXT_LIMITS: dict[str, int] = {"name": 80, "org": 120, "title": 80}
CONSENT_FIELDS = frozenset({"phone", "email"})
PLACEHOLDERS: dict[str, str] = {"phone": "<number>", "email": "<address>"}

PHONE_REGION = "GB"
"""How a number without a country code is read (and which numbers are shown without one)."""
PHONE_EXAMPLES = "01632 960123 or +33 1 23 45 67 89"
PHONE_CHARACTERS = re.compile(r"\+?[0-9 ()./-]+")
EMAIL_LIMIT = 254
EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
EMAIL_EXAMPLE = "sam.patel@council.example"


def clean_phone(raw: str) -> str:
    """A phone number that exists in the numbering plan, in international (E.164) form."""
    number = None
    if PHONE_CHARACTERS.fullmatch(raw.strip()):
        # Without this check the library would find a number inside any sentence.
        try:
            number = phonenumbers.parse(raw, PHONE_REGION)
        except phonenumbers.NumberParseException:
            number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise UserInputError(
            quoted(raw)
            + " is not a phone number I can use. Check the digits, and give a number from "
            "outside the UK with its country code, like "
            + code(PHONE_EXAMPLES)
            + "."
        )
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def readable_phone(value: str) -> tuple[str, str] | None:
    """A stored phone number in E.164 form and written for reading: UK numbers as they are
    dialled here ("01632 960123"), others with their country code; None if it is not a
    possible number (a value saved before numbers were checked)."""
    try:
        number = phonenumbers.parse(value, PHONE_REGION)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    home = number.country_code == phonenumbers.country_code_for_region(PHONE_REGION)
    style = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if home
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return str(e164), str(phonenumbers.format_number(number, style))


def phone_link(practitioner: Practitioner) -> Markup:
    """The practitioner's phone number as a `tel:` link written for reading, as it was kept
    when they saved it; a number saved before that was kept is laid out now, and one saved
    before numbers were checked is shown as it was written."""
    value = practitioner.phone or ""
    if practitioner.phone_shown is not None:
        return tel(value, practitioner.phone_shown)
    readable = readable_phone(value)
    return text(value) if readable is None else tel(*readable)


def clean_email(raw: str) -> str:
    value = raw.strip()
    local = value.partition("@")[0]
    if len(value) > EMAIL_LIMIT or len(local) > 64 or not EMAIL.fullmatch(value):
        raise UserInputError(
            quoted(raw) + " is not an email address I can use. Write it in full, like "
            + code(EMAIL_EXAMPLE)
            + "."
        )
    return value


def clean_text(field: str, raw: str) -> str:
    """One line of text within the field's limit."""
    value = " ".join(raw.split())
    limit = TEXT_LIMITS[field]
    if not value or not value.isprintable():
        raise UserInputError(f"Please give your {LABELS[field]} as one line of text.")
    if len(value) > limit:
        raise UserInputError(
            f"That {LABELS[field]} is {len(value)} characters long; the most I can keep is "
            f"{limit}."
        )
    return value


def clean(field: str, raw: str) -> str:
    if field == "phone":
        return clean_phone(raw)
    if field == "email":
        return clean_email(raw)
    return clean_text(field, raw)


@command(
    "set",
    summary="Change one of your contact details.",
    description=(
        "For example: !contact set phone 01632 960123, !contact set email "
        "sam.patel@council.example, !contact set org Oak Primary School. Your details are "
        "the same on every team you are on. Give your phone number and email address in a "
        "direct chat with me, not in a family room where the whole team reads them."
    ),
    where=ANYWHERE,
    converters={
        "field": Choice(*FIELDS, label="|".join(FIELDS)),
        "value": Text(label="value", max_length=EMAIL_LIMIT),
    },
)
async def contact_set(ctx: CommandContext, field: Field, value: Rest[str]) -> None:
    tx = ctx.tx
    if field in CONSENT_FIELDS and ctx.room_kind is RoomKind.FAMILY:
        raise UserInputError(
            f"I have not saved your {LABELS[field]}: everyone on this team can read your "
            "messages in this room. Please send "
            + code(f"{ctx.prefix}contact set {field} {PLACEHOLDERS[field]}")
            + " in a direct chat with me instead; you may want to delete your message here.",
            show_usage=False,
        )
    cleaned = clean(field, value)
    columns: dict[str, str | None] = {COLUMNS[field]: cleaned}
    if field == "phone":
        readable = readable_phone(cleaned)
        columns["phone_shown"] = None if readable is None else readable[1]
    await tx.practitioners.ensure(ctx.sender)
    practitioner = await tx.practitioners.update_contact(ctx.sender, **columns)
    await tx.audit.append(ctx.sender, "contact_update", detail={"field": field})
    await refresh_views_of_member(tx, ctx.sender, ctx.event_id)
    saved = f"Saved your {LABELS[field]}."
    if field not in CONSENT_FIELDS:
        ctx.reply(paragraph(saved + " Your teams see it in " + code(f"{ctx.prefix}whois") + "."))
    elif practitioner.share_contact:
        ctx.reply(paragraph(saved + " Your teams can see it, as you share your contact details."))
    else:
        ctx.reply(
            paragraph(
                saved
                + " Your teams cannot see it until you share your contact details with "
                + code(f"{ctx.prefix}contact share on")
                + "."
            )
        )


@command(
    "share",
    summary="Say whether your teams may see your phone number and email address.",
    description="You can change your mind at any time; the time of each change is recorded.",
    where=ANYWHERE,
)
async def contact_share(ctx: CommandContext, answer: Literal["on", "off"]) -> None:
    tx = ctx.tx
    share = answer == "on"
    await tx.practitioners.ensure(ctx.sender)
    practitioner = await tx.practitioners.set_share_contact(ctx.sender, share)
    await tx.audit.append(ctx.sender, "contact_share", detail={"share": share})
    if share:
        ctx.reply(_shared_now(practitioner, ctx.prefix))
    else:
        ctx.reply(
            paragraph(
                "Your phone number and email address are now hidden from your teams. Your "
                "name, organisation and job title are still shown. Send "
                + code(f"{ctx.prefix}contact share on")
                + " if you change your mind."
            )
        )


AWAY_LIMIT = timedelta(days=366)
AWAY_EXAMPLES = "10 Aug, 10/08/2026, 2026-08-10 or Monday"


def parse_away_date(raw: str, today: date, prefix: str = "!") -> date:
    """A day in the coming year, as people write it in the UK (10/08 is the 10th of August).

    ISO dates are read first: dateutil's day-first reading would turn 2026-08-10 into the 8th
    of October. A date without a year that has already passed this year means next year's.
    """
    value = " ".join(raw.split())
    try:
        when = date.fromisoformat(value)
    except ValueError:
        try:
            parsed = parse_date(value, dayfirst=True, default=datetime.combine(today, time()))
        except (ParserError, OverflowError, ValueError):
            raise UserInputError(
                quoted(raw) + f" is not a date I can read. Write it like {AWAY_EXAMPLES}."
            ) from None
        when = parsed.date()
        if when < today and not re.search(r"\d{4}", value):
            when = when.replace(year=when.year + 1)
    if when < today:
        raise UserInputError(
            f"{when:%d %b %Y} has already passed. Give the last day you are away, like "
            f"{AWAY_EXAMPLES}."
        )
    if when - today > AWAY_LIMIT:
        raise UserInputError(
            "That is more than a year away. If you are no longer involved with a family, send "
            + code(f"{prefix}leave")
            + " in its room instead."
        )
    return when


@command(
    "away",
    summary="Say you are away until a date, so I do not ask whether you are still involved.",
    description=(
        "For example: !contact away 10 Aug (the last day you are away), or !contact away off "
        "when you are back early. While you are away I send you no still-involved questions "
        "or reminders, and nothing lapses; I ask once you are back."
    ),
    where=ANYWHERE,
    converters={"until": Text(label="date|off", max_length=60)},
)
async def contact_away(ctx: CommandContext, until: Rest[str]) -> None:
    tx = ctx.tx
    zone = ctx.services.prompts.zone
    today = tx.now().astimezone(zone).date()
    await tx.practitioners.ensure(ctx.sender)
    if until.strip().lower() in ("off", "back", "none"):
        await tx.practitioners.set_away_until(ctx.sender, None)
        await tx.audit.append(ctx.sender, "contact_away", detail={"until": None})
        ctx.reply(paragraph("Welcome back. I will ask you again when a question falls due."))
        return
    when = parse_away_date(until, today, ctx.prefix)
    await tx.practitioners.set_away_until(ctx.sender, when)
    await tx.audit.append(ctx.sender, "contact_away", detail={"until": when.isoformat()})
    ctx.reply(
        paragraph(
            f"Noted: you are away until {long_day(when)}. I will not ask whether you are still "
            f"involved before {long_day(when + timedelta(days=1))}. Send "
            + code(f"{ctx.prefix}contact away off")
            + " if you are back sooner."
        )
    )


@group(
    "contact",
    summary="See your contact details and whether your teams may see them.",
    description=(
        "Send !contact alone to see what I hold about you. In a family room your phone "
        "number and email address are only shown if you share them."
    ),
    where=ANYWHERE,
    subcommands=(contact_set, contact_share, contact_share_family, contact_away),
)
async def contact(ctx: CommandContext) -> None:
    practitioner = await ctx.tx.practitioners.get(ctx.sender)
    public_room = ctx.room_kind is RoomKind.FAMILY
    shares = practitioner is not None and practitioner.share_contact
    items: list[Markup] = []
    for field in FIELDS:
        value = None if practitioner is None else getattr(practitioner, COLUMNS[field])
        label = LABELS[field].capitalize() + ": "
        if value is None:
            items.append(label + text("not given"))
        elif field in CONSENT_FIELDS and public_room and not shares:
            items.append(label + text("given (hidden here, as you do not share it)"))
        elif field == "phone" and practitioner is not None:
            items.append(label + phone_link(practitioner))
        else:
            items.append(label + code(value))
    if practitioner is not None and practitioner.away_until is not None:
        today = ctx.tx.now().astimezone(ctx.services.prompts.zone).date()
        if practitioner.away_until >= today:
            items.append("Away until: " + text(long_day(practitioner.away_until)))
    parts: list[Markup] = [
        paragraph("Your contact details (the same on every team you are on):"),
        bullet_list(items),
        paragraph(_consent(practitioner, ctx.prefix)),
        paragraph(
            "Change a detail with "
            + code(f"{ctx.prefix}contact set <{'|'.join(FIELDS)}> <value>")
            + "."
        ),
    ]
    if public_room and not shares and practitioner is not None:
        parts.append(
            paragraph(
                "Send " + code(f"{ctx.prefix}contact") + " in a direct chat with me to see them."
            )
        )
    ctx.reply(blocks(*parts))


def _shared_now(practitioner: Practitioner, prefix: str) -> Markup:
    """Exactly what teams see now that sharing is on: the details given, and what is missing."""
    given = [LABELS[field] for field in ("phone", "email") if getattr(practitioner, field)]
    missing = [field for field in ("phone", "email") if not getattr(practitioner, field)]
    stop = (
        " Send " + code(f"{prefix}contact share off") + " to stop at any time."
    )
    if given:
        message = paragraph(
            "Thank you. Your teams can now see your "
            + " and ".join(given)
            + " in "
            + code(f"{prefix}whois")
            + "."
            + stop
        )
    else:
        message = paragraph(
            "Thank you. You share your contact details now, but you have not given a phone "
            "number or an email address, so your teams still see only your name, "
            "organisation and job title." + stop
        )
    if not missing:
        return message
    adds = Markup()
    for index, field in enumerate(missing):
        adds += (" and " if index else "") + code(
            f"{prefix}contact set {field} {PLACEHOLDERS[field]}"
        )
    if not given:
        return blocks(message, paragraph("Add them with " + adds + "."))
    what = LABELS[missing[0]]
    return blocks(message, paragraph(f"To share your {what} too, add it with " + adds + "."))


def _consent(practitioner: Practitioner | None, prefix: str) -> Markup:
    if practitioner is None or practitioner.share_contact_changed_at is None:
        return (
            "Sharing your phone number and email address with your teams: not decided yet. "
            "Answer "
            + code(f"{prefix}contact share on")
            + " or "
            + code(f"{prefix}contact share off")
            + "."
        )
    since = day(practitioner.share_contact_changed_at)
    state, change, effect = (
        ("on", "off", "stop") if practitioner.share_contact else ("off", "on", "share them")
    )
    return (
        text(
            f"Sharing your phone number and email address with your teams: {state}, since "
            f"{since}. Send "
        )
        + code(f"{prefix}contact share {change}")
        + f" to {effect}."
    )


COMMANDS: tuple[Command, ...] = (contact,)
