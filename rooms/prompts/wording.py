"""What the still-involved prompts say: the question, the reminder, the answers' replies and
the lapse notices. Only wording; `prefix` is the command prefix the dispatcher answers to."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, tzinfo
from typing import Any

from markup import Markup, blocks, code, long_day, paragraph, text, user
from rooms.prompts.schedule import PromptSettings
from storage import Involvement

YES = "\N{WHITE HEAVY CHECK MARK}"
NO = "\N{CROSS MARK}"
LAPSE_KICK_REASON = "Did not confirm they are still involved."
LEAVE_KICK_REASON = "Said they are no longer involved."
"""Kick reasons are unencrypted room state: fixed text, never what the practitioner wrote."""

POLL_START = "org.matrix.msc3381.poll.start"
POLL_DISCLOSED = "org.matrix.msc3381.poll.disclosed"
POLL_TEXT = "org.matrix.msc1767.text"
YES_ANSWER = "yes"
NO_ANSWER = "no"
"""Poll answer ids are `<yes|no>-<prompt id>`: a vote names the prompt it answers, so no event id
has to be stored for the poll."""


def poll_answer_id(answer: bool, prompt_id: int) -> str:
    return f"{YES_ANSWER if answer else NO_ANSWER}-{prompt_id}"


def parse_poll_answer_id(value: str) -> tuple[bool, int] | None:
    """(the answer, the prompt id) of one of our poll answers, else None."""
    word, _, number = value.partition("-")
    if word not in (YES_ANSWER, NO_ANSWER) or not number.isdigit():
        return None
    return word == YES_ANSWER, int(number)


def poll_content(prompt_id: int, display_name: str) -> dict[str, Any]:
    """An MSC3381 poll that Element shows as two one-tap buttons under the prompt. It follows
    the prompt (an `m.text` that notifies); the bot does not vote or react, so every count
    Element shows is people. `display_name` is plain text: a poll question has no pills."""
    question = f"{display_name}, are you still involved with this family?"
    yes = f"{YES} Yes, I am still involved"
    no = f"{NO} No, I am no longer involved"
    return {
        POLL_START: {
            "kind": POLL_DISCLOSED,
            "max_selections": 1,
            "question": {POLL_TEXT: question},
            "answers": [
                {"id": poll_answer_id(True, prompt_id), POLL_TEXT: yes},
                {"id": poll_answer_id(False, prompt_id), POLL_TEXT: no},
            ],
        },
        POLL_TEXT: f"{question}\n1. {yes}\n2. {no}",
        "m.mentions": {"user_ids": []},
    }


def local_day(at: datetime, zone: tzinfo) -> str:
    """A local date with its weekday; a time would suggest precision."""
    return long_day(at.astimezone(zone))


def prompt_text(
    involvement: Involvement, display_name: str | None, settings: PromptSettings, prefix: str
) -> Markup:
    who = user(involvement.user_id, display_name, mention=True)
    if involvement.last_confirmed_at is not None:
        since = f"You last confirmed on {local_day(involvement.last_confirmed_at, settings.zone)}"
    else:
        since = f"You joined this team on {local_day(involvement.started_at, settings.zone)}"
    return blocks(
        paragraph(
            who + ", are you still involved with this family? " + since + ", and the team "
            "relies on this list being right."
        ),
        paragraph(
            "Tap your answer in the poll below this message, or react "
            f"{YES} if you are, {NO} if you are no longer involved. You can also send "
            + code(f"{prefix}confirm")
            + " or "
            + code(f"{prefix}leave [reason]")
            + "."
        ),
        paragraph(
            "If I hear nothing I will remind you once; without an answer "
            f"{duration(settings.lapse_after)} after this message, {_consequence(settings)}."
        ),
    )


def reminder_text(
    involvement: Involvement,
    display_name: str | None,
    settings: PromptSettings,
    deadline: datetime,
    prefix: str,
) -> Markup:
    who = user(involvement.user_id, display_name, mention=True)
    return paragraph(
        "A reminder, "
        + who
        + ": are you still involved with this family? Tap your answer in my poll, react "
        f"{YES} or {NO} to my question, or send "
        + code(f"{prefix}confirm")
        + " or "
        + code(f"{prefix}leave [reason]")
        + f". Without an answer by {local_day(deadline, settings.zone)}, "
        f"{_consequence(settings)}."
    )


def _consequence(settings: PromptSettings) -> str:
    if settings.remove_on_lapse:
        return "your involvement lapses and I remove you from this room"
    return "your involvement lapses"


def confirmed_text(who: Markup, involvement: Involvement, settings: PromptSettings) -> Markup:
    when = involvement.next_prompt_at
    message = "Thank you, " + who + ": you are confirmed as still involved with this family."
    if when is not None:
        message += f" I will ask again on {local_day(when, settings.zone)}."
    return paragraph(message)


def left_text(who: Markup, involvement: Involvement, removed: bool, prefix: str) -> Markup:
    message = who + " is no longer involved with this family"
    message += " and has left this room." if removed else "."
    message += " Thank you for your work with them."
    if involvement.is_lead:
        message += " " + lead_handover_hint(prefix)
    return paragraph(message)


def lead_handover_hint(prefix: str) -> Markup:
    """Said when a family's lead leaves; shared with the roster's own notices."""
    return (
        "They were this family's lead; an administrator can hand the lead role to another "
        "member with " + code(f"{prefix}lead @user:server") + "."
    )


def lapsed_text(who: Markup, removed: bool, prefix: str) -> Markup:
    message = who + " did not answer whether they are still involved, so their involvement has "
    message += "lapsed" + (" and I removed them from this room." if removed else ".")
    return message + (
        " If they are still involved, invite them again with "
        + code(f"{prefix}invite @user:server <role>")
        + "."
    )


def lapse_notice(
    who: Markup,
    removed: bool,
    lead: Markup | None,
    lead_lapsed: bool,
    admins: Iterable[str],
    prefix: str,
) -> Markup:
    """The family room's notice of a lapse: to the `lead` (a mention), or, with none to tell,
    a request to the administrators."""
    message = lapsed_text(who, removed, prefix)
    if lead is not None:
        return blocks(paragraph(lead + ": " + message))
    return blocks(paragraph(message), admin_request(admins, lead_lapsed, prefix))


def admin_request(admins: Iterable[str], lead_lapsed: bool, prefix: str) -> Markup:
    why = "They were this family's lead" if lead_lapsed else "This family has no active lead"
    request: Markup = text(why + ". ")
    ordered = sorted(admins)
    if ordered:
        request += "Administrators ("
        for index, admin in enumerate(ordered):
            request += (", " if index else "") + user(admin, mention=True)
        request += "): "
    request += "please hand the lead role to another member with " + code(
        f"{prefix}lead @user:server"
    )
    return paragraph(request + ".")


def admin_report_text(who: Markup, reference: str, lead_lapsed: bool, prefix: str) -> Markup:
    what = "the lead of" if lead_lapsed else "a member of"
    return paragraph(
        who
        + f" was {what} the team for family "
        + code(reference)
        + " and their involvement has lapsed, leaving it without an active lead. Please "
        "hand the lead role to another member with "
        + code(f"{prefix}lead @user:server")
        + " in the room "
        + code(f"Team {reference}")
        + "."
    )


def duration(value: timedelta) -> str:
    """Whole weeks or days, as a person would say them."""
    days = value.days
    if days and days % 7 == 0:
        weeks = days // 7
        return f"{weeks} week{'s' * (weeks != 1)}"
    if days:
        return f"{days} day{'s' * (days != 1)}"
    hours = max(1, round(value.total_seconds() / 3600))
    return f"{hours} hour{'s' * (hours != 1)}"
