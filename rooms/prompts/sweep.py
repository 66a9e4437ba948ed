"""The sweep: sending what has fallen due, in batches of one transaction each.

All the state lives in SQLite (`involvement.next_prompt_at` and the `prompt` rows), so `sweep`
can run at any moment, any number of times, and after any crash. Each sweep, only while working
hours are open, does:

1. lapses: reminded prompts still unanswered after `lapse_after` end the involvement as
   `lapsed`, remove the practitioner from the room (if `remove_on_lapse`), tell the lead in the
   room, and report a lapsed lead to the administrators (each notice queued by name, like the
   questions and reminders: its words are written when it is sent);
2. reminders: prompts unanswered after `remind_after` get one reminder;
3. prompts: involvements whose `next_prompt_at` has come get one question in their family room,
   mentioning the practitioner; those still away (`away_until`) wait until they are back.

Every outbox item's transaction id comes from the prompt (the involvement and its due date), and
the prompt row is unique per due date, so nothing is asked, reminded or removed twice, whatever
is replayed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from rooms.actions import MESSAGE, QueuedItem, kick_item
from rooms.policy import TeamPolicy
from rooms.prompts.asking import Loaded, plan_prompts, write_prompts
from rooms.prompts.rendering import lapse_payload, lapse_report_payload, reminder_payload
from rooms.prompts.schedule import (
    PromptSettings,
    local_today,
)
from rooms.prompts.wording import LAPSE_KICK_REASON
from storage import (
    BACKGROUND,
    Database,
    Family,
    Involvement,
    Prompt,
    Transaction,
    transaction_id,
)

log = logging.getLogger(__name__)

DirectRooms = Callable[[str], str | None]
"""The id of an encrypted one-to-one room the bot shares with a user, if it knows one."""


@dataclass
class SweepReport:
    """What one sweep did; `queued` says whether the outbox has something new to send."""

    prompted: int = 0
    reminded: int = 0
    lapsed: int = 0
    deferred: int = 0
    skipped: int = 0
    closed_hours: bool = False
    batches: int = 0
    prompted_users: list[str] = field(default_factory=list, repr=False)
    on_batch: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    """Called after each batch has committed (the fault suite stops the process there)."""

    def batch_committed(self) -> None:
        self.batches += 1
        if self.on_batch is not None:
            self.on_batch()

    @property
    def queued(self) -> bool:
        return bool(self.prompted or self.reminded or self.lapsed)


async def sweep(
    db: Database,
    settings: PromptSettings,
    policy: TeamPolicy,
    *,
    direct_rooms: DirectRooms | None = None,
    after_batch: Callable[[], None] | None = None,
) -> SweepReport:
    """Send what has fallen due: lapses, then reminders, then new prompts (module docstring).

    Nothing happens outside working hours; what is due simply waits for the next opening.
    """
    report = SweepReport(on_batch=after_batch)
    async with db.read() as tx:
        now = tx.now()
    if not settings.schedule.is_open(now):
        report.closed_hours = True
        return report

    async def lapses(tx: Transaction, after_id: int) -> int:
        return await _lapse_batch(tx, settings, policy, direct_rooms, report, after_id)

    async def reminders(tx: Transaction, after_id: int) -> int:
        return await _reminder_batch(tx, settings, policy, report, after_id)

    await _in_batches(db, lapses, report)
    await _in_batches(db, reminders, report)
    await _prompt_batches(db, settings, policy, report)
    if report.queued or report.deferred:
        log.info(
            "prompt sweep: %d prompted, %d reminded, %d lapsed, %d deferred (away)",
            report.prompted,
            report.reminded,
            report.lapsed,
            report.deferred,
        )
    return report


Batch = Callable[[Transaction, int], Awaitable[int]]
"""Handles up to one batch of rows with ids above the cursor; returns the last id handled
(or the cursor itself when nothing was left)."""


async def _in_batches(db: Database, batch: Batch, report: SweepReport) -> None:
    """Run `batch` in its own transaction until it finds nothing more; the id cursor means
    a row that cannot be handled is passed over instead of being fetched forever."""
    cursor = 0
    while True:
        async with db.transaction() as tx:
            last = await batch(tx, cursor)
        report.batch_committed()
        if last == cursor:
            return
        cursor = last


async def _prompt_batches(
    db: Database, settings: PromptSettings, policy: TeamPolicy, report: SweepReport
) -> None:
    """Every handled involvement gets a new `next_prompt_at` (none while its prompt is open,
    or a later one while its practitioner is away), so each batch only sees rows not yet seen.

    The batch is planned between a read and the write transaction, with no lock held, and
    each question is queued by name (its text is written when it is sent), so a command waits
    for the batch's few statements only."""
    while True:
        async with db.read() as tx:
            due = await tx.involvements.due_for_prompt(tx.now(), settings.batch_size)
            loaded = await Loaded.of(tx, due)
            now = tx.now()
        plan = await plan_prompts(due, loaded, now, settings)
        async with db.transaction() as tx:
            await write_prompts(tx, plan, policy, report)
        report.batch_committed()
        if len(due) < settings.batch_size:
            return


async def _reminder_batch(
    tx: Transaction,
    settings: PromptSettings,
    policy: TeamPolicy,
    report: SweepReport,
    after_id: int,
) -> int:
    now = tx.now()
    prompts = await tx.prompts.awaiting_reminder(
        sent_before=now - settings.remind_after,
        today=local_today(now, settings.zone),
        after_id=after_id,
        limit=settings.batch_size,
    )
    involvements = await tx.involvements.by_ids(prompt.involvement_id for prompt in prompts)
    # Only where to post: the reminder's words (and the name in them) are written when sent.
    families = await tx.families.many(row.family_id for row in involvements.values())
    reminded: list[int] = []
    items: list[tuple[str, str, str, dict[str, object]]] = []
    audit_rows: list[tuple[int | None, dict[str, object]]] = []
    for prompt in prompts:
        involvement = involvements.get(prompt.involvement_id)
        family = None if involvement is None else families.get(involvement.family_id)
        if involvement is None or family is None or family.room_id is None:
            continue
        items.append((
            transaction_id("prompt", str(prompt.id), "reminder"),
            family.room_id,
            "message",
            reminder_payload(prompt.id),
        ))
        reminded.append(prompt.id)
        audit_rows.append((family.id, {"user": involvement.user_id, "prompt_id": prompt.id}))
    await tx.outbox.enqueue_many(items, priority=BACKGROUND)
    await tx.prompts.mark_reminded_many(reminded)
    await tx.audit.append_many(policy.bot_user_id, "prompt_reminder", audit_rows)
    report.reminded += len(reminded)
    return prompts[-1].id if prompts else after_id


async def _lapse_batch(
    tx: Transaction,
    settings: PromptSettings,
    policy: TeamPolicy,
    direct_rooms: DirectRooms | None,
    report: SweepReport,
    after_id: int,
) -> int:
    """Everything a batch needs is read first and everything it writes is a statement per
    kind (a query per kind, not a few per row: thousands of lapses hold the database's single
    writer for a few trips a batch). No names are read: the notices are written when sent."""
    now = tx.now()
    prompts = await tx.prompts.awaiting_lapse(
        sent_before=now - settings.lapse_after,
        reminded_before=now - settings.notice_after_reminder,
        today=local_today(now, settings.zone),
        after_id=after_id,
        limit=settings.batch_size,
    )
    involvements = await tx.involvements.by_ids(prompt.involvement_id for prompt in prompts)
    families = await tx.families.many(row.family_id for row in involvements.values())
    leads = await tx.involvements.leads(families)
    admins = await _admin_chats(tx, policy, direct_rooms)
    lapsing: list[tuple[Prompt, Involvement, Family, str]] = []
    for prompt in prompts:
        involvement = involvements.get(prompt.involvement_id)
        family = None if involvement is None else families.get(involvement.family_id)
        if involvement is not None and family is not None and family.room_id is not None:
            lapsing.append((prompt, involvement, family, family.room_id))
    answered = await tx.prompts.answer_many((row[0].id for row in lapsing), "lapsed")
    ended: list[int] = []
    items: list[QueuedItem] = []
    audit_rows: list[tuple[int | None, dict[str, object]]] = []
    for prompt, involvement, family, room_id in lapsing:
        if prompt.id in answered:
            ended.append(involvement.id)
            audit_rows.append(
                _lapse_one(prompt, involvement, family, room_id, leads, settings, admins, items)
            )
    report.lapsed += len(audit_rows)
    await tx.involvements.end_many(ended, "lapsed")
    await tx.outbox.enqueue_many(items, priority=BACKGROUND)  # in order: a notice, its kick
    await tx.audit.append_many(policy.bot_user_id, "lapse", audit_rows)
    return prompts[-1].id if prompts else after_id


def _lapse_one(
    prompt: Prompt,
    involvement: Involvement,
    family: Family,
    room_id: str,
    leads: dict[int, Involvement],
    settings: PromptSettings,
    admins: list[tuple[str, str]],
    items: list[QueuedItem],
) -> tuple[int | None, dict[str, object]]:
    """What one lapse sends, added to `items`; its audit row. The notices carry what is
    decided now (removed or not, the lead's own lapse, which lead is told), not their words."""
    cause = ("prompt", str(prompt.id), "lapse")
    removed = settings.remove_on_lapse and involvement.membership in ("invite", "join")
    lead = leads.get(family.id)
    lead_lapsed = lead is not None and lead.user_id == involvement.user_id
    if lead_lapsed and lead is not None:
        leads[family.id] = replace(lead, status="ended")
    told = lead.user_id if lead is not None and lead.is_active and not lead_lapsed else None
    # The notice goes before the kick, so the person removed can still read why.
    items.append((
        transaction_id(*cause, "notice"),
        room_id,
        MESSAGE,
        lapse_payload(prompt.id, removed=removed, lead_lapsed=lead_lapsed, told=told),
    ))
    if removed:
        items.append(kick_item(room_id, involvement.user_id, LAPSE_KICK_REASON, *cause, "kick"))
    if told is None:
        # Besides the mention in the family room (which reaches only administrators who are
        # in it), a direct message to each administrator the bot shares an encrypted chat with.
        items.extend(
            (
                transaction_id(*cause, "admin", admin),
                chat,
                MESSAGE,
                lapse_report_payload(prompt.id, lead_lapsed=lead_lapsed),
            )
            for admin, chat in admins
        )
    details: dict[str, object] = {
        "user": involvement.user_id,
        "prompt_id": prompt.id,
        "removed": removed,
        "was_lead": lead_lapsed,
    }
    return family.id, details


async def _admin_chats(
    tx: Transaction, policy: TeamPolicy, direct_rooms: DirectRooms | None
) -> list[tuple[str, str]]:
    """Each administrator and the direct chat the bot shares with them, where it does."""
    if direct_rooms is None:
        return []
    found: list[tuple[str, str]] = []
    for admin in sorted(policy.admins):
        room_id = direct_rooms(admin)
        if room_id is None or await tx.families.by_room(room_id) is not None:
            log.info("no direct chat with administrator %s to report lapses in", admin)
            continue
        found.append((admin, room_id))
    return found

