"""What a queued question, reminder or lapse notice says, built when the outbox sends it.

The sweep queues thousands of them at once; each outbox item names only its prompt
(`RENDER_KEY` says which text) and, for a lapse, what was decided when it lapsed (removed or
not, the lead's lapse, the lead told), so the sweep's batches write a few bytes an item
instead of the whole text, and no copy of a practitioner's name waits in the queue. The text is
built from the rows as they are when it is sent (names from the practitioners' rows), so an
unchanged situation says exactly what the sweep would have written.

A question or reminder no longer open by then (answered, lapsed, its involvement ended, its
family closed or purged) is not sent at all. A lapse is a past fact: its notice goes whoever
has joined since, but not once the family is closed (closing told the team every involvement
ended, and nobody can act on it there) or purged (its prompt is gone with it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from markup import Markup, Reply, user
from rooms.policy import TeamPolicy
from rooms.prompts.answers import PROMPT_PAYLOAD_KEY
from rooms.prompts.schedule import WORKING_HOURS_KEY, PromptSettings, lapse_due
from rooms.prompts.wording import admin_report_text, lapse_notice, prompt_text, reminder_text
from storage import Family, Involvement, Practitioner, Prompt, Transaction

RENDER_KEY = "render"
"""In an outbox payload: the content is to be built when sent; the value says which text."""
QUESTION = "prompt"
REMINDER = "reminder"
REMINDED_KEY = "reminded_prompt_id"
"""A reminder names its prompt under its own key: `PROMPT_PAYLOAD_KEY` makes the sender's hook
record the event as the prompt's."""
LAPSE = "lapse"
"""The family room's notice of a lapse, to its lead or its administrators."""
LAPSE_REPORT = "lapse_report"
"""An administrator's direct message: a family left without an active lead by a lapse."""
LAPSED_KEY = "lapsed_prompt_id"
REMOVED_KEY = "removed"
LEAD_LAPSED_KEY = "lead_lapsed"
TOLD_KEY = "told_lead"
"""The user id of the lead the notice mentions; None when the administrators are asked."""


def question_payload(prompt_id: int) -> dict[str, object]:
    return {
        "type": "m.room.message",
        RENDER_KEY: QUESTION,
        PROMPT_PAYLOAD_KEY: prompt_id,
        WORKING_HOURS_KEY: True,
    }


def reminder_payload(prompt_id: int) -> dict[str, object]:
    return {
        "type": "m.room.message",
        RENDER_KEY: REMINDER,
        REMINDED_KEY: prompt_id,
        WORKING_HOURS_KEY: True,
    }


def lapse_payload(
    prompt_id: int, *, removed: bool, lead_lapsed: bool, told: str | None
) -> dict[str, object]:
    return {
        "type": "m.room.message",
        RENDER_KEY: LAPSE,
        LAPSED_KEY: prompt_id,
        REMOVED_KEY: removed,
        LEAD_LAPSED_KEY: lead_lapsed,
        TOLD_KEY: told,
    }


def lapse_report_payload(prompt_id: int, *, lead_lapsed: bool) -> dict[str, object]:
    return {
        "type": "m.room.message",
        RENDER_KEY: LAPSE_REPORT,
        LAPSED_KEY: prompt_id,
        LEAD_LAPSED_KEY: lead_lapsed,
    }


def question_content(
    involvement: Involvement,
    practitioner: Practitioner | None,
    settings: PromptSettings,
    policy: TeamPolicy,
) -> dict[str, Any]:
    name = None if practitioner is None else practitioner.display_name
    question = prompt_text(involvement, name, settings, policy.command_prefix)
    return Reply.from_markup(question, notify=True).to_content()


def reminder_content(
    prompt: Prompt,
    involvement: Involvement,
    practitioner: Practitioner | None,
    settings: PromptSettings,
    policy: TeamPolicy,
) -> dict[str, Any]:
    """`prompt.reminded_at` is when the reminder was queued: the lapse date follows from it."""
    deadline = lapse_due(prompt, settings)
    assert deadline is not None
    name = None if practitioner is None else practitioner.display_name
    content = Reply.from_markup(
        reminder_text(
            involvement,
            name,
            settings,
            settings.schedule.next_open(deadline),
            policy.command_prefix,
        ),
        notify=True,
    ).to_content()
    if prompt.event_id is not None:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": prompt.event_id}}
    return content


async def queued_content(
    tx: Transaction,
    room_id: str,
    payload: Mapping[str, Any],
    settings: PromptSettings,
    policy: TeamPolicy,
) -> dict[str, Any] | None:
    """The content of a question, reminder or lapse item being sent now; None if it is not
    to be sent any more (or is not one of ours)."""
    kind = payload.get(RENDER_KEY)
    if kind in (LAPSE, LAPSE_REPORT):
        return await _lapse_content(tx, room_id, payload, policy)
    prompt_id = payload.get(PROMPT_PAYLOAD_KEY if kind == QUESTION else REMINDED_KEY)
    if kind not in (QUESTION, REMINDER) or not isinstance(prompt_id, int):
        return None
    prompt, involvement, family = await _prompt_rows(tx, prompt_id)
    if prompt is None or prompt.answered_at is not None:
        return None
    if involvement is None or not _still_asked(prompt, involvement, family, room_id):
        return None
    practitioner = await tx.practitioners.get(involvement.user_id)
    if kind == QUESTION:
        if involvement.membership != "join":
            return None
        return question_content(involvement, practitioner, settings, policy)
    if prompt.reminded_at is None:
        return None
    return reminder_content(prompt, involvement, practitioner, settings, policy)


async def _prompt_rows(
    tx: Transaction, prompt_id: int
) -> tuple[Prompt | None, Involvement | None, Family | None]:
    """A prompt, its involvement and the involvement's family, as far as each still exists."""
    prompt = await tx.prompts.get(prompt_id)
    involvement = None if prompt is None else await tx.involvements.by_id(prompt.involvement_id)
    family = None if involvement is None else await tx.families.get(involvement.family_id)
    return prompt, involvement, family


def _still_asked(
    prompt: Prompt, involvement: Involvement, family: Family | None, room_id: str
) -> bool:
    """Of this period of involvement (not a question from before a re-invitation), in the
    family's room, while both are open."""
    return (
        involvement.is_active
        and prompt.due_at >= involvement.started_at
        and family is not None
        and family.is_open
        and family.room_id == room_id
    )


async def _lapse_content(
    tx: Transaction, room_id: str, payload: Mapping[str, Any], policy: TeamPolicy
) -> dict[str, Any] | None:
    """A lapse as decided when it lapsed, in the words and names of now."""
    prompt_id = payload.get(LAPSED_KEY)
    _, involvement, family = (
        await _prompt_rows(tx, prompt_id) if isinstance(prompt_id, int) else (None, None, None)
    )
    if involvement is None or family is None or not family.is_open:
        return None
    reported = payload.get(RENDER_KEY) == LAPSE_REPORT
    if not reported and family.room_id != room_id:
        return None
    told = None if reported else payload.get(TOLD_KEY)
    lead = told if isinstance(told, str) else None
    people = await tx.practitioners.many(
        {involvement.user_id} if lead is None else {involvement.user_id, lead}
    )
    who = _person(involvement.user_id, people)
    lead_lapsed = payload.get(LEAD_LAPSED_KEY) is True
    message: Markup
    if reported:
        message = admin_report_text(who, family.reference, lead_lapsed, policy.command_prefix)
    else:
        message = lapse_notice(
            who,
            payload.get(REMOVED_KEY) is True,
            None if lead is None else _person(lead, people, mention=True),
            lead_lapsed,
            policy.admins,
            policy.command_prefix,
        )
    # It asks the lead (or the administrators) to act, so it notifies them.
    return Reply.from_markup(message, notify=True).to_content()


def _person(
    user_id: str, people: Mapping[str, Practitioner], *, mention: bool = False
) -> Markup:
    practitioner = people.get(user_id)
    return user(user_id, None if practitioner is None else practitioner.display_name,
                mention=mention)
