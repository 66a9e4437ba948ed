"""What a queued question or reminder says, built when the outbox sends it.

The sweep queues thousands of them at once; each outbox item names only its prompt
(`RENDER_KEY` says which text), so the sweep's batches write a few bytes an item instead of the
whole text, and no copy of a practitioner's name waits in the queue. The text is built from the
same rows the sweep read, so an involvement unchanged since then is asked exactly what the
sweep would have written. A prompt that is no longer open by then (answered, lapsed, its
involvement ended, its family closed or purged) is not sent at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from markup import Reply
from rooms.policy import TeamPolicy
from rooms.prompts.answers import PROMPT_PAYLOAD_KEY
from rooms.prompts.schedule import WORKING_HOURS_KEY, PromptSettings, lapse_due
from rooms.prompts.wording import prompt_text, reminder_text
from storage import Family, Involvement, Practitioner, Prompt, Transaction

RENDER_KEY = "render"
"""In an outbox payload: the content is to be built when sent; the value says which text."""
QUESTION = "prompt"
REMINDER = "reminder"
REMINDED_KEY = "reminded_prompt_id"
"""A reminder names its prompt under its own key: `PROMPT_PAYLOAD_KEY` makes the sender's hook
record the event as the prompt's."""


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
    """The content of a question or reminder item being sent now; None if it is not to be
    sent any more (or is not one of ours)."""
    kind = payload.get(RENDER_KEY)
    prompt_id = payload.get(PROMPT_PAYLOAD_KEY if kind == QUESTION else REMINDED_KEY)
    if kind not in (QUESTION, REMINDER) or not isinstance(prompt_id, int):
        return None
    prompt = await tx.prompts.get(prompt_id)
    if prompt is None or prompt.answered_at is not None:
        return None
    involvement = await tx.involvements.by_id(prompt.involvement_id)
    family = None if involvement is None else await tx.families.get(involvement.family_id)
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

