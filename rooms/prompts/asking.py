"""Asking the still-involved question: what one sweep batch reads, what it decides with no
lock held (`plan_prompts`), and the one write transaction that queues the questions
(`write_prompts`), with a statement per kind of row rather than per row. A queued question
names only its prompt; its text is written when it is sent (`rooms.prompts.rendering`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rooms.policy import TeamPolicy
from rooms.prompts.answers import iso
from rooms.prompts.rendering import question_payload
from rooms.prompts.schedule import (
    PromptSettings,
    back_from_away,
    is_away,
)
from storage import BACKGROUND, Family, Involvement, Practitioner, Transaction, transaction_id

if TYPE_CHECKING:
    from rooms.prompts.sweep import SweepReport


@dataclass
class Loaded:
    """What a batch reads up front, a query per kind rather than a few per row: the
    sweep after a long outage handles thousands of rows, and each query is a thread hop."""

    families: dict[int, Family | None]
    people: dict[str, Practitioner]

    @classmethod
    async def of(cls, tx: Transaction, involvements: Iterable[Involvement]) -> Loaded:
        rows = list(involvements)
        found = await tx.families.many(row.family_id for row in rows)
        families: dict[int, Family | None] = {row.family_id: found.get(row.family_id)
                                              for row in rows}
        return cls(families, await tx.practitioners.many(row.user_id for row in rows))


@dataclass
class PromptPlan:
    """One batch's decisions, made outside the write transaction (`plan_prompts`)."""

    read: dict[int, Involvement] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)
    deferred: list[tuple[int, datetime]] = field(default_factory=list)
    asked: list[tuple[Involvement, Family, datetime]] = field(default_factory=list)


YIELD_EVERY = 16
"""Rows planned between two turns of the event loop, so commands keep being answered."""


async def plan_prompts(
    due: list[Involvement],
    loaded: Loaded,
    now: datetime,
    settings: PromptSettings,
) -> PromptPlan:
    plan = PromptPlan(read={row.id: row for row in due})
    for index, involvement in enumerate(due):
        if index % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        due_at = involvement.next_prompt_at
        family = loaded.families.get(involvement.family_id)
        if (
            due_at is None
            or family is None
            or not family.is_open
            or family.room_id is None
            or involvement.membership != "join"
        ):
            # Nobody to ask, or nowhere to ask them; a later join schedules a fresh prompt.
            plan.skipped.append(involvement.id)
            continue
        practitioner = loaded.people.get(involvement.user_id)
        if practitioner is not None and is_away(practitioner, now, settings.zone):
            assert practitioner.away_until is not None
            back = back_from_away(practitioner.away_until, settings.zone)
            plan.deferred.append(
                (involvement.id, settings.schedule.next_open(back).astimezone(UTC))
            )
            continue
        # The question itself is written when it is sent (`rendering.queued_content`).
        plan.asked.append((involvement, family, due_at))
    return plan


async def write_prompts(
    tx: Transaction, plan: PromptPlan, policy: TeamPolicy, report: SweepReport
) -> None:
    """Write a batch's plan, one statement each for its prompt rows, outbox items and audit
    rows. An involvement that changed since it was read (ended, rescheduled) is left alone:
    the next batch reads it again if it is still due."""
    current = await tx.involvements.prompt_states(plan.read)
    unchanged = {
        row_id
        for row_id, row in plan.read.items()
        if current.get(row_id) == (row.next_prompt_at, row.status, row.membership)
    }
    for involvement_id, opening in plan.deferred:
        if involvement_id in unchanged:
            await tx.involvements.set_next_prompt(involvement_id, opening)
            report.deferred += 1
    asked = [entry for entry in plan.asked if entry[0].id in unchanged]
    # No next prompt while this one is open: the answer (or the lapse) decides what follows.
    cleared = [row_id for row_id in plan.skipped if row_id in unchanged]
    cleared += [involvement.id for involvement, *_ in asked]
    report.skipped += sum(1 for row_id in plan.skipped if row_id in unchanged)
    prompt_ids = await tx.prompts.insert_many([(row.id, due_at) for row, _, due_at in asked])
    items: list[tuple[str, str, str, dict[str, object]]] = []
    audit_rows: list[tuple[int | None, dict[str, object]]] = []
    for involvement, family, due_at in asked:
        prompt_id = prompt_ids.get(involvement.id)
        if prompt_id is None or family.room_id is None:
            report.skipped += 1  # already asked for this due date
            continue
        items.append((
            prompt_transaction_id(involvement.id, due_at),
            family.room_id,
            "message",
            question_payload(prompt_id),
        ))
        audit_rows.append(
            (
                family.id,
                {"user": involvement.user_id, "prompt_id": prompt_id, "due_at": iso(due_at)},
            )
        )
        report.prompted += 1
        report.prompted_users.append(involvement.user_id)
    await tx.outbox.enqueue_many(items, priority=BACKGROUND)
    await tx.involvements.clear_next_prompts(cleared)
    await tx.audit.append_many(policy.bot_user_id, "prompt", audit_rows)


def prompt_transaction_id(involvement_id: int, due_at: datetime) -> str:
    """One per involvement and due date, like the prompt row itself."""
    return transaction_id("prompt", str(involvement_id), due_at.astimezone(UTC).isoformat())
