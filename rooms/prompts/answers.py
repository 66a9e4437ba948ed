"""A practitioner's answer to the still-involved question, whatever form it takes.

`!confirm` / `!leave [reason]` (the commands of the same names), a ✅ / ❌ reaction to the
prompt (`on_reaction`) and a vote in the prompt's poll (`on_poll_response`) all go through
`confirm` and `leave`, so an answer is recorded the same way however it was given.
`on_message_sent` runs when the homeserver has accepted a prompt: it records the prompt's event
id and queues the poll people can tap. The bot itself never reacts or votes, so what Element
counts under a prompt is people's answers only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from markup import Markup, Reply, user
from rooms.actions import kick_user
from rooms.people import known_name, named
from rooms.prompts.schedule import PromptSettings, next_prompt_time
from rooms.prompts.wording import (
    LEAVE_KICK_REASON,
    NO,
    POLL_START,
    YES,
    confirmed_text,
    left_text,
    parse_poll_answer_id,
    poll_content,
)
from storage import (
    BACKGROUND,
    Family,
    Involvement,
    OutboxItem,
    Prompt,
    Transaction,
    transaction_id,
)

REACTION_KEYS = (YES, NO)
_VARIATION_SELECTORS = "\ufe0e\ufe0f"
POLL_RESPONSE_TYPES = ("org.matrix.msc3381.poll.response", "m.poll.response")
PROMPT_PAYLOAD_KEY = "prompt_id"
"""Marks the outbox item of a prompt, so the sender's hook can record the event it became."""


def reaction_answer(key: str) -> bool | None:
    """True for ✅, False for ❌, None for any other reaction (ignored)."""
    bare = key.strip().strip(_VARIATION_SELECTORS)
    if bare == YES:
        return True
    if bare == NO:
        return False
    return None


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


async def on_message_sent(tx: Transaction, item: OutboxItem, event_id: str | None) -> None:
    """Called in the transaction that marks an outbox message sent: a prompt's event id is
    recorded (reactions refer to it) and its poll is queued right after it."""
    prompt_id = item.payload.get(PROMPT_PAYLOAD_KEY)
    if not isinstance(prompt_id, int) or not event_id:
        return
    prompt = await tx.prompts.get(prompt_id)
    if prompt is None or prompt.event_id is not None:
        return
    await tx.prompts.mark_sent(prompt_id, event_id)
    involvement = await tx.involvements.by_id(prompt.involvement_id)
    if involvement is None:
        return
    name = await known_name(tx, involvement.user_id) or involvement.user_id
    await tx.outbox.enqueue_message(
        transaction_id("prompt", str(prompt_id), "poll"),
        item.room_id,
        poll_content(prompt_id, name),
        event_type=POLL_START,
        priority=BACKGROUND,
    )


def poll_answers(source: Mapping[str, Any]) -> list[str] | None:
    """The answer ids of a poll vote event (as nio hands it over, decrypted), else None."""
    kind = source.get("type")
    if kind not in POLL_RESPONSE_TYPES:
        return None
    content = source.get("content")
    response = content.get(kind) if isinstance(content, Mapping) else None
    answers = response.get("answers") if isinstance(response, Mapping) else None
    if not isinstance(answers, list):
        return []
    return [answer for answer in answers if isinstance(answer, str)]


async def current_prompt(tx: Transaction, involvement: Involvement) -> Prompt | None:
    """The open prompt of this period of involvement (an older period's question is moot)."""
    prompt = await tx.prompts.open_for(involvement.id)
    if prompt is None or prompt.due_at < involvement.started_at:
        return None
    return prompt


async def confirm(
    tx: Transaction,
    involvement: Involvement,
    settings: PromptSettings,
    *,
    via: str,
) -> Involvement:
    """Still involved: answer the open prompt (if any) and ask again one interval from now."""
    prompt = await current_prompt(tx, involvement)
    if prompt is not None:
        await tx.prompts.answer(prompt.id, "yes")
    confirmed = await tx.involvements.confirm(involvement.id, next_prompt_time(tx.now(), settings))
    await tx.audit.append(
        involvement.user_id,
        "confirm",
        family_id=involvement.family_id,
        detail={
            "user": involvement.user_id,
            "via": via,
            "prompt_id": None if prompt is None else prompt.id,
            "next_prompt_at": iso(confirmed.next_prompt_at),
        },
    )
    return confirmed


async def leave(
    tx: Transaction,
    family: Family,
    involvement: Involvement,
    *,
    reason: str | None,
    via: str,
    cause: str,
    reply_to: str,
    prefix: str,
) -> None:
    """No longer involved: end the involvement as `left`, answer the open prompt, say goodbye
    in the room (replying to `reply_to`) and then remove them from it. The goodbye is queued
    before the kick so that it is still encrypted for them. `cause` is the event id of the
    answer; the reason goes to the audit trail only, never into room state."""
    prompt = await current_prompt(tx, involvement)
    if prompt is not None:
        await tx.prompts.answer(prompt.id, "no")
    await tx.involvements.end(involvement.id, "left")
    in_room = family.room_id is not None and involvement.membership in ("invite", "join")
    if family.room_id is not None:
        who = await named(tx, involvement.user_id)
        await _reply(
            tx, family.room_id, left_text(who, involvement, in_room, prefix), reply_to,
            transaction_id(cause, "leave-notice"),
        )
        if in_room:
            await kick_user(
                tx, family.room_id, involvement.user_id, LEAVE_KICK_REASON, cause, "leave"
            )
    await tx.audit.append(
        involvement.user_id,
        "leave",
        family_id=family.id,
        detail={
            "user": involvement.user_id,
            "via": via,
            "reason": reason,
            "prompt_id": None if prompt is None else prompt.id,
        },
    )


async def _reply(
    tx: Transaction, room_id: str, message: Markup, reply_to: str, txn_id: str
) -> None:
    content = Reply.from_markup(message).to_content()
    content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    await tx.outbox.enqueue_message(txn_id, room_id, content)


async def on_reaction(
    tx: Transaction,
    *,
    room_id: str,
    sender: str,
    reacts_to: str,
    key: str,
    event_id: str,
    settings: PromptSettings,
    prefix: str,
) -> bool:
    """A ✅ or ❌ from the practitioner on their own open prompt answers it; any other reaction,
    or one from someone else, is ignored. True if it was taken as an answer."""
    answer = reaction_answer(key)
    if answer is None:
        return False
    prompt = await tx.prompts.by_event(reacts_to)
    if prompt is None:
        return False
    return await _answer(
        tx, prompt, answer, room_id=room_id, sender=sender, event_id=event_id, via="reaction",
        settings=settings, prefix=prefix,
    )


async def on_poll_response(
    tx: Transaction,
    *,
    room_id: str,
    sender: str,
    answers: list[str],
    event_id: str,
    settings: PromptSettings,
    prefix: str,
) -> bool:
    """A vote in a prompt's poll by the practitioner it asks answers it, like a reaction; a
    vote by anyone else, or for no answer of ours, is ignored. True if it was taken."""
    if len(answers) != 1:
        return False
    parsed = parse_poll_answer_id(answers[0])
    if parsed is None:
        return False
    answer, prompt_id = parsed
    prompt = await tx.prompts.get(prompt_id)
    if prompt is None:
        return False
    return await _answer(
        tx, prompt, answer, room_id=room_id, sender=sender, event_id=event_id, via="poll",
        settings=settings, prefix=prefix,
    )


async def _answer(
    tx: Transaction,
    prompt: Prompt,
    answer: bool,
    *,
    room_id: str,
    sender: str,
    event_id: str,
    via: str,
    settings: PromptSettings,
    prefix: str,
) -> bool:
    """Take `answer` to `prompt` if it is still open and `sender` is the person it asks."""
    if prompt.answered_at is not None or prompt.event_id is None:
        return False
    reacts_to = prompt.event_id
    involvement = await tx.involvements.by_id(prompt.involvement_id)
    if involvement is None or involvement.user_id != sender or not involvement.is_active:
        return False
    family = await tx.families.get(involvement.family_id)
    if family is None or family.room_id != room_id:
        return False
    current = await current_prompt(tx, involvement)
    if current is None or current.id != prompt.id:
        return False
    if not answer:
        await leave(
            tx,
            family,
            involvement,
            reason=None,
            via=via,
            cause=event_id,
            reply_to=reacts_to,
            prefix=prefix,
        )
        return True
    confirmed = await confirm(tx, involvement, settings, via=via)
    who = user(sender, await known_name(tx, sender))
    await _reply(
        tx, room_id, confirmed_text(who, confirmed, settings), reacts_to,
        transaction_id(event_id, "prompt-answer"),
    )
    return True
