"""Still-involved prompts: asking each practitioner at intervals whether they are still on a
family's team, reminding them once, and ending the involvements nobody confirms.

A roster is only worth trusting if it is current, and practitioners move on without telling
anyone. The package, by concern:

- `schedule`: the operator's settings and the calendar arithmetic (due dates, working hours,
  reminders, lapses, time away);
- `sweep`: what the scheduler runs every `prompts.sweep_every` and at start-up;
- `answers`: `!confirm`, `!leave`, the ✅ / ❌ reactions and the poll, and what follows a sent
  prompt;
- `wording`: what the bot says;
- `rendering`: a queued question, reminder or lapse notice's text, written when the outbox
  sends it.
"""

from rooms.prompts.answers import (
    PROMPT_PAYLOAD_KEY,
    REACTION_KEYS,
    confirm,
    current_prompt,
    leave,
    on_message_sent,
    on_poll_response,
    on_reaction,
    poll_answers,
    reaction_answer,
)
from rooms.prompts.asking import prompt_transaction_id
from rooms.prompts.rendering import queued_content
from rooms.prompts.schedule import (
    PromptSettings,
    WorkingSchedule,
    add_interval,
    back_from_away,
    held_until,
    is_away,
    lapse_due,
    local_today,
    next_prompt_time,
    reminder_due,
)
from rooms.prompts.sweep import DirectRooms, SweepReport, sweep
from rooms.prompts.wording import (
    LAPSE_KICK_REASON,
    LEAVE_KICK_REASON,
    NO,
    YES,
    confirmed_text,
    lead_handover_hint,
)

__all__ = [
    "LAPSE_KICK_REASON",
    "LEAVE_KICK_REASON",
    "NO",
    "PROMPT_PAYLOAD_KEY",
    "REACTION_KEYS",
    "YES",
    "DirectRooms",
    "PromptSettings",
    "SweepReport",
    "WorkingSchedule",
    "add_interval",
    "back_from_away",
    "held_until",
    "confirm",
    "confirmed_text",
    "current_prompt",
    "is_away",
    "lapse_due",
    "lead_handover_hint",
    "leave",
    "local_today",
    "next_prompt_time",
    "on_message_sent",
    "on_poll_response",
    "on_reaction",
    "poll_answers",
    "prompt_transaction_id",
    "queued_content",
    "reaction_answer",
    "reminder_due",
    "sweep",
]
